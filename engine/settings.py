"""One settings object for the whole engine: defaults, then ``ENGRAM_*`` variables, then flags."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.errors import ConfigurationError
from engine.events.envelope import NAMESPACE_PATTERN
from engine.subjects import (
    DEFAULT_EVENT_PREFIX,
    DEFAULT_SERVICE_PREFIX,
    PREFIX_PATTERN,
    EventSubjects,
    ServiceSubjects,
    prefixes_overlap,
)

__all__ = ["NatsSettings", "Settings", "StreamSettings", "parse_namespaces"]


class StreamSettings(BaseModel):
    """The JetStream stream that holds the log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")] = "ENGRAM"
    subject_prefix: Annotated[str, Field(pattern=PREFIX_PATTERN, max_length=100)] = (
        DEFAULT_EVENT_PREFIX
    )
    """Events travel on ``<prefix>.<type>`` and the stream captures ``<prefix>.>``
    (``ENGRAM_STREAM__SUBJECT_PREFIX``, dot-separated tokens, no wildcards). Every publisher,
    consumer and reader of this stream derives its subjects from it: with another stream name
    and another prefix, a second engram shares a NATS server without seeing these events."""
    service_prefix: Annotated[str, Field(pattern=PREFIX_PATTERN, max_length=100)] = (
        DEFAULT_SERVICE_PREFIX
    )
    """The engine's own subjects, outside the stream: dead letters on
    ``<prefix>.deadletter.<kind>`` and query verbs on ``<prefix>.query.<verb>``
    (``ENGRAM_STREAM__SERVICE_PREFIX``); engines of two streams on one server need two."""
    duplicate_window_s: Annotated[float, Field(gt=0)] = 120.0
    replicas: Annotated[int, Field(ge=1, le=5)] = 1
    max_age_s: Annotated[float, Field(ge=0)] = 0.0
    """0 keeps events forever (the log is the truth; compaction decides what may go)."""
    max_bytes: int = -1
    max_msg_size: int = -1
    allow_downgrade: bool = False
    """Let ``engram serve`` / ``engram stream apply`` lower the limits above on an existing
    stream (replicas, duplicate window, max age/bytes/message size); otherwise they keep the
    stronger existing value. Clients never change the stream either way."""

    @model_validator(mode="after")
    def _prefixes_apart(self) -> StreamSettings:
        for own in ("deadletter", "query"):
            if prefixes_overlap(self.subject_prefix, f"{self.service_prefix}.{own}"):
                raise ValueError(
                    f"subject_prefix {self.subject_prefix!r} and service_prefix "
                    f"{self.service_prefix!r} overlap: the stream would capture the engine's "
                    f"{self.service_prefix}.{own}.* subjects, or they its events"
                )
        return self

    @property
    def events(self) -> EventSubjects:
        """The subjects of this stream's events (``memory.<type>`` by default)."""
        return EventSubjects(self.subject_prefix)

    @property
    def service(self) -> ServiceSubjects:
        """The engine's own subjects beside this stream (``engram.*`` by default)."""
        return ServiceSubjects(self.service_prefix)

    @property
    def subjects(self) -> tuple[str, ...]:
        """What the stream captures: every event subject, ``<subject_prefix>.>``. Derived, not
        a setting of its own, so the stream can never disagree with what is published."""
        return (self.events.wildcard,)


