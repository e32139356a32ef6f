"""A lease so that at most one engine of a stream publishes derived events at a time.

Deterministic ids already make a second publish of the same pattern version a duplicate that
JetStream does not store twice. But a plain NATS subscriber sees every publish, stored or not, so
two engines announcing the same version would both be heard. The lease is a JetStream KV entry
(bucket TTL ``ttl_s``) created by one engine and renewed with compare-and-set on its revision;
when the holder stops renewing, the entry expires and another engine takes over; a holder that
stops cleanly releases it, so the next engine need not wait for the TTL.

The lease is per namespace set: engines owning the same tenants share one (one of them
announces), engines owning disjoint sets each hold their own and announce their own tenants.
An engine owning every namespace holds ``announcer.<stream>``, one owning a set
``announcer.<stream>.<set key>`` (``consumers.tenants.set_key``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from consumers.tenants import set_key
from engine.backoff import wait_or_stop

__all__ = ["AnnouncerLease", "lease_key"]

log = structlog.get_logger(__name__)

BUCKET = "ENGRAM_LEASES"


class AnnouncerLease:
    """``await lease.held()`` is True while this engine may announce for ``stream`` (the
    tenants of ``namespaces``; None: every one)."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        holder: str,
        ttl_s: float = 10.0,
        *,
        namespaces: tuple[str, ...] | None = None,
        replicas: int = 1,
    ) -> None:
        self._js = js
        self._replicas = replicas
        """Replicas of the bucket when this engine creates it: the stream's, so that in a
        cluster the lease survives the loss of a node (an R1 bucket on a dead node stops
        every engine announcing until that node is back)."""
        self._key = lease_key(stream, namespaces)
        self._holder = holder.encode()
        self._ttl_s = ttl_s
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self._renewed = 0.0
        self._guard = asyncio.Lock()

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(BUCKET)
            except BucketNotFoundError:
                self._kv = await self._js.create_key_value(
                    bucket=BUCKET, ttl=self._ttl_s, replicas=self._replicas
                )
        return self._kv

    async def held(self) -> bool:
        """Take or renew the lease; False when another engine holds it. Several runners of
        one engine share one lease: renewals are serialised so they never race each other."""
        async with self._guard:
            return await self._held()

    async def _held(self) -> bool:
        if self._revision is not None and time.monotonic() - self._renewed < self._ttl_s / 3:
            return True
        kv = await self._bucket()
        try:
            if self._revision is None:
                self._revision = await kv.create(self._key, self._holder)
                log.info("announcer lease taken", key=self._key)
            else:
                self._revision = await kv.update(self._key, self._holder, last=self._revision)
        except (KeyWrongLastSequenceError, APIError):
            if self._revision is not None:
                log.warning("announcer lease lost", key=self._key)
            self._revision = await self._adopt(kv)
            if self._revision is None:
                return False
        self._renewed = time.monotonic()
        return True

    async def _adopt(self, kv: KeyValue) -> int | None:
        """The lease's revision when it is ours already (this engine, restarted), else None."""
        try:
            entry = await kv.get(self._key)
        except (KeyNotFoundError, APIError):
            return None
        if entry.value != self._holder or entry.revision is None:
            return None
        try:
            return await kv.update(self._key, self._holder, last=entry.revision)
        except (KeyWrongLastSequenceError, APIError):
            return None

    @property
    def key(self) -> str:
        """The KV key of this lease (``announcer.<stream>`` or ``announcer.<stream>.<set>``)."""
        return self._key

    @property
    def holding(self) -> bool:
        """True when this engine took the lease (it may have expired since)."""
        return self._revision is not None

    @property
    def held_now(self) -> bool:
        """True while this engine holds the lease and renewed it within its TTL (no I/O: what
        a metric may read at any time)."""
        return self._revision is not None and time.monotonic() - self._renewed < self._ttl_s

    async def keep(self, stop: asyncio.Event, healthy: Callable[[], bool]) -> None:
        """Renew a lease this engine holds every third of its TTL until ``stop``, independently
        of the runners (which renew it only when they announce, and not while they apply or
        save a batch). While ``healthy()`` is False (an announcing projection cannot progress)
        it stops renewing, so the lease expires and a healthy engine takes over. Never takes a
        lease it does not hold; errors (the server away) are retried at the next period."""
        while not stop.is_set():
            await wait_or_stop(stop, self._ttl_s / 3)
            if stop.is_set() or not self.holding or not healthy():
                continue
            try:
                await self.held()
            except (NatsError, TimeoutError) as exc:  # the server away: retried next period
                log.debug("announcer lease not renewed", key=self._key, error=repr(exc))

    async def release(self) -> None:
        """Give the lease up (a clean stop), so another engine takes over at once rather than
        after the TTL. Only our own revision is deleted: a lease taken over meanwhile stays."""
        async with self._guard:
            if self._revision is None or self._kv is None:
                return
            revision, self._revision = self._revision, None
            try:
                await self._kv.delete(self._key, last=revision)
            except (KeyWrongLastSequenceError, APIError):
                return  # no longer ours
            log.info("announcer lease released", key=self._key)


def lease_key(stream: str, namespaces: tuple[str, ...] | None = None) -> str:
    """The lease of the engines of ``stream`` owning ``namespaces`` (None: every one)."""
    if namespaces is None:
        return f"announcer.{stream}"  # as before engines split the tenants
    return f"announcer.{stream}.{set_key(namespaces)}"
