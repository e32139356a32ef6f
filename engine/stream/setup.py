"""Creating or updating the JetStream stream that holds the log."""

from __future__ import annotations

import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from engine.errors import ConfigurationError
from engine.settings import StreamSettings

__all__ = ["ensure_stream", "stream_config"]

log = structlog.get_logger(__name__)


def stream_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream configuration of the log (pure)."""
    return StreamConfig(
        name=settings.name,
        subjects=list(settings.subjects),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
        max_age=settings.max_age_s,
        max_bytes=settings.max_bytes,
        max_msg_size=settings.max_msg_size,
        # Purges are how compaction removes covered history; deletes of single events are not.
        deny_delete=True,
        deny_purge=False,
        allow_direct=True,
    )


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> StreamInfo:
    """Create the stream, or update it in place when its settings changed. Idempotent."""
    wanted = stream_config(settings)
    try:
        current = await js.stream_info(settings.name)
    except NotFoundError:
        try:
            info = await js.add_stream(wanted)
        except APIError as exc:
            raise ConfigurationError(
                f"cannot create stream {settings.name} on {', '.join(settings.subjects)}: "
                f"{exc.description} (another stream on this server already captures those "
                "subjects: use its name with --stream / ENGRAM_STREAM__NAME)"
            ) from None
        log.info("stream created", stream=settings.name, subjects=list(settings.subjects))
        return info
    config = current.config
    if (
        list(config.subjects or []) != wanted.subjects
        or config.duplicate_window != wanted.duplicate_window
        or config.max_age != wanted.max_age
        or config.num_replicas != wanted.num_replicas
        or config.max_bytes != wanted.max_bytes
        or config.max_msg_size != wanted.max_msg_size
    ):
        if config.storage != StorageType.FILE:
            raise ConfigurationError(
                f"stream {settings.name} exists with {config.storage} storage; engram needs file"
            )
        try:
            info = await js.update_stream(wanted)
        except APIError as exc:
            raise ConfigurationError(
                f"cannot update stream {settings.name}: {exc.description}"
            ) from None
        log.info("stream updated", stream=settings.name)
        return info
    return current
