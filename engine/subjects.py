"""Where engram's messages travel on NATS, derived from two prefixes.

Events: ``<event prefix>.<type>`` (``memory.task.executed``); the stream captures
``<event prefix>.>``, every consumer filters on it and every reader reads it. The engine's own
subjects, kept outside the stream on purpose (a request on a subject the stream captures would
be stored as an event): dead letters on ``<service prefix>.deadletter.<kind>`` (the
``<stream>_DLQ`` stream) and query verbs on ``<service prefix>.query.<verb>``.

The defaults (``memory``, ``engram``) are the documented wire contract; other prefixes let two
engines, or two tests, share one NATS server without seeing each other's messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from engine.errors import ConfigurationError

__all__ = [
    "DEFAULT_EVENT_PREFIX",
    "DEFAULT_SERVICE_PREFIX",
    "DEFAULT_SUBJECTS",
    "PREFIX_PATTERN",
    "EventSubjects",
    "ServiceSubjects",
    "check_prefix",
    "prefixes_overlap",
]

DEFAULT_EVENT_PREFIX = "memory"
DEFAULT_SERVICE_PREFIX = "engram"
PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
"""Dot-separated NATS subject tokens of letters, digits, ``-`` and ``_``: no wildcard (``*``,
``>``), no empty token, no whitespace, and no ``$`` (the server's own ``$JS``, ``$O`` ...)."""
_MAX_PREFIX = 100
_PREFIX = re.compile(PREFIX_PATTERN)


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


@dataclass(frozen=True, slots=True)
class EventSubjects:
    """The subjects of one stream's events: ``<prefix>.<type>``, all of them ``<prefix>.>``."""

    prefix: str = DEFAULT_EVENT_PREFIX
    _head: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_prefix(self.prefix, "event subject prefix")
        object.__setattr__(self, "_head", self.prefix + ".")  # decoding asks for it per event

    def subject(self, event_type: str) -> str:
        """The subject an event of ``event_type`` is published on."""
        return self._head + event_type

    @property
    def wildcard(self) -> str:
        """Every event subject: what the stream captures and consumers filter on."""
        return f"{self.prefix}.>"

    def type_of(self, subject: str) -> str | None:
        """The event type ``subject`` carries, or None when it is not one of these subjects."""
        head = self._head
        if not subject.startswith(head) or len(subject) == len(head):
            return None
        return subject[len(head) :]


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
        """``engram.query.`` by default: a verb's subject is this plus its name."""
        return f"{self.prefix}.query."


DEFAULT_SUBJECTS = EventSubjects()
"""``memory.<type>``: the default, and the documented wire contract."""
