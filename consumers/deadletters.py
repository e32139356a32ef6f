"""The dead-letter stream: ``engram.deadletter.<kind>``, outside ``memory.>`` (events only);
both prefixes are the stream settings' (``service_prefix``, ``subject_prefix``).

Every projection publishes what it refused here (the ``dead_letters`` table holds only what the
tables projection refused); ``deadletter_view.read_dead_letters`` reads them back, each once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import structlog
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from engine.settings import StreamSettings
from engine.subjects import ServiceSubjects
from projections.records import DeadLetter

__all__ = [
    "DEAD_LETTER_PREFIX",
    "DeadLetterPublisher",
    "dead_letter_body",
    "dead_letter_id",
    "dead_letter_stream_name",
]

log = structlog.get_logger(__name__)

DEAD_LETTER_PREFIX = ServiceSubjects().dead_letter_prefix
"""``engram.deadletter.``: under the default service prefix (``StreamSettings.service``)."""


def dead_letter_stream_name(stream: StreamSettings) -> str:
    return f"{stream.name}_DLQ"


def dead_letter_body(stream: str, letter: DeadLetter) -> bytes:
    return json.dumps(
        {
            "stream": stream,
            "sequence": letter.sequence,
            "subject": letter.subject,
            "stored_at": letter.stored_at.isoformat(),
            "kind": letter.kind,
            "reason": letter.reason,
            "projection": letter.projection,
            "raw_size": letter.raw_size,
            "raw_base64": base64.b64encode(letter.raw).decode(),
        },
        separators=(",", ":"),
    ).encode()


def dead_letter_id(stream: str, letter: DeadLetter) -> str:
    """The ``Nats-Msg-Id`` of a dead letter: one per source sequence, kind and projection, so
    two projections refusing the same message are two dead letters (each names its refuser),
    and a republish after a crash or restart is a duplicate JetStream drops (within the
    stream's 24 h duplicate window; readers fold later copies, see ``deadletter_view``)."""
    return f"{stream}:{letter.sequence}:{letter.kind}:{letter.projection}"


class DeadLetterPublisher:
    """Publishes dead letters durably and idempotently (one per stream sequence, kind and
    projection)."""

    def __init__(self, js: JetStreamContext, stream: StreamSettings) -> None:
        self._js = js
        self._source = stream.name
        self._prefix = stream.service.dead_letter_prefix
        self._config = StreamConfig(
            name=dead_letter_stream_name(stream),
            subjects=[self._prefix + ">"],
            storage=StorageType.FILE,
            num_replicas=stream.replicas,
            duplicate_window=24 * 3600.0,
        )

    @property
    def stream_name(self) -> str:
        return str(self._config.name)

    async def ensure(self) -> None:
        try:
            await self._js.stream_info(self.stream_name)
        except NotFoundError:
            await self._js.add_stream(self._config)

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Publish before the batch commits: a crash in between republishes, deduplicated."""
        for letter in letters:
            ack = await self._js.publish(
                self._prefix + letter.kind,
                dead_letter_body(self._source, letter),
                headers={"Nats-Msg-Id": dead_letter_id(self._source, letter)},
            )
            log.warning(
                "dead letter",
                sequence=letter.sequence,
                subject=letter.subject,
                kind=letter.kind,
                reason=letter.reason[:200],
                projection=letter.projection,
                dead_letter_sequence=ack.seq,
            )
