"""Live projection: one durable JetStream pull consumer per projection, ordered batches,
commit then ack.

nats-py is used directly here rather than a faststream subscriber because the runner needs, per
batch: each message's stream sequence (to skip what the checkpoint covers), the consumer created
at ``checkpoint + 1`` on every start (the store's checkpoint is the truth, not the consumer's ack
floor), and one cumulative ack (AckPolicy.ALL) for the batch after the store commits.
faststream's batch subscriber hides the first two and acks per message.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Protocol

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from consumers.applying import apply_isolating
from consumers.deadletters import DeadLetterPublisher
from consumers.decoding import decode_batch
from consumers.lease import AnnouncerLease
from engine.events import Event
from engine.signing import Verifier
from engine.stream import AppendResult
from engine.stream.append import Appender, encode_for_append
from engine.stream.read import to_stored
from projections.base import Projection

__all__ = ["Announcer", "ProjectionRunner", "RunnerSettings"]


class Announcer(Protocol):
    """A projection that derives events (e.g. pattern.learned) for the runner to publish.
    ``take_pending`` returns what is not yet on the stream; deterministic event ids make a
    repeated publish a duplicate JetStream drops."""

    def take_pending(self) -> list[Event]: ...


log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    batch_size: int = 2_000
    max_wait_s: float = 0.5
    ack_wait_s: float = 30.0
    retry_backoff_s: float = 1.0


class ProjectionRunner:
    """Feeds one projection from its durable consumer until ``stop`` is set.

    Per batch, in this order: decode (bad messages become dead letters) -> publish dead letters
    (idempotent) -> projection.apply = rows + checkpoint in one transaction -> ack the batch.
    Messages at or below the checkpoint (redeliveries after a crash) are acked without effect.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        projection: Projection,
        *,
        durable: str,
        settings: RunnerSettings | None = None,
        dead_letters: DeadLetterPublisher | None = None,
        announcer: Announcer | None = None,
        appender: Appender | None = None,
        lease: AnnouncerLease | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.js = js
        self.stream = stream
        self.projection = projection
        self.durable = durable
        self.settings = settings or RunnerSettings()
        self.dead_letters = dead_letters
        self.checkpoint = 0
        self.applied_batches = 0
        self.announcer = announcer
        self.appender = appender
        self._published: set[str] = set()
        self.lease = lease
        self.verifier = verifier
        if (announcer is None) != (appender is None):
            raise ValueError("an announcer needs an appender to publish with, and vice versa")

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(self.stream, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.checkpoint + 1,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.settings.ack_wait_s,
            max_ack_pending=max(10_000, self.settings.batch_size * 4),
            filter_subject="memory.>",
        )
        return await self.js.pull_subscribe(
            "memory.>", durable=self.durable, stream=self.stream, config=config
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; on an unexpected error, back off and resume from the checkpoint."""
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # resume from the stored checkpoint after a pause
                log.error(
                    "projection failed, resuming from checkpoint",
                    projection=self.projection.name,
                    error=repr(exc),
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.retry_backoff_s)

    async def _run_once(self, stop: asyncio.Event) -> None:
        self.checkpoint = await asyncio.to_thread(self.projection.checkpoint)
        sub = await self._subscribe()
        log.info(
            "projection started",
            projection=self.projection.name,
            checkpoint=self.checkpoint,
            durable=self.durable,
        )

        def fetch() -> asyncio.Task[list[Msg]]:
            return asyncio.create_task(
                sub.fetch(self.settings.batch_size, timeout=self.settings.max_wait_s)
            )

        # Pipelined: the next batch is fetched while this one is applied (in a thread). Only
        # one fetch is in flight, batches are handled strictly in order, and nothing is acked
        # before its batch commits, so the commit order below is unchanged.
        upcoming = fetch()
        try:
            while not stop.is_set():
                try:
                    msgs = await upcoming
                except TimeoutError:  # nats-py raises its own or asyncio's (both TimeoutError)
                    upcoming = fetch()
                    await self._announce()  # nothing new: we are caught up
                    continue
                upcoming = fetch()
                if not msgs:  # nats-py returns [] when the pull expires with a status reply
                    continue
                await self._handle(msgs)
                if msgs[-1].metadata.num_pending == 0:
                    await self._announce()
        finally:
            # Not awaited: awaiting here could swallow this task's own cancellation.
            upcoming.add_done_callback(_consume_outcome)
            upcoming.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _announce(self) -> None:
        """Publish the derived events the projection decided (only once caught up with the
        stream, so every earlier announcement of the same versions has been seen)."""
        if self.announcer is None or self.appender is None:
            return
        if self.lease is not None and not await self.lease.held():
            return  # another engine announces; ours are the same events, deterministically
        pending = await asyncio.to_thread(self.announcer.take_pending)
        # Published but not read back yet: publishing again would be heard again by plain
        # subscribers (JetStream would only drop it within its duplicate window).
        waiting = {e.id for e in pending}
        self._published &= waiting
        pending = [e for e in pending if e.id not in self._published]
        if not pending:
            return
        results = await self.appender.append_many([encode_for_append(e) for e in pending])
        self._published |= {
            e.id for e, r in zip(pending, results, strict=True) if isinstance(r, AppendResult)
        }
        failed = [r for r in results if not isinstance(r, AppendResult)]
        fresh = sum(1 for r in results if isinstance(r, AppendResult) and not r.duplicate)
        log.info(
            "announced",
            projection=self.projection.name,
            events=len(pending),
            new=fresh,
            failed=len(failed),
        )
        for error in failed:
            log.warning("announcement failed (retried when caught up again)", error=str(error))

    async def _handle(self, msgs: list) -> None:  # type: ignore[type-arg]
        stored = [to_stored(m) for m in msgs]
        stored.sort(key=lambda s: s.sequence)
        fresh = [s for s in stored if s.sequence > self.checkpoint]
        if fresh:
            events, dead = decode_batch(fresh, self.projection.name, verifier=self.verifier)
            if dead and self.dead_letters is not None:
                await self.dead_letters.publish(dead)
            last = fresh[-1].sequence
            created = await asyncio.to_thread(apply_isolating, self.projection, events, dead, last)
            if created and self.dead_letters is not None:
                await self.dead_letters.publish(created)
            self.checkpoint = last
            self.applied_batches += 1
        # AckPolicy.ALL: acking the highest message acknowledges the whole batch.
        await max(msgs, key=lambda m: m.metadata.sequence.stream).ack()


def _consume_outcome(task: asyncio.Task[list[Msg]]) -> None:
    """Retrieve a dropped prefetch's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
