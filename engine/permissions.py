"""Noticing the broker's permission violations, so that a refused publish or request raises
PermissionDeniedError at once instead of ending in a timeout.

A nats-server refusing a publish (or a subscription) does not answer the message: it sends the
connection ``-ERR 'Permissions Violation for Publish to "<subject>"'`` and drops it, so a
JetStream publish waits for an ack and a request for a reply that never come. nats-py hands that
line to the connection's error callback, lowercased, and carries on. ``engine.connection``
records each one in the connection's ``PermissionWatch``; ``refused_or`` races an operation
against a violation of the subject it publishes (or of the inbox its replies come on) and raises
PermissionDeniedError naming it; ``denied_publishes`` tells a batch which of its subjects were
refused.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from engine.errors import PermissionDeniedError

__all__ = [
    "PermissionWatch",
    "Violation",
    "connection_of",
    "denied_error",
    "denied_publishes",
    "inbox_prefix_of",
    "parse_violation",
    "refused_or",
    "watch",
    "watch_of",
]

T = TypeVar("T")

_VIOLATION = re.compile(
    r"permissions violation for (?P<operation>publish|subscription)[^\"]*\"(?P<subject>[^\"]*)\"",
    re.IGNORECASE,
)
_RECENT = 1_000
"""Violations a watch remembers for batches (``denied_publishes``)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One refusal the server reported: ``publish`` or ``subscription``, and the subject as
    nats-py passed it on (lowercased: compare with ``same_subject``)."""

    operation: str
    subject: str

    def same_subject(self, subject: str) -> bool:
        return self.subject == subject.lower()

    def under(self, prefix: str) -> bool:
        """True when the refused subject is ``prefix`` or below it (``<prefix>.<...>``)."""
        head = prefix.lower()
        return self.subject == head or self.subject.startswith(head + ".")


def parse_violation(error: BaseException | str) -> Violation | None:
    """The violation a nats-py error (or its text) reports, or None for any other error."""
    found = _VIOLATION.search(str(error))
    if found is None:
        return None
    return Violation(found["operation"].lower(), found["subject"].lower())


class PermissionWatch:
    """The permission violations reported on one connection, and who listens for which."""

    def __init__(self) -> None:
        self._recent: deque[tuple[int, Violation]] = deque(maxlen=_RECENT)
        self._count = 0
        self.subscriptions: list[Violation] = []
        """Every refused subscription: it stays refused for the life of the connection."""
        self._listeners: dict[int, tuple[Callable[[Violation], bool], Callable[[Violation], None]]]
        self._listeners = {}
        self._next = 0

    def record(self, violation: Violation) -> None:
        """Note ``violation`` and call, at once, whoever listens for one like it."""
        self._count += 1
        self._recent.append((self._count, violation))
        if violation.operation == "subscription":
            self.subscriptions.append(violation)
        for matches, call in list(self._listeners.values()):
            if matches(violation):
                call(violation)

    def mark(self) -> int:
        """A point in the record: ``since(mark)`` gives what came after it."""
        return self._count

    def since(self, mark: int) -> list[Violation]:
        return [v for n, v in self._recent if n > mark]

    def listen(
        self, matches: Callable[[Violation], bool], call: Callable[[Violation], None]
    ) -> int:
        """Call ``call`` with each violation that ``matches`` until ``stop(token)``."""
        self._next += 1
        self._listeners[self._next] = (matches, call)
        return self._next

    def stop(self, token: int) -> None:
        self._listeners.pop(token, None)


_WATCHES: weakref.WeakKeyDictionary[NatsClient, PermissionWatch] = weakref.WeakKeyDictionary()


def watch(nc: NatsClient) -> PermissionWatch:
    """The watch of ``nc``, created on first use (``engine.connection.connect`` does)."""
    found = _WATCHES.get(nc)
    if found is None:
        found = _WATCHES[nc] = PermissionWatch()
    return found


def watch_of(nc: NatsClient) -> PermissionWatch | None:
    """The watch of ``nc``, None for a connection not made by ``engine.connection.connect``."""
    return _WATCHES.get(nc)


def inbox_prefix_of(nc: NatsClient) -> str:
    """The inbox prefix ``nc``'s replies come on (``_INBOX``, or ``inbox_prefix`` of connect)."""
    return nc.new_inbox().rsplit(".", 1)[0]


