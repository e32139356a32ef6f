"""The gateway's one link to engram: a ``MemoryClient`` over NATS, opened on first use and
opened again after it was lost.

Writes go to the stream (an append answers once JetStream acknowledged it, so a 2xx means the
event is stored); queries go to whichever engine answers the namespace's subject; pattern
announcements are read from the stream with an ordered consumer. The gateway holds no state of
its own, so any number of them can run beside any number of engines.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from engine.client import MemoryClient
from engine.errors import ConnectionFailedError, EngramError
from engine.events import Event
from engine.events.registry import require_agent_type
from engine.recall import Answer
from engine.server import read_server_record
from engine.settings import Settings
from engine.stream import AppendResult

__all__ = ["Announcement", "Announcements", "Gateway"]

log = structlog.get_logger(__name__)

PATTERN_LEARNED = "pattern.learned"


@dataclass(frozen=True, slots=True)
class Announcement:
    """One stored ``pattern.learned`` event: its stream sequence and its JSON body."""

    sequence: int
    body: bytes


class Gateway:
    """Connects lazily (the first request, or the first after the connection was closed for
    good), so the gateway starts, and keeps answering 503, while NATS or the stream is away.

    With no ``nats.url`` in the settings it uses the embedded server ``engram serve`` runs
    for the data directory (never starting one itself)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: MemoryClient | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)

    def _client_settings(self) -> Settings:
        if self.settings.nats.url:
            return self.settings
        record = read_server_record(self.settings.server_dir)
        if record is None:
            raise ConnectionFailedError(
                f"no NATS server: give --nats-url (ENGRAM_NATS_URL), or run engram serve with "
                f"--data-dir {self.settings.data_dir}"
            )
        nats = self.settings.nats.model_copy(update={"url": record.url})
        return self.settings.model_copy(update={"nats": nats})

    async def client(self) -> MemoryClient:
        """The connected client; ConnectionFailedError or StreamNotFoundError when it cannot
        be had now."""
        client = self._client
        if client is not None and not client.log.nc.is_closed:
            return client
        async with self._lock:
            if self._client is not None and self._client.log.nc.is_closed:
                stale, self._client = self._client, None
                with contextlib.suppress(Exception):  # it is gone already; only free it
                    await stale.__aexit__(None, None, None)
            if self._client is None:
                fresh = MemoryClient(settings=self._client_settings())
                await fresh.__aenter__()
                self._client = fresh
                log.info("gateway connected to NATS", stream=self.settings.stream.name)
            return self._client

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client.log.nc.is_connected

    async def append(self, event: Event) -> AppendResult:
        """Append ``event`` (an agent's type only: ForbiddenEventTypeError otherwise); returns
        once JetStream acknowledged it."""
        require_agent_type(event.type)
        client = await self.client()
        return await client.log.append(event)

    async def append_many(self, events: Sequence[Event]) -> list[AppendResult | EngramError]:
        """Append ``events`` with the SDK's bounded window of acks in flight; one result or
        error per event, in order (``MemoryClient.publish_many``)."""
        client = await self.client()
        return list((await client.publish_many(events)).results)

    async def ask(
        self, verb: str, arguments: Mapping[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        """The reply of ``verb`` as JSON, with ``consistency`` when the engine gave one."""
        client = await self.client()
        answer: Answer = await client.ask(verb, arguments, namespace=namespace)
        reply: dict[str, Any] = answer.reply.model_dump(mode="json")
        if answer.consistency is not None:
            reply["consistency"] = answer.consistency.model_dump(mode="json")
        return reply

    async def announcements(self, namespace: str, after: int | None) -> Announcements:
        """Subscribe to the ``pattern.learned`` events of ``namespace`` as they are stored:
        those after stream sequence ``after`` first (a resumed stream), or only new ones when
        ``after`` is None. An ordered consumer (ephemeral, flow-controlled, restarted by
        nats-py on a gap), so nothing is skipped or repeated. Close it when done."""
        client = await self.client()
        subject = self.settings.stream.events.subject(PATTERN_LEARNED, namespace)
        config = ConsumerConfig()
        policy = DeliverPolicy.NEW
        if after is not None:
            policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, after + 1
        try:
            sub = await client.log.js.subscribe(
                subject,
                stream=self.settings.stream.name,
                ordered_consumer=True,
                deliver_policy=policy,
                config=config,
            )
        except (NatsError, TimeoutError) as exc:  # refused, or the stream is gone
            raise ConnectionFailedError(f"cannot follow {subject}: {exc!r}") from None
        return Announcements(sub)


class Announcements:
    """An open subscription to one tenant's ``pattern.learned`` events."""

    def __init__(self, sub: JetStreamContext.PushSubscription) -> None:
        self._sub = sub

    async def next(self, timeout_s: float) -> Announcement | None:
        """The next announcement, or None when none came within ``timeout_s``."""
        try:
            msg = await self._sub.next_msg(timeout=timeout_s)
        except NatsTimeoutError:
            return None
        return Announcement(msg.metadata.sequence.stream, msg.data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone already
            await self._sub.unsubscribe()