class NatsSettings(BaseModel):
    """How to reach NATS. With no ``url`` the embedded server under the data directory is used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    connect_timeout_s: Annotated[float, Field(gt=0)] = 3.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    inbox_prefix: Annotated[str, Field(pattern=PREFIX_PATTERN, max_length=100)] = "_INBOX"
    """Where replies to this connection's requests arrive (``<prefix>.<unique>...``;
    ``ENGRAM_NATS__INBOX_PREFIX``). nats-py's ``_INBOX`` by default; a tenant's agent on a
    broker configured by ``engram auth`` uses ``_INBOX_<namespace>``, the only inboxes it may
    subscribe to. The engine answers queries only on ``_INBOX.<...>`` or, for a tenant's verb,
    ``_INBOX_<namespace>.<...>`` (engine.subjects.is_reply_inbox): another prefix gets no
    answer."""


class Settings(BaseModel):
    """Everything the engine needs, passed explicitly (never read from globals)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("engram-data")
    nats: NatsSettings = NatsSettings()
    stream: StreamSettings = StreamSettings()
    publish_max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 2_000
    embedded_port: Annotated[int, Field(ge=-1, le=65_535)] = -1
    """Client port of the embedded server: -1 picks a free one."""
    embedded_sync_always: bool = False
    """fsync every write on the embedded server (no loss on power failure; slower)."""
    log_json: bool = False
    log_level: str = "info"
    embedder: str = "hashing"
    """Embedder of the vector index: hashing (default, offline, lexical) or minilm (semantic)."""
    index_m: Annotated[int, Field(ge=2, le=256)] = 16
    index_ef_construction: Annotated[int, Field(ge=1)] = 200
    index_ef: Annotated[int, Field(ge=1)] = 200
    search_lexical_weight: Annotated[float, Field(ge=0, le=1)] = 0.6
    """Weight of the lexical (BM25) similarity in a hybrid search; the vector one has the rest."""
    search_duplicate_similarity: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Term cosine at which two search hits are near-duplicates, grouped under the best one."""
    cache_similarity: Annotated[float, Field(gt=0, le=1)] = 0.85
    """The similarity (0..1] at which a cached prompt answers a ``cache_lookup`` (a lookup may
    ask for another threshold; ``ENGRAM_CACHE_SIMILARITY``)."""
    recent_capacity: Annotated[int, Field(ge=1)] = 10_000
    """Events kept by the operational tier (the in-memory ring buffer)."""
    query_sql: bool = False
    """Answer the operator verb ``sql`` over NATS (``ENGRAM_QUERY_SQL``, ``serve --enable-sql``).
    Off by default; ``engram sql --data-dir`` on the engine's host works either way."""
    query_export: bool = False
    """Answer the operator verb ``export`` over NATS, writing under ``<data dir>/exports``
    (``ENGRAM_QUERY_EXPORT``, ``serve --enable-export``). Off by default: each export is a full
    copy on the engine's disk. ``engram export --data-dir`` on the engine's host works anyway."""
    query_consistency_wait_s: Annotated[float, Field(ge=0, le=60)] = 2.0
    """The longest a query with ``min_sequence`` waits for the projections it reads to apply
    that sequence (``ENGRAM_QUERY_CONSISTENCY_WAIT_S``); past it the answer comes anyway, marked
    ``consistency.stale``. Each waiting request holds one of the verb's query workers."""
    snapshot_every_events: Annotated[int, Field(ge=0)] = 50_000
    """engram serve snapshots after this many new events (0: never by count)."""
    snapshot_every_s: Annotated[float, Field(ge=0)] = 1_800.0
    """... or after this many seconds with new events (0: never by time)."""
    metrics_listen: (
        Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]*):\d{1,5}$")] | None
    ) = None
    """``host:port`` of the engine's HTTP endpoint for ``/metrics`` (Prometheus), ``/healthz``
    and ``/readyz`` (``ENGRAM_METRICS_LISTEN``, ``engram serve --metrics``); None: none. Port 0
    picks a free one. Bind to loopback unless a firewall guards the port: no authentication."""
    metrics_max_namespaces: Annotated[int, Field(ge=0)] = 50
    """Per-namespace metrics carry a ``namespace`` label while the engine holds at most this many
    namespaces; above it they are reported as totals only (``namespace="_all"``)."""
    metrics_memory_refresh_s: Annotated[float, Field(ge=0)] = 30.0
    """The memory sizes (rows, vectors, bytes on disk) are counted at a scrape at most this often
    (0: at every scrape); between two counts a scrape serves the last one."""
    ready_max_lag: Annotated[int, Field(ge=0)] = 10_000
    """``/readyz`` and ``engram status`` say not ready while a projection lags more events."""
    engine_key: Annotated[SecretStr, Field(min_length=32)] | None = None
    """The key engines sign derived events with (``ENGRAM_ENGINE_KEY``, 32+ characters, e.g.
    ``openssl rand -hex 32``): set it identically on every engine and operator command of a
    stream. Unset, a key is generated once per stream (engine.stream.engine_key)."""
    namespaces: tuple[str, ...] | None = None
    """The tenants this engine projects and answers (``ENGRAM_NAMESPACES=alpha,beta``, ``engram
    serve --namespaces alpha,beta``); None (the default): every namespace. Engines owning
    disjoint sets share one stream; each is kept sorted and once, every name a namespace. A
    value naming none (``ENGRAM_NAMESPACES=`` or ``,``) is refused, not read as every one."""

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespace_set(cls, value: Any) -> tuple[str, ...] | None:
        chosen = parse_namespaces(value)
        if chosen is None and value is not None:  # "", ",", []: not "every namespace"
            raise ValueError(
                f"ENGRAM_NAMESPACES names no namespace ({value!r}): unset it for every "
                "namespace, or name them (ENGRAM_NAMESPACES=alpha,beta)"
            )
        return chosen

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overlaid by ``ENGRAM_*`` from ``environ``, overlaid by non-None overrides.

        Nested fields use a double underscore in the environment (``ENGRAM_STREAM__NAME``) and
        a dotted key in ``overrides`` (``{"stream.name": "X"}``). Raises ConfigurationError.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for key, value in env.items():
            if not key.startswith("ENGRAM_"):
                continue
            path = key[len("ENGRAM_") :].lower().split("__")
            if path == ["nats_url"]:
                path = ["nats", "url"]
            _set_path(values, path, value)
        for key, value in overrides.items():
            if value is not None:
                _set_path(values, key.split("."), value)
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [
                ".".join(str(p) for p in e["loc"]) + ": " + e["msg"]
                for e in exc.errors(include_url=False)
            ]
            raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None

    @property
    def vectors_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def server_dir(self) -> Path:
        """Where the embedded nats-server keeps its JetStream store, config and log."""
        return self.data_dir / "nats"


def parse_namespaces(value: Any) -> tuple[str, ...] | None:
    """A set of namespaces from ``alpha,beta`` or a sequence of names: sorted, each once; None
    for None or nothing (every namespace). Raises ValueError naming the pattern a name breaks."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple | set | frozenset):
        # ValueError, not TypeError: pydantic reports only the former as a validation error
        raise ValueError(f"namespaces must be names separated by commas, got {value!r}")  # noqa: TRY004
    chosen: set[str] = set()
    for name in names:
        text = name.strip() if isinstance(name, str) else name
        if text == "" and isinstance(value, str):
            continue  # "alpha,,beta" or a trailing comma
        if not isinstance(text, str) or not _NAMESPACE.fullmatch(text):
            raise ValueError(
                f"namespace {text!r} must match {NAMESPACE_PATTERN} (letters, digits, '-' and "
                "'_', at most 64: one NATS subject token, no '.', '*', '>' or spaces)"
            )
        chosen.add(text)
    return tuple(sorted(chosen)) or None


_NAMESPACE = re.compile(NAMESPACE_PATTERN)


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigurationError(f"setting {'.'.join(path)} conflicts with {part}")
        node = child
    node[path[-1]] = value