def connection_of(js: JetStreamContext) -> NatsClient:
    """The connection ``js`` publishes on (nats-py keeps it private), for ``refused_or``."""
    nc: NatsClient = js._nc
    return nc


def _user(nc: NatsClient) -> str:
    user = nc.options.get("user")
    return f"user {user}" if user else "these credentials"


def denied_error(nc: NatsClient, violation: Violation, *, what: str = "") -> PermissionDeniedError:
    """PermissionDeniedError for ``violation`` on ``nc``, saying what to do about it."""
    inbox = inbox_prefix_of(nc)
    doing = f" ({what})" if what else ""
    if violation.under(inbox) or violation.subject.startswith("_inbox"):
        message = (
            f"the NATS server refused {_user(nc)} the {violation.operation} to "
            f"{violation.subject!r}{doing}: replies come on the inbox prefix {inbox!r}, which "
            "these credentials may not subscribe to; set ENGRAM_NATS__INBOX_PREFIX to the one "
            "they allow (_INBOX_<namespace> for a tenant's agent: see its credentials file "
            "from engram auth)"
        )
    else:
        message = (
            f"the NATS server refused {_user(nc)} the {violation.operation} to "
            f"{violation.subject!r}{doing} (permissions violation): it is outside what these "
            "credentials may do (a tenant's agent publishes and asks only in its own "
            "namespace, never derived event types nor operator verbs)"
        )
    return PermissionDeniedError(message, operation=violation.operation, subject=violation.subject)


async def refused_or(
    nc: NatsClient,
    operation: Awaitable[T],
    *,
    publishes: str | Collection[str],
    replies: bool = True,
    what: str = "",
    under: Collection[str] = (),
) -> T:
    """Await ``operation`` (which publishes on ``publishes``, one subject or several, or on
    subjects below the prefixes ``under`` (an Object Store's ``$O.<bucket>``, whose chunk
    subjects are random), and, with ``replies``, waits for an answer on ``nc``'s inbox); raises
    PermissionDeniedError as soon as the server reports that it refused that publish or that
    inbox, instead of waiting for the answer that will not come.
    Without a watch (a connection not made by ``engine.connection.connect``) it only awaits.

    The refusal interrupts the waiting task (as ``asyncio.timeout`` does): no extra task per
    call, which a publish waiting for its ack would otherwise pay for."""
    found = watch_of(nc)
    if found is None:
        return await operation
    inbox = inbox_prefix_of(nc) if replies else None
    subjects = {publishes.lower()} if isinstance(publishes, str) else {s.lower() for s in publishes}

    def matches(v: Violation) -> bool:
        if v.operation == "publish" and (
            v.subject in subjects or any(v.under(prefix) for prefix in under)
        ):
            return True
        return inbox is not None and v.under(inbox)

    earlier = next((v for v in found.subscriptions if matches(v)), None)
    if earlier is not None:  # its reply subscription was refused when it was first made
        if asyncio.iscoroutine(operation):
            operation.close()
        raise denied_error(nc, earlier, what=what)
    current = asyncio.current_task()
    if current is None:  # not in a task: nothing to interrupt
        return await operation
    refused: list[Violation] = []

    def interrupt(violation: Violation) -> None:
        if not refused:
            refused.append(violation)
            current.cancel()

    token = found.listen(matches, interrupt)
    try:
        return await operation
    except asyncio.CancelledError:
        if refused and current.uncancel() == 0:  # our interruption, and nobody else's
            raise denied_error(nc, refused[0], what=what) from None
        raise
    except Exception as exc:  # failed meanwhile (a timeout) while the refusal came in
        if refused:
            current.uncancel()
            raise denied_error(nc, refused[0], what=what) from exc
        raise
    finally:
        found.stop(token)


def denied_publishes(nc: NatsClient, mark: int, subjects: Collection[str]) -> dict[str, Violation]:
    """Which of ``subjects`` the server refused to publish since ``PermissionWatch.mark``
    (keyed by the subject as given); empty without a watch."""
    found = watch_of(nc)
    if found is None:
        return {}
    refused = {v.subject: v for v in found.since(mark) if v.operation == "publish"}
    return {s: refused[s.lower()] for s in subjects if s.lower() in refused}
