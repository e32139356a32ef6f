"""Appending events to the log: deduplicated by event id, optionally with expected sequence."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError, TooManyStalledMsgsError

from engine.errors import (
    ConcurrencyConflictError,
    EngramError,
    PayloadTooLargeError,
    PublishFailedError,
)
from engine.events import Event, encode_event
from engine.stream.records import AppendResult

__all__ = ["Appender", "EncodedEvent", "encode_for_append"]

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071

EncodedEvent = tuple[str, str, bytes]
"""(event id, subject, body): what goes on the wire."""


def encode_for_append(event: Event) -> EncodedEvent:
    return (event.id, event.subject, encode_event(event))


class Appender:
    """Publishes encoded events to one stream and maps every failure to an EngramError."""

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        *,
        timeout_s: float = 5.0,
        max_in_flight: int = 2_000,
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._timeout_s = timeout_s
        self._max_in_flight = max_in_flight
        self._js: JetStreamContext = nc.jetstream(
            timeout=timeout_s, publish_async_max_pending=max_in_flight
        )

    def _check_size(self, event_id: str, body: bytes) -> None:
        limit = self._nc.max_payload
        if limit and len(body) > limit:
            raise PayloadTooLargeError(
                f"event {event_id} is {len(body)} bytes, over the server's max_payload of "
                f"{limit} bytes: move large content out of the event or raise max_payload"
            )

    def _headers(self, event_id: str, expected_last_subject_seq: int | None) -> dict[str, str]:
        headers = {MSG_ID: event_id, EXPECTED_STREAM: self._stream}
        if expected_last_subject_seq is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last_subject_seq)
        return headers

    def _error(self, event_id: str, subject: str, exc: BaseException) -> EngramError:
        if isinstance(exc, EngramError):
            return exc
        if isinstance(exc, APIError) and exc.err_code == WRONG_LAST_SEQUENCE:
            return ConcurrencyConflictError(
                f"event {event_id} refused: {subject} has moved past the expected sequence "
                f"({exc.description}); re-read and retry"
            )
        if isinstance(exc, NoStreamResponseError | NoRespondersError):
            return PublishFailedError(
                f"no JetStream stream answered for {subject}: is stream {self._stream} created "
                "(engram serve creates it) and does it capture memory.>?"
            )
        if isinstance(exc, NatsTimeoutError | asyncio.TimeoutError | TooManyStalledMsgsError):
            return PublishFailedError(
                f"no acknowledgement for event {event_id} within {self._timeout_s:g}s: it may or "
                "may not be stored; publish the same event again (same id) and it is stored once"
            )
        if isinstance(exc, APIError):
            return PublishFailedError(f"JetStream refused event {event_id}: {exc.description}")
        return PublishFailedError(f"publishing event {event_id} failed: {exc!r}")

    async def append(
        self, encoded: EncodedEvent, expected_last_subject_seq: int | None = None
    ) -> AppendResult:
        """Append one event and wait for its ack. Raises a PublishFailedError subclass."""
        event_id, subject, body = encoded
        self._check_size(event_id, body)
        try:
            ack = await self._js.publish(
                subject,
                body,
                timeout=self._timeout_s,
                headers=self._headers(event_id, expected_last_subject_seq),
            )
        except Exception as exc:  # every failure becomes one of ours, with its cause named
            raise self._error(event_id, subject, exc) from exc
        return AppendResult(event_id, ack.seq, bool(ack.duplicate))

    async def append_many(
        self, batch: Sequence[EncodedEvent]
    ) -> list[AppendResult | EngramError]:
        """Append many events in order, with at most ``max_in_flight`` acks outstanding.

        Returns one entry per input: its AppendResult, or the error that stopped it. Never
        raises for a single event's failure; the caller decides what to retry. An event whose
        ack does not come within ``timeout_s`` of being waited for is reported as unacknowledged
        (it may or may not be stored; publishing it again is safe).
        """
        results: list[AppendResult | EngramError | None] = [None] * len(batch)
        window: deque[tuple[int, asyncio.Future[PubAck]]] = deque()
        try:
            for index, (event_id, subject, body) in enumerate(batch):
                if len(window) >= self._max_in_flight:
                    await self._make_room(window, batch, results)
                try:
                    self._check_size(event_id, body)
                    # No wait_stall: it costs a task and a trip through the event loop per
                    # message (so one socket write per message); the window above bounds the
                    # acks in flight and times a stall out instead.
                    future = await self._js.publish_async(
                        subject, body, headers=self._headers(event_id, None)
                    )
                except Exception as exc:  # recorded per event, the batch goes on
                    results[index] = self._error(event_id, subject, exc)
                    continue
                window.append((index, future))
            pending = [future for _, future in window if not future.done()]
            if pending:
                await asyncio.wait(pending, timeout=self._timeout_s)
            while window:
                index, future = window.popleft()
                results[index] = self._outcome(batch[index], future)
        finally:
            # Cancelled or failed midway: give the client's in-flight slots back.
            for _, future in window:
                future.cancel()
        return [r for r in results if r is not None]

    async def _make_room(
        self,
        window: deque[tuple[int, asyncio.Future[PubAck]]],
        batch: Sequence[EncodedEvent],
        results: list[AppendResult | EngramError | None],
    ) -> None:
        """Wait for the oldest ack (``timeout_s`` at most), then settle every finished one."""
        oldest = window[0][1]
        if not oldest.done():
            await asyncio.wait((oldest,), timeout=self._timeout_s)
        index, future = window.popleft()
        results[index] = self._outcome(batch[index], future)
        # One stream acks in order: when the oldest is in, usually many more are.
        while window and window[0][1].done():
            index, future = window.popleft()
            results[index] = self._outcome(batch[index], future)

    def _outcome(
        self, encoded: EncodedEvent, future: asyncio.Future[PubAck]
    ) -> AppendResult | EngramError:
        event_id, subject, _ = encoded
        if not future.done():
            future.cancel()
            return self._error(event_id, subject, TimeoutError())
        if future.cancelled():
            return self._error(event_id, subject, asyncio.CancelledError())
        exc = future.exception()
        if exc is not None:
            return self._error(event_id, subject, exc)
        ack = future.result()
        return AppendResult(event_id, ack.seq, bool(ack.duplicate))
