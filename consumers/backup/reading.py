"""Reading a range of the stream for a backup: every subject, exact sequences, headers and the
stream's timestamps to the nanosecond.

``engine.stream.read_stream`` reads events for replay (one subject filter, the timestamp as a
``datetime`` to the microsecond) and never asks whether a delivery went missing. A backup must
hold every stored message, so this reader uses an ephemeral consumer without a filter and
checks the consumer sequence of every delivery: a gap (a fetch response lost on the way)
restarts the consumer after the last message received, as an ordered consumer would. A
sequence the stream does not deliver is then truly absent from it (deleted or purged).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

__all__ = ["Delivered", "read_range"]

log = structlog.get_logger(__name__)

Delivered = tuple[int, str, int, dict[str, str], bytes]
"""(sequence, subject, stored_at in ns, headers, body) of one stored message."""

_V1_TOKENS = 9


def _reply_fields(reply: str) -> tuple[int, int, int, int]:
    """(stream sequence, consumer sequence, timestamp ns, pending) from a JetStream reply
    subject (``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>``, or the
    form with a domain and an account hash first)."""
    tokens = reply.split(".")
    if len(tokens) == _V1_TOKENS:
        return int(tokens[5]), int(tokens[6]), int(tokens[7]), int(tokens[8])
    ack = Msg.Ack
    return (
        int(tokens[ack.StreamSeq]),
        int(tokens[ack.ConsumerSeq]),
        int(tokens[ack.Timestamp]),
        int(tokens[ack.NumPending]),
    )


async def read_range(
    js: JetStreamContext,
    stream: str,
    first_seq: int,
    last_seq: int,
    *,
    batch: int = 5_000,
    fetch_timeout_s: float = 2.0,
) -> AsyncIterator[list[Delivered]]:
    """Yield, in sequence order and in batches, every message ``stream`` holds with a sequence
    in ``first_seq..last_seq``. Ends at ``last_seq``, or earlier when the stream has nothing
    more (what follows is absent). Messages appended meanwhile beyond ``last_seq`` are not read.
    """
    next_seq = max(1, first_seq)
    while next_seq <= last_seq:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=next_seq,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
        )
        consumer = await js.add_consumer(stream, config)
        name = consumer.name
        assert name is not None  # the server names an ephemeral consumer
        sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
        try:
            expected = 1
            while True:
                try:
                    msgs = await sub.fetch(batch, timeout=fetch_timeout_s)
                except TimeoutError:  # an empty fetch times out by design: nothing more
                    return
                out: list[Delivered] = []
                finished = restart = False
                for msg in msgs:
                    seq, cseq, stored_ns, pending = _reply_fields(msg.reply)
                    if cseq != expected:
                        log.warning(
                            "backup read: a delivery went missing; reading again",
                            stream=stream,
                            after=next_seq - 1,
                        )
                        restart = True
                        break
                    expected += 1
                    if seq > last_seq:
                        finished = True
                        break
                    out.append((seq, msg.subject, stored_ns, msg.headers or {}, msg.data))
                    next_seq = seq + 1
                    if seq >= last_seq or pending == 0:
                        finished = True
                        break
                if out:
                    yield out
                if finished:
                    return
                if restart:
                    break
        finally:
            with contextlib.suppress(Exception):  # the consumer also expires by itself
                await sub.unsubscribe()
                await js.delete_consumer(stream, name)
