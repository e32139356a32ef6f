"""Appending events to the log: deduplicated by event id within its namespace, optionally with
expected sequence.

JetStream's duplicate detection is stream-wide: a ``Nats-Msg-Id`` seen within the duplicate
window drops the next message carrying it, whoever sends it. So the ``Nats-Msg-Id`` of an event
on a v2 subject is ``<namespace>:<id>`` (the namespace its subject names): two tenants using the
same id are both stored, and a retry of the same event is still a duplicate. An event on a v1
subject keeps its bare id. A signed (engine) event adds the key's tag to it
(``EngineKey.message_id``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError

from engine.errors import (
    ConcurrencyConflictError,
    EngramError,
    PayloadTooLargeError,
    PublishFailedError,
)
from engine.events import Event, encode_event
from engine.signing import SIGNATURE_HEADER, EngineKey
from engine.stream._ack_window import AckRouter, AckWindow
from engine.stream.records import AppendResult
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects

__all__ = ["Appender", "EncodedEvent", "encode_for_append", "message_id"]

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071

EncodedEvent = tuple[str, str, bytes]
"""(event id, subject, body): what goes on the wire."""


def encode_for_append(event: Event, subjects: EventSubjects = DEFAULT_SUBJECTS) -> EncodedEvent:
    """What goes on the wire for ``event``: its id, its subject among ``subjects`` (the
    stream's, ``memory.<type>.<namespace>`` by default: wire contract v2) and its JSON body."""
    return (event.id, subjects.subject(event.type, event.namespace), encode_event(event))


def message_id(event_id: str, subject: str, subjects: EventSubjects = DEFAULT_SUBJECTS) -> str:
    """The ``Nats-Msg-Id`` of event ``event_id`` published on ``subject``: ``<namespace>:<id>``
    on a v2 subject (``memory.<type>.<namespace>``), the id alone on a v1 one."""
    parsed = subjects.parse(subject)
    namespace = None if parsed is None else parsed[1]
    return event_id if namespace is None else f"{namespace}:{event_id}"


class Appender:
    """Publishes encoded events to one stream and maps every failure to an EngramError."""

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        *,
        timeout_s: float = 5.0,
        max_in_flight: int = 2_000,
        signer: EngineKey | None = None,
        subjects: EventSubjects = DEFAULT_SUBJECTS,
    ) -> None:
        self._nc = nc
        self.subjects = subjects
        """The stream's event subjects: ``encode`` publishes on them."""
        self.signer = signer
        """The engine's key: when set, every event is signed (engine.signing). Only the engine's
        own publishing paths have one; agents' events are never signed."""
        self._stream = stream
        self._timeout_s = timeout_s
        self._max_in_flight = max_in_flight
        self._js: JetStreamContext = nc.jetstream(timeout=timeout_s)
        self._router = AckRouter(nc, max_in_flight=max_in_flight, timeout_s=timeout_s)
        """Single appends of concurrent callers share one bounded ack window (a subscription
        opened on the first of them)."""

    def encode(self, event: Event) -> EncodedEvent:
        """``event`` encoded for this stream (``encode_for_append`` with its subjects)."""
        return encode_for_append(event, self.subjects)

    def _check_size(self, event_id: str, body: bytes) -> None:
        limit = self._nc.max_payload
        if limit and len(body) > limit:
            raise PayloadTooLargeError(
                f"event {event_id} is {len(body)} bytes, over the server's max_payload of "
                f"{limit} bytes: move large content out of the event or raise max_payload"
            )

    def _headers(
        self, event_id: str, subject: str, body: bytes, expected_last_subject_seq: int | None
    ) -> dict[str, str]:
        msg_id = message_id(event_id, subject, self.subjects)
        if self.signer is None:
            headers = {MSG_ID: msg_id, EXPECTED_STREAM: self._stream}
        else:
            headers = {
                MSG_ID: self.signer.message_id(msg_id),
                EXPECTED_STREAM: self._stream,
                SIGNATURE_HEADER: self.signer.sign(body),
            }
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
                f"(engram serve creates it) and does it capture {self.subjects.wildcard}?"
            )
        if isinstance(exc, NatsTimeoutError | asyncio.TimeoutError):
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
        """Append one event and wait for its ack. Raises a PublishFailedError subclass.

        Concurrent calls share one bounded window of acks in flight (``AckRouter``): many
        agents in one process get batch throughput, each with its own sequence or error."""
        event_id, subject, body = encoded
        self._check_size(event_id, body)
        try:
            sequence, duplicate = await self._router.publish(
                subject, body, self._headers(event_id, subject, body, expected_last_subject_seq)
            )
        except Exception as exc:  # every failure becomes one of ours, with its cause named
            raise self._error(event_id, subject, exc) from exc
        return AppendResult(event_id, sequence, duplicate)

    async def append_many(self, batch: Sequence[EncodedEvent]) -> list[AppendResult | EngramError]:
        """Append many events in order, with at most ``max_in_flight`` acks outstanding.

        Returns one entry per input: its AppendResult, or the error that stopped it. Never
        raises for a single event's failure; the caller decides what to retry. When no ack comes
        for ``timeout_s`` the server has stalled: the batch stops, and each event not yet
        acknowledged gets a PublishFailedError (publishing it again is safe: same id).
        """
        errors: dict[int, EngramError] = {}
        sent = 0
        async with AckWindow(
            self._nc, len(batch), max_in_flight=self._max_in_flight, timeout_s=self._timeout_s
        ) as window:
            for index, (event_id, subject, body) in enumerate(batch):
                try:
                    self._check_size(event_id, body)
                    if not await window.publish(
                        index, subject, body, self._headers(event_id, subject, body, None)
                    ):
                        break
                except Exception as exc:  # recorded per event, the batch goes on
                    errors[index] = self._error(event_id, subject, exc)
                sent = index + 1
            else:
                await window.drain()
        results: list[AppendResult | EngramError] = []
        for index, outcome in enumerate(window.outcomes):
            event_id, subject, _ = batch[index]
            if isinstance(outcome, tuple):
                results.append(AppendResult(event_id, outcome[0], outcome[1]))
            elif outcome is not None:
                results.append(self._error(event_id, subject, outcome))
            elif index in errors:
                results.append(errors[index])
            elif index < sent:
                results.append(self._error(event_id, subject, TimeoutError()))
            else:
                results.append(
                    PublishFailedError(
                        f"event {event_id} was not sent: JetStream acknowledged nothing for "
                        f"{self._timeout_s:g}s, so the batch stopped; publish it again"
                    )
                )
        return results
