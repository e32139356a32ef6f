"""Where engram's messages travel on NATS, derived from two prefixes.

Wire contract v2 (the namespace is a subject token, so the broker can tell tenants apart):

- events: ``<event prefix>.<type>.<namespace>`` (``memory.workflow.executed.alpha``); every
  type is two tokens, so ``memory.*.*.alpha`` is every event of one tenant and
  ``memory.pattern.learned.*`` one type of every tenant. The stream captures
  ``<event prefix>.>``.
- v1 subjects, ``<event prefix>.<type>`` with the namespace only in the body, are still read (a
  stream written before v2 replays as it did): ``memory.*.*`` is exactly the v1 events.
- query verbs: a tenant's on ``<service prefix>.query.<namespace>.<verb>``, the operator's
  (not about one tenant) on ``<service prefix>.query.<verb>``.
- dead letters: ``<service prefix>.deadletter.<kind>`` (the ``<stream>_DLQ`` stream).
- replies to queries: only inboxes, ``_INBOX.<...>`` or, for a tenant's verb, the tenant's own
  ``_INBOX_<namespace>.<...>`` (``is_reply_inbox``): the engine may publish anywhere, so it
  never answers on a reply subject the asker chose to point elsewhere.

The engine's own subjects stay outside the stream on purpose (a request on a subject the stream
captures would be stored as an event). The defaults (``memory``, ``engram``) are the documented
wire contract; other prefixes let two engines, or two tests, share one NATS server without
seeing each other's messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.errors import ConfigurationError

__all__ = [
    "DEFAULT_EVENT_PREFIX",
    "DEFAULT_INBOX_PREFIX",
    "DEFAULT_SERVICE_PREFIX",
    "DEFAULT_SUBJECTS",
    "PREFIX_PATTERN",
    "EventSubjects",
    "ServiceSubjects",
    "check_prefix",
    "is_reply_inbox",
    "prefixes_overlap",
    "tenant_inbox_prefix",
]

DEFAULT_EVENT_PREFIX = "memory"
DEFAULT_SERVICE_PREFIX = "engram"
PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
"""Dot-separated NATS subject tokens of letters, digits, ``-`` and ``_``: no wildcard (``*``,
``>``), no empty token, no whitespace, and no ``$`` (the server's own ``$JS``, ``$O`` ...)."""
_MAX_PREFIX = 100
_PREFIX = re.compile(PREFIX_PATTERN)
DEFAULT_INBOX_PREFIX = "_INBOX"
"""nats-py's inbox prefix: replies arrive on ``_INBOX.<unique>...``."""
_INBOX_REST = re.compile(r"[^\s*>.]+(\.[^\s*>.]+)*")
"""What follows an inbox prefix in a reply subject: literal tokens, none empty, no wildcard."""


def check_prefix(prefix: str, what: str = "subject prefix") -> str:
    """``prefix`` when it is a valid subject prefix; raises ConfigurationError saying why not."""
    if len(prefix) > _MAX_PREFIX or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"{what} {prefix!r} must be dot-separated tokens of letters, digits, '-' and '_' "
            f"(at most {_MAX_PREFIX} characters, no wildcards), e.g. 'memory' or 'team-a.memory'"
        )
    return prefix


def prefixes_overlap(a: str, b: str) -> bool:
    """True when ``a.>`` and ``b.>`` share subjects: one prefix is the other's, token-wise."""
    ta, tb = a.split("."), b.split(".")
    shorter = min(len(ta), len(tb))
    return ta[:shorter] == tb[:shorter]


def tenant_inbox_prefix(namespace: str) -> str:
    """``_INBOX_<ns>``: the inbox prefix of a tenant's clients (one token, so ``_INBOX_alpha.>``
    never matches ``_INBOX_alpha2.<...>`` nor the engine's ``_INBOX.<...>``)."""
    return f"{DEFAULT_INBOX_PREFIX}_{namespace}"


def is_reply_inbox(reply: str, namespace: str | None) -> bool:
    """True when the engine may answer a query of ``namespace`` (None: an operator subject) on
    ``reply``: an inbox under ``_INBOX.``, or under the tenant's ``_INBOX_<namespace>.``. Any
    other reply subject (a stream's, a KV bucket's ``$KV.<bucket>.<key>``, a dead-letter
    subject, another tenant's inbox) is not answered: the engine's user may publish anywhere,
    and the asker must not be able to make it publish where the asker may not."""
    prefixes = [DEFAULT_INBOX_PREFIX + "."]
    if namespace is not None:
        prefixes.append(tenant_inbox_prefix(namespace) + ".")
    for prefix in prefixes:
        if reply.startswith(prefix) and _INBOX_REST.fullmatch(reply[len(prefix) :]):
            return True
    return False


