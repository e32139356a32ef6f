"""The event log: one JetStream stream, appended to and read back in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from engine.connection import server_address
from engine.errors import EngramError, PermissionDeniedError, PublishFailedError
from engine.events import Event
from engine.permissions import denied_error, denied_publishes, refused_or, watch_of
from engine.settings import StreamSettings
from engine.stream.append import Appender
from engine.stream.read import ReadRange, read_stream
from engine.stream.records import AppendResult, StoredMessage, StreamState
from engine.stream.setup import StreamApplied, apply_stream, lookup_stream

__all__ = ["EventLog"]


class EventLog:
    """Append-only access to the stream of ``<subject_prefix>.>`` (``memory.>``) over one NATS
    connection: appends publish on, and reads read, the subjects of ``settings``."""

    def __init__(
        self,
        nc: NatsClient,
        settings: StreamSettings,
        *,
        timeout_s: float = 5.0,
        max_in_flight: int = 2_000,
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.js: JetStreamContext = nc.jetstream(timeout=timeout_s)
        self.subjects = settings.events
        self._appender = Appender(
            nc,
            settings.name,
            timeout_s=timeout_s,
            max_in_flight=max_in_flight,
            subjects=self.subjects,
        )

    @property
    def stream_name(self) -> str:
        return self.settings.name

    async def lookup(self) -> StreamInfo:
        """The stream's info; raises StreamNotFoundError (naming the server and how to create
        the stream) when it does not exist. Never creates or changes the stream: what every
        client (CLI verb, SDK) does. Raises PermissionDeniedError when the broker refuses this
        user the stream's info or its replies' inbox (ENGRAM_NATS__INBOX_PREFIX)."""
        return await refused_or(
            self.nc,
            lookup_stream(self.js, self.settings, where=server_address(self.nc)),
            publishes=f"$JS.API.STREAM.INFO.{self.settings.name}",
            what=f"looking stream {self.settings.name} up",
        )

    async def lookup_if_allowed(self) -> StreamInfo | None:
        """``lookup``, or None when the broker refuses this user the stream's info: the stream
        is not its to inspect (a tenant's agent of engram auth: a stream's info lists every
        tenant's subjects), and publishing needs no info (an append with no stream capturing
        its subject fails naming the stream). A missing stream, or a refused inbox, still
        raises. What MemoryClient and ``engram publish`` do."""
        info_subject = f"$JS.API.STREAM.INFO.{self.settings.name}".lower()
        try:
            return await self.lookup()
        except PermissionDeniedError as exc:
            if (exc.operation, exc.subject) != ("publish", info_subject):
                raise
            return None

    async def apply(
        self, *, allow_downgrade: bool | None = None, warn_kept: bool = True
    ) -> StreamApplied:
        """Create the stream, or raise its limits to the settings' (idempotent). A limit is
        lowered only with ``allow_downgrade`` (default: the settings' ``allow_downgrade``);
        a lower limit kept is logged unless ``warn_kept`` is False (see ``apply_stream``).
        Only ``engram serve``, ``engram stream apply`` and tests call this."""
        if allow_downgrade is None:
            allow_downgrade = self.settings.allow_downgrade
        name = self.settings.name
        return await refused_or(  # a user who may not: PermissionDeniedError, not a timeout
            self.nc,
            apply_stream(
                self.js, self.settings, allow_downgrade=allow_downgrade, warn_kept=warn_kept
            ),
            publishes=[f"$JS.API.STREAM.{call}.{name}" for call in ("INFO", "CREATE", "UPDATE")],
            what=f"applying stream {name}",
        )

    async def ensure(self, *, allow_downgrade: bool | None = None) -> StreamInfo:
        """``apply``'s stream info (engram serve and tests; clients use ``lookup``)."""
        return (await self.apply(allow_downgrade=allow_downgrade)).info

    async def append(
        self, event: Event, *, expected_last_subject_seq: int | None = None
    ) -> AppendResult:
        """Append ``event``; its namespace and id are the ``Nats-Msg-Id`` (``<namespace>:<id>``),
        so a retry is stored once, and another tenant's event with the same id is stored too.

        ``expected_last_subject_seq`` makes the append conditional on the last sequence stored
        on this event's subject (0: none yet); raises ConcurrencyConflictError when it moved.
        Raises PermissionDeniedError, without waiting for the ack, when the broker refuses
        this user the event's subject (another tenant's, a derived type).
        """
        encoded = self._appender.encode(event)
        return await refused_or(
            self.nc,
            self._appender.append(encoded, expected_last_subject_seq=expected_last_subject_seq),
            publishes=encoded[1],
            what=f"appending {event.type} event {event.id}",
        )

    async def append_many(self, events: Iterable[Event]) -> list[AppendResult | EngramError]:
        """Append many events with bounded acks in flight; one result or error per event."""
        return await self.append_encoded([self._appender.encode(e) for e in events])

    async def append_encoded(
        self, batch: list[tuple[str, str, bytes]]
    ) -> list[AppendResult | EngramError]:
        """Append already-encoded ``(id, subject, body)`` triples (the bulk fast path). An event
        whose subject the broker refused this user is a PermissionDeniedError (after the ack
        timeout: a batch does not stop for one refusal)."""
        found = watch_of(self.nc)
        mark = found.mark() if found is not None else 0
        results = await self._appender.append_many(batch)
        if found is None or all(not isinstance(r, PublishFailedError) for r in results):
            return results
        refused = denied_publishes(self.nc, mark, {subject for _, subject, _ in batch})
        return [
            denied_error(self.nc, refused[subject], what=f"appending event {event_id}")
            if isinstance(result, PublishFailedError) and subject in refused
            else result
            for (event_id, subject, _), result in zip(batch, results, strict=True)
        ]

    def read(
        self, window: ReadRange | None = None, *, batch: int = 1_000
    ) -> AsyncIterator[StoredMessage]:
        """Stored messages in sequence order within ``window`` (default: the whole log)."""
        return read_stream(
            self.js, self.settings.name, window or ReadRange(), batch=batch, subjects=self.subjects
        )

    async def state(self) -> StreamState:
        info = await self.js.stream_info(self.settings.name)
        return StreamState(
            name=info.config.name or self.settings.name,
            messages=info.state.messages,
            bytes=info.state.bytes,
            first_sequence=info.state.first_seq,
            last_sequence=info.state.last_seq,
            consumers=info.state.consumer_count,
            subjects=tuple(info.config.subjects or ()),
            replicas=info.config.num_replicas or 1,
        )
