"""The announcer lease against a real nats-server: kept alive by the engine's keeper while the
runners are busy, given up when an announcing projection cannot progress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from consumers.lease import BUCKET, AnnouncerLease

TTL_S = 1.5


@pytest.fixture(autouse=True)
async def _short_ttl_bucket(nc: NatsClient) -> AsyncIterator[None]:
    """The bucket is created with this module's short TTL and removed afterwards, so other
    tests' leases get the default TTL again."""
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(BUCKET)
    yield
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(BUCKET)


async def _keep_for(lease: AnnouncerLease, seconds: float, *, healthy: bool) -> None:
    stop = asyncio.Event()
    keeper = asyncio.create_task(lease.keep(stop, lambda: healthy))
    await asyncio.sleep(seconds)
    stop.set()
    await keeper


async def test_keeper_renews_a_held_lease_without_any_announcement(nc: NatsClient) -> None:
    """Held once, then only the keeper runs for twice the TTL: the lease is still ours (its
    revision moved) and another engine cannot take it."""
    ours = AnnouncerLease(nc.jetstream(), "KEEP", "engine-a", ttl_s=TTL_S)
    other = AnnouncerLease(nc.jetstream(), "KEEP", "engine-b", ttl_s=TTL_S)
    assert await ours.held()
    kv = await nc.jetstream().key_value(BUCKET)
    before = (await kv.get("announcer.KEEP")).revision
    await _keep_for(ours, 2 * TTL_S, healthy=True)
    after = (await kv.get("announcer.KEEP")).revision
    assert before is not None and after is not None and after > before
    assert not await other.held()
    await ours.release()


async def test_keeper_lets_the_lease_lapse_while_unhealthy(nc: NatsClient) -> None:
    """While an announcing projection is degraded the keeper stops renewing: after the TTL a
    healthy engine takes the lease over."""
    ours = AnnouncerLease(nc.jetstream(), "LAPSE", "engine-a", ttl_s=TTL_S)
    other = AnnouncerLease(nc.jetstream(), "LAPSE", "engine-b", ttl_s=TTL_S)
    assert await ours.held()
    await _keep_for(ours, 2 * TTL_S, healthy=False)
    assert await other.held()
    await other.release()


async def test_keeper_never_takes_a_lease_it_does_not_hold(nc: NatsClient) -> None:
    """A keeper of an engine that never announced leaves the lease free for another."""
    idle = AnnouncerLease(nc.jetstream(), "IDLE", "engine-a", ttl_s=TTL_S)
    other = AnnouncerLease(nc.jetstream(), "IDLE", "engine-b", ttl_s=TTL_S)
    await _keep_for(idle, TTL_S, healthy=True)
    assert not idle.holding
    assert await other.held()
    await other.release()