@dataclass(frozen=True, slots=True)
class EventSubjects:
    """The subjects of one stream's events: ``<prefix>.<type>.<namespace>`` (v2) and the v1
    ``<prefix>.<type>``; all of them ``<prefix>.>``."""

    prefix: str = DEFAULT_EVENT_PREFIX
    _head: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_prefix(self.prefix, "event subject prefix")
        object.__setattr__(self, "_head", self.prefix + ".")  # decoding asks for it per event

    def subject(self, event_type: str, namespace: str | None = None) -> str:
        """The subject an event of ``event_type`` in ``namespace`` is published on (v2); the v1
        subject (no namespace token) when ``namespace`` is None."""
        if namespace is None:
            return self._head + event_type
        return f"{self._head}{event_type}.{namespace}"

    @property
    def wildcard(self) -> str:
        """Every event subject: what the stream captures."""
        return f"{self.prefix}.>"

    @property
    def legacy(self) -> str:
        """Every v1 event subject (``memory.*.*``: a type's two tokens and nothing after)."""
        return f"{self.prefix}.*.*"

    def of_namespace(self, namespace: str) -> str:
        """Every v2 event subject of one tenant (``memory.*.*.alpha``)."""
        return f"{self.prefix}.*.*.{namespace}"

    def filters(self, namespaces: Sequence[str] | None = None) -> list[str]:
        """What a consumer reads: every event (``namespaces`` None), else each tenant's v2
        subjects and the v1 ones (whose namespace only the body tells: the reader keeps those
        of its tenants)."""
        if namespaces is None:
            return [self.wildcard]
        return [*(self.of_namespace(ns) for ns in sorted(set(namespaces))), self.legacy]

    def parse(self, subject: str) -> tuple[str, str | None] | None:
        """``(type, namespace)`` of an event subject (namespace None for a v1 subject), or None
        when ``subject`` is not one of these subjects."""
        if not subject.startswith(self._head):
            return None
        tokens = subject[len(self._head) :].split(".")
        if len(tokens) == 2 and all(tokens):
            return f"{tokens[0]}.{tokens[1]}", None
        if len(tokens) == 3 and all(tokens):
            return f"{tokens[0]}.{tokens[1]}", tokens[2]
        return None

    def type_of(self, subject: str) -> str | None:
        """The event type ``subject`` carries, or None when it is not one of these subjects."""
        parsed = self.parse(subject)
        return None if parsed is None else parsed[0]


@dataclass(frozen=True, slots=True)
class ServiceSubjects:
    """The engine's own subjects: ``<prefix>.deadletter.<kind>`` and ``<prefix>.query.<verb>``."""

    prefix: str = DEFAULT_SERVICE_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix, "service subject prefix")

    @property
    def dead_letter_prefix(self) -> str:
        """``engram.deadletter.`` by default: a dead letter's subject is this plus its kind."""
        return f"{self.prefix}.deadletter."

    @property
    def query_prefix(self) -> str:
        """``engram.query.`` by default: every query subject starts with it."""
        return f"{self.prefix}.query."

    def tenant_query(self, namespace: str, verb: str) -> str:
        """A tenant's verb: ``engram.query.<namespace>.<verb>``."""
        return f"{self.prefix}.query.{namespace}.{verb}"

    def operator_query(self, verb: str) -> str:
        """An operator's verb (not about one tenant): ``engram.query.<verb>``."""
        return f"{self.prefix}.query.{verb}"

    def tenant_queries(self, namespace: str | None = None) -> str:
        """Every tenant verb of ``namespace`` (``engram.query.alpha.*``: exactly what the engine
        answers and ``engram auth`` allows), or of every tenant (``engram.query.*.*``) when
        None."""
        if namespace is None:
            return f"{self.prefix}.query.*.*"
        return f"{self.prefix}.query.{namespace}.*"

    def parse_query(self, subject: str) -> tuple[str | None, str] | None:
        """``(namespace, verb)`` of a query subject (namespace None for an operator verb), or
        None when ``subject`` is not a query subject."""
        head = self.query_prefix
        if not subject.startswith(head):
            return None
        tokens = subject[len(head) :].split(".")
        if len(tokens) == 1 and tokens[0]:
            return None, tokens[0]
        if len(tokens) == 2 and all(tokens):
            return tokens[0], tokens[1]
        return None


DEFAULT_SUBJECTS = EventSubjects()
"""``memory.<type>``: the default, and the documented wire contract."""
