"""The one exception root of engram and its specific subclasses."""

from __future__ import annotations

__all__ = [
    "AuthorizationError",
    "ConcurrencyConflictError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DimensionMismatchError",
    "EmbeddedServerError",
    "EmbedderError",
    "EmbedderUnavailableError",
    "EngineKeyError",
    "EngineUnavailableError",
    "EngramError",
    "ForbiddenError",
    "ForbiddenEventTypeError",
    "IndexCorruptError",
    "IndexMismatchError",
    "InvalidEventError",
    "NamespaceMismatchError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProjectionError",
    "PublishFailedError",
    "QueryError",
    "SnapshotInvalidError",
    "StoreLockedError",
    "StreamNotFoundError",
    "UnknownEmbedderError",
    "UnknownEventTypeError",
    "UpcastError",
    "UsageError",
    "VectorIndexError",
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


class NamespaceMismatchError(InvalidEventError):
    """A v2 event whose envelope ``namespace`` differs from its subject's namespace token
    (``memory.<type>.<namespace>``): dead-lettered as ``namespace_mismatch``, never applied."""


class ForbiddenEventTypeError(InvalidEventError):
    """An agent tried to publish a type only the engine publishes (``pattern.learned``, ...)."""


class EngineKeyError(ConfigurationError):
    """The engine's signing key is missing, too short, or not the one this stream is signed
    with (see engine.signing and ``ENGRAM_ENGINE_KEY``)."""


class ConnectionFailedError(EngramError):
    """The NATS server could not be reached or refused the connection."""


class AuthorizationError(ConnectionFailedError):
    """The NATS server refused the credentials (wrong, missing or expired)."""


class PermissionDeniedError(EngramError):
    """The NATS server refused this connection's user a publish or a subscription (a
    ``Permissions Violation``): a subject outside the user's permissions, e.g. another tenant's
    subjects, a derived event type or an operator verb for a tenant's agent (see engram auth).
    Raised instead of the timeout the refused request would otherwise end in."""

    def __init__(self, message: str, *, operation: str = "", subject: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        """``publish`` or ``subscription``."""
        self.subject = subject
        """The refused subject, as the server named it (nats-py lowercases it)."""


class StreamNotFoundError(ConfigurationError):
    """The event stream does not exist (only ``engram serve`` / ``engram stream apply`` create
    it)."""


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


class ForbiddenError(QueryError):
    """An operator verb was refused: it is off on this engine (``sql``), or asked for what a
    remote client may not (an ``export`` outside the engine's export directory)."""


class UsageError(EngramError):
    """A command line or request is malformed (the CLI exits with 2)."""


class EmbedderError(EngramError):
    """An embedder could not be built or failed to embed."""


class UnknownEmbedderError(EmbedderError, ConfigurationError):
    """No embedder is registered under the requested name; the message lists the known ones."""


class EmbedderUnavailableError(EmbedderError):
    """An embedder needs an optional extra (packages or model weights) that is not installed."""


class VectorIndexError(EngramError):
    """The vector index refused an operation or could not be read or written."""


class DimensionMismatchError(VectorIndexError):
    """A vector's dimension differs from the index's dimension."""

    dead_letter_kind = "dimension_mismatch"


class IndexMismatchError(VectorIndexError):
    """A saved index was built by another embedder or dimension than the one expected."""


class IndexCorruptError(VectorIndexError):
    """A saved index is incomplete or damaged (a torn save, a missing or altered index file)."""


class StoreLockedError(EngramError):
    """A projection store is held read-write by another process (a running ``engram serve``)."""


class ProjectionError(EngramError):
    """A projection could not apply an event or commit a batch."""


class SnapshotInvalidError(EngramError):
    """A snapshot failed verification; the reason says which check (restore skips it)."""


class EngineUnavailableError(QueryError):
    """No engine answered on ``engram.query.*`` (start ``engram serve``)."""
