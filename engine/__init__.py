"""engram's engine: the event model, the log on JetStream, the embedded server and the SDK."""

from engine.client import BatchReport, MemoryClient
from engine.errors import (
    ConcurrencyConflictError,
    ConfigurationError,
    ConnectionFailedError,
    EmbeddedServerError,
    EngramError,
    InvalidEventError,
    PayloadTooLargeError,
    PublishFailedError,
    QueryError,
    UnknownEventTypeError,
    UpcastError,
)
from engine.events import Event, make_event
from engine.settings import Settings

__all__ = [
    "BatchReport",
    "ConcurrencyConflictError",
    "ConfigurationError",
    "ConnectionFailedError",
    "EmbeddedServerError",
    "EngramError",
    "Event",
    "InvalidEventError",
    "MemoryClient",
    "PayloadTooLargeError",
    "PublishFailedError",
    "QueryError",
    "Settings",
    "UnknownEventTypeError",
    "UpcastError",
    "make_event",
]

__version__ = "0.1.0"
