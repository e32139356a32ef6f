"""Publishing a backup's messages again, each at its original sequence.

``Publisher`` sends messages and placeholders (for sequences the backup does not hold) in
sequence order, pipelined over one connection (JetStream stores them in the order sent), and
checks every acknowledgement against the sequence expected: anything else (an error, a
duplicate, another publisher's message in between) stops the restore. ``restored_headers`` is
what a restored message carries (consumers.backup.restoring says why it differs).
"""

from __future__ import annotations

from collections import deque

from nats.aio.client import Client as NatsClient

from consumers.backup.errors import BackupError
from engine.stream._ack_window import AckWindow

__all__ = ["REPEAT_HORIZON_S", "Publisher", "RecentIds", "restored_headers"]

DROPPED_HEADERS = ("nats-expected-", "nats-batch-")
"""Publish preconditions and batch framing: checked when the message was first stored."""
REPEAT_HORIZON_S = 1.0
"""A ``Nats-Msg-Id`` seen this recently in the restore is dropped (the restore's duplicate
window is 100 ms, the server's minimum)."""


class RecentIds:
    """Message ids published within the last ``horizon`` seconds of the restore."""

    def __init__(self, horizon: float = REPEAT_HORIZON_S) -> None:
        self.horizon = horizon
        self.seen: dict[str, float] = {}
        self.order: deque[tuple[float, str]] = deque()

    def repeated(self, msg_id: str, now: float) -> bool:
        while self.order and self.order[0][0] < now - self.horizon:
            at, old = self.order.popleft()
            if self.seen.get(old) == at:
                del self.seen[old]
        repeat = msg_id in self.seen
        self.seen[msg_id] = now
        self.order.append((now, msg_id))
        return repeat


class Publisher:
    """Publishes in order and checks that each message lands at its expected sequence."""

    def __init__(self, nc: NatsClient, stream: str, hole_subject: str, chunk: int) -> None:
        self.nc = nc
        self.stream = stream
        self.hole_subject = hole_subject
        self.chunk = chunk
        self.next_seq = 0
        self.pending: list[tuple[str, bytes, dict[str, str] | None, int]] = []
        self.placeholders = 0
        self.messages = 0

    def hole_until(self, sequence: int) -> None:
        while self.next_seq < sequence:
            self.pending.append((self.hole_subject, b"", None, self.next_seq))
            self.next_seq += 1
            self.placeholders += 1

    def message(self, subject: str, body: bytes, headers: dict[str, str] | None) -> None:
        self.pending.append((subject, body, headers, self.next_seq))
        self.next_seq += 1
        self.messages += 1

    async def flush(self, max_in_flight: int, timeout_s: float, force: bool = False) -> None:
        if not self.pending or (len(self.pending) < self.chunk and not force):
            return
        batch, self.pending = self.pending, []
        async with AckWindow(
            self.nc, len(batch), max_in_flight=max_in_flight, timeout_s=timeout_s
        ) as window:
            for index, (subject, body, headers, _) in enumerate(batch):
                if not await window.publish(index, subject, body, headers or {}):
                    break
            else:
                await window.drain()
        for (_, _, _, expected), outcome in zip(batch, window.outcomes, strict=True):
            if isinstance(outcome, tuple) and outcome == (expected, False):
                continue
            what = (
                "no acknowledgement"
                if outcome is None
                else f"stored as {outcome[0]}{' (a duplicate)' if outcome[1] else ''}"
                if isinstance(outcome, tuple)
                else repr(outcome)
            )
            raise BackupError(
                f"restoring into stream {self.stream} stopped at sequence {expected}: {what}. "
                f"The stream is incomplete (its metadata says engram.restore: in-progress): "
                "run the restore again with --replace (did something else publish into it?)"
            )


def restored_headers(
    headers: tuple[tuple[str, str], ...], recent: RecentIds, now: float
) -> tuple[dict[str, str] | None, bool]:
    kept = {k: v for k, v in headers if not k.lower().startswith(DROPPED_HEADERS)}
    msg_id = kept.get("Nats-Msg-Id")
    dropped = False
    if msg_id is not None and recent.repeated(msg_id, now):
        del kept["Nats-Msg-Id"]
        dropped = True
    return kept or None, dropped
