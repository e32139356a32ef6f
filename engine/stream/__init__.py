"""The log: stream setup, appending with dedup, ordered reads by sequence or time."""

from engine.stream.append import Appender, encode_for_append
from engine.stream.eventlog import EventLog
from engine.stream.read import ReadRange, read_stream
from engine.stream.records import AppendResult, StoredMessage, StreamState
from engine.stream.setup import (
    KeptLimit,
    StreamApplied,
    apply_stream,
    ensure_stream,
    lookup_stream,
    merge_stream_config,
    stream_config,
)

__all__ = [
    "AppendResult",
    "Appender",
    "EventLog",
    "KeptLimit",
    "ReadRange",
    "StoredMessage",
    "StreamApplied",
    "StreamState",
    "apply_stream",
    "encode_for_append",
    "ensure_stream",
    "lookup_stream",
    "merge_stream_config",
    "read_stream",
    "stream_config",
]
