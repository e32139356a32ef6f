"""The one exception root of engram and its specific subclasses."""

from __future__ import annotations

__all__ = [
    "ConcurrencyConflictError",
    "ConfigurationError",
    "ConnectionFailedError",
    "EmbeddedServerError",
    "EngramError",
    "InvalidEventError",
    "PayloadTooLargeError",
    "PublishFailedError",
    "QueryError",
    "UnknownEventTypeError",
    "UpcastError",
    "UsageError",
]


class EngramError(Exception):
    """Root of every error engram raises on purpose."""


class ConfigurationError(EngramError):
    """A setting is missing, malformed or contradicts another one."""


class InvalidEventError(EngramError):
    """An event failed validation; ``problems`` lists each field and what was wrong."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class UnknownEventTypeError(InvalidEventError):
    """The event type is not one engram knows."""


class UpcastError(InvalidEventError):
    """An event's schema version cannot be brought to the current one."""


class ConnectionFailedError(EngramError):
    """The NATS server could not be reached or refused the connection."""


class EmbeddedServerError(EngramError):
    """The embedded nats-server could not be started or stopped."""


class PublishFailedError(EngramError):
    """JetStream did not acknowledge an append."""


class PayloadTooLargeError(PublishFailedError):
    """The encoded event is larger than the server's max_payload."""


class ConcurrencyConflictError(PublishFailedError):
    """The expected last subject sequence did not match: someone appended first."""


class QueryError(EngramError):
    """A query was refused or failed on the engine side."""


class UsageError(EngramError):
    """A command line or request is malformed (the CLI exits with 2)."""
