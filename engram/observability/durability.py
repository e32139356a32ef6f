"""How safely the stream keeps what JetStream acknowledged: its replicas, storage and limits, and
the server's fsync interval where engram can know it.

nats-server fsyncs its store every ``sync_interval`` (2 minutes by default), so on a single
replica an acknowledged event can be lost to a power failure (not to a process crash: the write
reached the OS before the ack). ``sync_interval: always`` fsyncs before every ack; a replicated
stream (R3) survives the loss of one node instead. A client cannot read a server's
``sync_interval``: engram knows it only for the embedded server it started itself (from the
configuration ``engine.server.EmbeddedServer`` wrote), else it says ``unknown``.
"""

from __future__ import annotations

import re
from pathlib import Path

from nats.js.api import StreamConfig

from engine.server import read_server_record
from engine.verbs.replies import StreamDurability

__all__ = [
    "ALWAYS",
    "DEFAULT_SYNC",
    "UNKNOWN",
    "power_loss_warning",
    "server_sync_interval",
    "stream_durability",
]

ALWAYS = "always"
DEFAULT_SYNC = "2m (nats-server default)"
UNKNOWN = "unknown"

_CONFIG = "nats-server.conf"
_SYNC = re.compile(r"^\s*sync_interval\s*[:=]\s*\"?([^\"\s#]+)\"?", re.MULTILINE)


def server_sync_interval(server_dir: Path, url: str) -> str:
    """The fsync interval of the server at ``url``: read from the configuration of the embedded
    server under ``server_dir`` when that is the server at ``url``; ``unknown`` otherwise (a
    server engram did not start, whose configuration clients cannot see)."""
    record = read_server_record(server_dir)
    if record is None or record.url.rstrip("/") != url.rstrip("/"):
        return UNKNOWN
    try:
        text = (server_dir / _CONFIG).read_text()
    except OSError:
        return UNKNOWN
    found = _SYNC.search(text)
    if found is None:
        return DEFAULT_SYNC
    value = found.group(1)
    return ALWAYS if value == ALWAYS else value


def stream_durability(config: StreamConfig, sync_interval: str, messages: int) -> StreamDurability:
    """The durability section of ``engram status`` for a stream of ``config`` holding
    ``messages`` on a server fsyncing every ``sync_interval``."""
    storage = getattr(config.storage, "value", config.storage) or "file"
    persist = getattr(config.persist_mode, "value", config.persist_mode)
    replicas = config.num_replicas or 1
    return StreamDurability(
        replicas=replicas,
        storage=str(storage),
        max_age_s=float(config.max_age or 0.0),
        max_bytes=-1 if config.max_bytes is None else int(config.max_bytes),
        max_msg_size=-1 if config.max_msg_size is None else int(config.max_msg_size),
        duplicate_window_s=float(config.duplicate_window or 0.0),
        sync_interval=sync_interval,
        persist_mode=None if persist is None else str(persist),
        warning=power_loss_warning(config.name or "the stream", replicas, sync_interval, messages),
    )


def power_loss_warning(stream: str, replicas: int, sync_interval: str, messages: int) -> str | None:
    """What to say when acknowledged events of ``stream`` can be lost on a power failure: one
    replica, holding data, on a server not known to fsync every write. None when it is safe
    (R3, ``sync_interval: always``) or empty."""
    if replicas > 1 or sync_interval == ALWAYS or messages <= 0:
        return None
    if sync_interval == UNKNOWN:
        interval = (
            "on a server engram did not start, whose sync_interval it cannot see (nats-server "
            "fsyncs every 2 minutes unless its jetstream block sets sync_interval: always)"
        )
    else:
        interval = f"on a server that fsyncs every {sync_interval.split(' ')[0]}"
    return (
        f"stream {stream} has one replica {interval}: events acknowledged since the last fsync "
        "can be lost on a power failure. Fix: set ENGRAM_EMBEDDED_SYNC_ALWAYS=true for the "
        "embedded server, or sync_interval: always in the server's jetstream block, or run a "
        "three-node cluster with ENGRAM_STREAM__REPLICAS=3"
    )
