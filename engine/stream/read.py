"""Reading the log back in stream order, from a sequence or a time, up to a sequence or a time.

This is the basis of replay and of point-in-time state. Time here is the stream's own timestamp
(when JetStream stored the event), which only moves forward; ``occurred_at`` inside an event is
the publisher's clock and may not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from engine.stream.records import StoredMessage
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects

__all__ = ["ReadRange", "read_stream", "to_stored"]


@dataclass(frozen=True, slots=True)
class ReadRange:
    """Which part of the log to read. All bounds inclusive; None means unbounded."""

    from_seq: int | None = None
    from_time: datetime | None = None
    until_seq: int | None = None
    until_time: datetime | None = None
    subject: str | None = None
    """Only messages on this subject (wildcards allowed); None: every event of the stream (the
    ``subjects`` given to ``read_stream``, ``memory.>`` by default)."""
    follow: bool = False


def to_stored(msg: Msg) -> StoredMessage:
    meta = msg.metadata
    return StoredMessage(
        sequence=meta.sequence.stream,
        subject=msg.subject,
        data=msg.data,
        time=meta.timestamp,
        headers=dict(msg.headers or {}),
        num_pending=meta.num_pending,
        num_delivered=meta.num_delivered,
    )


def _consumer_config(window: ReadRange, subject: str) -> ConsumerConfig:
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        filter_subject=subject,
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )
    if window.from_seq is not None:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = max(1, window.from_seq)
    elif window.from_time is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = window.from_time
    else:
        config.deliver_policy = DeliverPolicy.ALL
    return config


async def read_stream(
    js: JetStreamContext,
    stream: str,
    window: ReadRange,
    *,
    batch: int = 1_000,
    fetch_timeout_s: float = 1.0,
    subjects: EventSubjects = DEFAULT_SUBJECTS,
) -> AsyncIterator[StoredMessage]:
    """Yield stored messages of ``stream`` in sequence order within ``window`` (on
    ``window.subject``, or every one of ``subjects``).

    Without ``follow`` the read ends at the stream's last sequence as of the call (or earlier at
    ``until_*``); with ``follow`` it waits for new events until cancelled. An ephemeral consumer
    with no acks is used and deleted afterwards.
    """
    info = await js.stream_info(stream)
    last_seq = info.state.last_seq
    end_seq = last_seq if window.until_seq is None else min(window.until_seq, last_seq)
    if not window.follow and (info.state.messages == 0 or end_seq < max(1, window.from_seq or 1)):
        return
    subject = window.subject or subjects.wildcard
    sub = await js.pull_subscribe(subject, stream=stream, config=_consumer_config(window, subject))
    consumer = await sub.consumer_info()
    try:
        if not window.follow and consumer.num_pending == 0:
            return
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=fetch_timeout_s)
            except TimeoutError:  # an empty fetch times out by design
                if window.follow:
                    continue
                # Nothing more matches the filter before end_seq (the tail was other subjects).
                return
            for msg in msgs:
                stored = to_stored(msg)
                if window.until_time is not None and stored.time > window.until_time:
                    return
                if not window.follow and stored.sequence > end_seq:
                    return
                if window.until_seq is not None and stored.sequence > window.until_seq:
                    return
                yield stored
                if not window.follow and (stored.sequence >= end_seq or stored.num_pending == 0):
                    return
    finally:
        try:
            await sub.unsubscribe()
            await js.delete_consumer(stream, consumer.name)
        except Exception:
            pass
