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
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import structlog
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from consumers.applying import ProjectionStalledError, apply_isolating
from consumers.deadletters import DeadLetterPublisher
from consumers.decoding import decode_batch
from consumers.lease import AnnouncerLease
from consumers.observer import RunnerObserver
from consumers.queries.freshness import Progress
from consumers.unavailable import is_unavailable
from engine.backoff import retry_delay, wait_or_stop
from engine.errors import EngramError
from engine.events import Event
from engine.signing import Verifier
from engine.stream import AppendResult
from engine.stream.append import Appender
from engine.stream.read import to_stored
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects
from projections.base import Announcer, Projection
from projections.faults import describe
from projections.records import DeadLetter, SequencedEvent

__all__ = ["Announcer", "Link", "ProjectionRunner", "RunnerSettings", "retry_delay"]


log = structlog.get_logger(__name__)


class Link(Protocol):
    """The state of the runner's NATS connection (``consumers.outage.ConnectionWatch``)."""

    def is_up(self) -> bool: ...

    def settling(self) -> bool:
        """True while the connection is down or has just come back."""
        ...

    async def wait_up(self, stop: asyncio.Event) -> None: ...


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    batch_size: int = 2_000
    max_wait_s: float = 0.5
    ack_wait_s: float = 30.0
    retry_backoff_s: float = 1.0
    """The first pause after a failure; each further failure in a row doubles it ..."""
    max_backoff_s: float = 30.0
    """... up to this."""
    api_timeout_s: float = 2.0
    """How long the engine's runners wait for a JetStream API answer (consumer info, delete,
    create; the stream's info; the announcer lease): the engine gives them a JetStream context
    with this timeout. A request sent while its stream or consumer has no leader is never
    answered, so a short wait asks again soon after the election, not 5 s later."""
    unavailable_retry_s: float = 0.25
    """The first pause when JetStream is briefly unavailable (``consumers.unavailable``: a
    leader election, no answer); it doubles while that lasts ..."""
    max_unavailable_retry_s: float = 1.0
    """... up to this (never the 30 s of ``max_backoff_s``)."""


_NATS_AWAY = "NATS connection lost"
_INVALID_RESET = 10204  # JSConsumerInvalidResetErr
_NO_LEADER = "JetStream unavailable (a leader election in the cluster?)"


class _DeliveriesLostError(Exception):
    """The consumer delivered messages this subscription never received (they were in flight
    when the connection dropped): acknowledging later ones would acknowledge them too."""


class _LeaderBackError(Exception):
    """The consumer has a leader again after an election: what the dead leader delivered and
    this subscription never received would be delivered again only after ack_wait (30 s) if
    no later event showed the gap, so the runner resets it to its checkpoint."""


class ProjectionRunner:
    """Feeds one projection from its durable consumer until ``stop`` is set.

    Per batch, in this order: decode (bad messages become dead letters) -> publish dead letters
    (idempotent) -> projection.apply -> ack the batch. For a transactional projection (tables)
    apply commits rows and checkpoint in one transaction; a whole-state one (learner, sessions,
    vectors) takes the batch into memory and saves by its policy, its checkpoint being the
    saved watermark, so an ack may precede the save: after a crash the runner resumes from that
    watermark and the projection applies the tail again (``projections.base``). Messages at or
    below the checkpoint (redeliveries after a crash) are acked without effect.

    Failures, and what the runner does about each:

    - the projection's environment fails (full disk, I/O, memory, a broken database: see
      ``projections.faults``): the batch is neither acknowledged nor dead-lettered; the runner
      is ``degraded`` with the ``reason``, logs it once, and applies the same batch again after
      a growing pause until it succeeds, so it resumes exactly where it stopped;
    - an event's content fails: that event becomes a dead letter (``apply_isolating``);
    - the NATS connection is lost: the runner waits for it quietly (the connection watch logs
      the outage) and then resubscribes from its checkpoint;
    - a delivery was lost in flight (a gap in the consumer's delivery sequence): it resubscribes
      from its checkpoint before acknowledging anything after the gap;
    - anything else: it logs the first failure of a series, pauses (growing, capped) and
      resubscribes from its checkpoint.
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
        link: Link | None = None,
        verifier: Verifier | None = None,
        subjects: EventSubjects = DEFAULT_SUBJECTS,
        namespaces: tuple[str, ...] | None = None,
        progress: Progress | None = None,
        observer: RunnerObserver | None = None,
    ) -> None:
        self.js = js
        self.observer = observer
        """Told of each batch applied, dead letter and announcement (metrics); None: nobody."""
        self._apply_s = 0.0
        self.progress = progress
        """Told each time the checkpoint moves (queries waiting to read their writes)."""
        self.subjects = subjects
        """The stream's event subjects: the consumer filters on them, events are decoded
        against them (``settings.stream.events``; ``memory.<type>`` by default)."""
        self.namespaces = namespaces
        """The tenants this runner projects (None: every one). Its consumer reads only their
        v2 subjects and the v1 ones; a v1 event of another tenant moves the checkpoint and is
        applied nowhere."""
        self.filters = subjects.filters(namespaces)
        self._owned = None if namespaces is None else frozenset(namespaces)
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
        self.link = link
        self.verifier = verifier
        self.reason: str | None = None
        """Why the projection does not progress (None while it does)."""
        self.degraded_since: float | None = None
        self._failures = 0
        self._unavailable = 0
        self._announce_failed = False
        self._delivered = 0
        self._stop = asyncio.Event()
        self._subscribed = False
        if (announcer is None) != (appender is None):
            raise ValueError("an announcer needs an appender to publish with, and vice versa")
        if appender is not None and appender.subjects != subjects:
            raise ValueError(
                f"the appender publishes on {appender.subjects.wildcard}, the runner reads "
                f"{subjects.wildcard}: one stream has one prefix"
            )

    @property
    def degraded(self) -> bool:
        """True while the projection cannot progress (see ``reason``)."""
        return self.reason is not None

    def _pause_s(self, attempt: int) -> float:
        return retry_delay(attempt, self.settings.retry_backoff_s, self.settings.max_backoff_s)

    def _unavailable_pause_s(self, attempt: int) -> float:
        first, cap = self.settings.unavailable_retry_s, self.settings.max_unavailable_retry_s
        return retry_delay(attempt, first, cap)

    async def _pause(self, stop: asyncio.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop``; True when stopped."""
        return await wait_or_stop(stop, seconds)

    def _degrade(self, reason: str) -> None:
        if self.reason is None:
            self.degraded_since = time.monotonic()
        self.reason = reason

    def _recover(self) -> None:
        """A batch went through: the series of failures, if any, is over."""
        if self.reason is not None and self.degraded_since is not None:
            # After an outage the connection watch has said it all; a stall is news.
            level = logging.INFO if self.reason in (_NATS_AWAY, _NO_LEADER) else logging.WARNING
            log.log(
                level,
                "projection resumed",
                projection=self.projection.name,
                checkpoint=self.checkpoint,
                degraded_s=round(time.monotonic() - self.degraded_since, 1),
                attempts=self._failures,
            )
        self.reason = None
        self.degraded_since = None
        self._failures = 0
        self._unavailable = 0

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        """The durable consumer, created anew at ``checkpoint + 1`` on the first subscription
        of this runner, and reset to ``checkpoint + 1`` on a resubscription (created anew when
        the server cannot reset it): the store's checkpoint is the truth, not the consumer's
        ack floor."""
        if self._subscribed and _can_reset(self.js):
            resumed = await self._reset()
            if resumed is not None:
                return resumed
        with contextlib.suppress(NotFoundError):
            await self._retire(await self.js.consumer_info(self.stream, self.durable))
            await self.js.delete_consumer(self.stream, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.checkpoint + 1,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.settings.ack_wait_s,
            max_ack_pending=max(10_000, self.settings.batch_size * 4),
        )
        if self.namespaces is None:
            config.filter_subject = self.subjects.wildcard  # as before engines split tenants
        else:
            config.filter_subjects = self.filters  # nats-server 2.10+
        sub = await self.js.pull_subscribe(
            self.subjects.wildcard, durable=self.durable, stream=self.stream, config=config
        )
        self._delivered = 0  # a new consumer numbers its deliveries from 1
        self._subscribed = True
        return sub

    async def _reset(self) -> JetStreamContext.PullSubscription | None:
        """The consumer this runner created, reset in place to ``checkpoint + 1`` (ADR-60,
        nats-server 2.14+): its next delivery is numbered 1, nothing before is pending. Unlike
        delete and create, a reset needs neither the meta leader nor a new Raft group, whose
        first election in a cluster missing a node takes 4-9 s.

        None (the consumer is then created anew) when it is gone, refuses the reset, or does
        not answer the reset although it answered its info (a leader too old to know the
        call). Raised when its info does not answer (no leader yet: retried soon)."""
        try:
            await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return None  # a missing consumer's reset is never answered: no need to ask
        try:
            await self.js.reset_consumer(self.stream, self.durable, seq=self.checkpoint + 1)
        except (NatsError, TimeoutError) as exc:
            if isinstance(exc, APIError) and exc.err_code != _INVALID_RESET:
                raise
            log.info("consumer not reset: created anew", durable=self.durable, error=repr(exc))
            return None
        sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._delivered = 0
        return sub

    async def _retire(self, existing: ConsumerInfo) -> None:
        """Say so when the durable about to be replaced read other subjects (this data
        directory's engine ran with another namespace set, or an older engram): it is deleted
        and created again from the projection's checkpoint with this runner's filter, never
        read as it was."""
        config = existing.config
        had = sorted(
            config.filter_subjects or ([config.filter_subject] if config.filter_subject else [])
        )
        if had != sorted(self.filters):
            log.warning(
                "durable consumer had another filter: recreated from the checkpoint",
                projection=self.projection.name,
                durable=self.durable,
                old_filter=had,
                new_filter=self.filters,
                checkpoint=self.checkpoint,
            )

    async def pending(self) -> int | None:
        """Events of this runner's tenants stored and not yet applied: its consumer's pending
        and unacknowledged messages (None while it has no consumer). For a runner owning some
        namespaces only, the stream's last sequence is no measure: it may be another tenant's
        event, which this runner never receives."""
        if not self._subscribed:  # a durable left by an earlier run is no measure
            return None
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; on a failure, pause (longer each time in a row) and resume from
        the checkpoint. Never raises but CancelledError."""
        self._stop = stop
        while not stop.is_set():
            try:
                await self._run_once(stop)
            except asyncio.CancelledError:
                raise
            except _DeliveriesLostError as exc:
                log.info(
                    "deliveries lost in flight, resubscribing from checkpoint",
                    projection=self.projection.name,
                    checkpoint=self.checkpoint,
                    detail=str(exc),
                )
            except _LeaderBackError:
                log.info(
                    "consumer has a leader again, resuming from checkpoint",
                    projection=self.projection.name,
                    checkpoint=self.checkpoint,
                )
            except Exception as exc:  # resume from the checkpoint after a pause
                await self._failed(exc, stop)

    async def _failed(self, exc: Exception, stop: asyncio.Event) -> None:
        if self.link is not None and not self.link.is_up():
            # The connection watch logs the outage once; nothing to retry before it ends.
            self._degrade(_NATS_AWAY)
            log.debug("projection waits for NATS", projection=self.projection.name)
            await self.link.wait_up(stop)
            return
        self._failures += 1
        delay = self._pause_s(self._failures)
        level = logging.ERROR
        if is_unavailable(exc):
            # No answer, or no leader: asked again soon, not after the failure backoff.
            delay = self._unavailable_pause_s(self._failures)
            level = logging.WARNING
        self._degrade(describe(exc))
        quiet = self._failures > 1 or (self.link is not None and self.link.settling())
        log.log(
            logging.DEBUG if quiet else level,
            "projection failed, resuming from checkpoint",
            projection=self.projection.name,
            checkpoint=self.checkpoint,
            error=repr(exc),
            attempt=self._failures,
            retry_in_s=round(delay, 2),
        )
        await self._pause(stop, delay)

    async def _run_once(self, stop: asyncio.Event) -> None:
        # This projection object holds everything up to self.checkpoint (in memory at least),
        # so a resubscription in the same process resumes there, not at an older saved one.
        saved = await asyncio.to_thread(self.projection.checkpoint)
        self.checkpoint = max(self.checkpoint, saved)
        if self.progress is not None:
            self.progress.advanced()
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
                    await self._announce(confirmed=False)  # nothing new: caught up, maybe
                    if self.reason is not None and not self._failures:
                        self._recover()
                    continue
                except ServiceUnavailableError:
                    await self._await_consumer_leader(stop)
                    if stop.is_set() or not _can_reset(self.js):
                        # Older servers: fetch on (creating the consumer anew would wait for
                        # the first election of a new group); a lost delivery shows as a gap
                        # once the next event is delivered, or after ack_wait.
                        upcoming = fetch()
                        continue
                    raise _LeaderBackError from None
                upcoming = fetch()
                if not msgs:  # nats-py returns [] when the pull expires with a status reply
                    continue
                self._check_deliveries(msgs)
                await self._handle(msgs)
                if self._failures or self.reason is not None:
                    self._recover()
                if msgs[-1].metadata.num_pending == 0:
                    await self._announce()
        finally:
            # Not awaited: awaiting here could swallow this task's own cancellation.
            upcoming.add_done_callback(_consume_outcome)
            upcoming.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _await_consumer_leader(self, stop: asyncio.Event) -> None:
        """Return once the consumer answers again (or ``stop``). A pull request found nobody on
        the consumer's subject (a 503): in a cluster, the consumer's leader died and its
        followers elect another (4-9 s). Deleting and creating the consumer meanwhile would
        need the meta leader too, and a new group's first election when a node is missing.
        A consumer that is gone (NotFoundError) is raised: resubscribed from the checkpoint."""
        self._degrade(_NO_LEADER)
        log.warning(
            "projection waits for its consumer's leader",
            projection=self.projection.name,
            checkpoint=self.checkpoint,
        )
        while not stop.is_set():
            self._unavailable += 1
            # The consumer's info, waiting at most the pause: an answer means a leader is
            # back; a request sent before the election ends is never answered.
            pause = self._unavailable_pause_s(self._unavailable)
            started = time.monotonic()
            try:
                await self.js.consumer_info(self.stream, self.durable, timeout=pause)
                return
            except NotFoundError:
                raise
            except (NatsError, TimeoutError):
                pass
            await self._pause(stop, pause - (time.monotonic() - started))

    def _check_deliveries(self, msgs: list[Msg]) -> None:
        """Raise _DeliveriesLostError unless ``msgs`` continue the deliveries seen so far.

        JetStream numbers every delivery of a consumer (redeliveries too) 1, 2, 3 ...; a gap
        means messages were sent that never arrived (cut off with a connection). Acking a
        later message (AckPolicy.ALL) would acknowledge them unseen, so the runner must
        resubscribe from its checkpoint instead.
        """
        for msg in msgs:
            number = msg.metadata.sequence.consumer
            if number != self._delivered + 1:
                raise _DeliveriesLostError(f"delivery {number} follows delivery {self._delivered}")
            self._delivered = number

    async def _announce(self, *, confirmed: bool = True) -> None:
        """Publish the derived events the projection decided (only once caught up with the
        stream, so every earlier announcement of the same versions has been seen). Not
        ``confirmed`` (a fetch timed out): the consumer must say it has nothing pending, for a
        busy or recovering server also lets a fetch time out, and announcing mid-replay would
        publish again what an earlier life of this engine published (stored once, but heard
        again by plain subscribers)."""
        if self.announcer is None or self.appender is None:
            return
        if self.lease is not None and not await self._lease_held():
            return  # another engine announces; ours are the same events, deterministically
        pending = await asyncio.to_thread(self.announcer.take_pending)
        # Published but not read back yet: publishing again would be heard again by plain
        # subscribers (JetStream would only drop it within its duplicate window).
        waiting = {e.id for e in pending}
        self._published &= waiting
        pending = [e for e in pending if e.id not in self._published]
        if not pending:
            return
        if not confirmed and not await self._nothing_pending():
            return
        if self._announce_failed and not await self._stream_answers():
            return  # still no stream leader: what it cannot store would only be heard
        results = await self._append_announcements(pending)
        self._published |= {
            e.id for e, r in zip(pending, results, strict=False) if isinstance(r, AppendResult)
        }
        failed = [r for r in results if not isinstance(r, AppendResult)]
        self._announce_failed = bool(failed)
        fresh = sum(1 for r in results if isinstance(r, AppendResult) and not r.duplicate)
        if self.observer is not None:
            stored = len(results) - len(failed)
            self.observer.announced(self.projection.name, fresh, stored - fresh, len(failed))
        log.info(
            "announced",
            projection=self.projection.name,
            events=len(pending),
            new=fresh,
            failed=len(failed),
            not_sent=len(pending) - len(results),
        )
        if failed:
            log.warning(
                "announcements not acknowledged (published again once the stream answers)",
                projection=self.projection.name,
                failed=len(failed),
                error=str(failed[0]),
            )

    async def _append_announcements(self, pending: list[Event]) -> list[AppendResult | EngramError]:
        """Append ``pending`` in order, the first one alone: a plain subscriber hears every
        publish, stored or not, and hears it again when it is retried. When the stream cannot
        store (its leader just died), only that first one is heard before the round stops; the
        others are not sent (fewer results than ``pending``)."""
        assert self.appender is not None
        encoded = [self.appender.encode(e) for e in pending]
        results = await self.appender.append_many(encoded[:1])
        if len(encoded) > 1 and isinstance(results[0], AppendResult):
            results += await self.appender.append_many(encoded[1:])
        return results

    async def _lease_held(self) -> bool:
        """The lease, or False while its bucket does not answer (its leader is being elected,
        the server is away): announcing can wait, the projection must not fail for it."""
        assert self.lease is not None
        try:
            return await self.lease.held()
        except (NatsError, TimeoutError) as exc:
            log.debug(
                "announcer lease not answered", projection=self.projection.name, error=repr(exc)
            )
            return False

    async def _nothing_pending(self) -> bool:
        try:
            return await self.pending() == 0
        except (NatsError, TimeoutError):
            return False

    async def _stream_answers(self) -> bool:
        """True when the stream's leader answers its info (after announcements failed)."""
        try:
            await self.js.stream_info(self.stream)
        except (NatsError, TimeoutError):
            return False
        return True

    async def _handle(self, msgs: list) -> None:  # type: ignore[type-arg]
        arrived = time.perf_counter()
        stored = [to_stored(m) for m in msgs]
        stored.sort(key=lambda s: s.sequence)
        fresh = [s for s in stored if s.sequence > self.checkpoint]
        if fresh:
            events, dead = decode_batch(
                fresh,
                self.projection.name,
                verifier=self.verifier,
                subjects=self.subjects,
                namespaces=self._owned,  # a v1 event of another tenant: left out
            )
            if dead and self.dead_letters is not None:
                await self.dead_letters.publish(dead)
                self._dead_lettered(dead)
            last = fresh[-1].sequence
            created = await self._apply(events, dead, last)
            if created is None:
                return  # stopped while the projection could not go on: nothing acked
            if created and self.dead_letters is not None:
                await self.dead_letters.publish(created)
                self._dead_lettered(created)
            self.checkpoint = last
            self.applied_batches += 1
            if self.progress is not None:
                self.progress.advanced()
        # AckPolicy.ALL: acking the highest message acknowledges the whole batch.
        await max(msgs, key=lambda m: m.metadata.sequence.stream).ack()
        if self.observer is not None and fresh:
            commit_s = time.perf_counter() - arrived
            self.observer.batch_applied(self.projection.name, len(events), self._apply_s, commit_s)

    def _dead_lettered(self, letters: list[DeadLetter]) -> None:
        if self.observer is not None:
            self.observer.dead_lettered(self.projection.name, [d.kind for d in letters])

    async def _apply(
        self, events: list[SequencedEvent], dead: list[DeadLetter], last: int
    ) -> list[DeadLetter] | None:
        """Apply the batch, again and again while the environment prevents it (growing pauses);
        the dead letters its events' content caused, or None when stopped before it went in."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                created = await asyncio.to_thread(
                    apply_isolating, self.projection, events, dead, last, self.subjects
                )
                self._apply_s = time.perf_counter() - started
                return created
            except ProjectionStalledError as stalled:
                if stalled.dead_letters and self.dead_letters is not None:
                    await self.dead_letters.publish(stalled.dead_letters)
                    self._dead_lettered(stalled.dead_letters)
                attempt += 1
                self._failures += 1
                delay = self._pause_s(attempt)
                if self.reason != stalled.reason:
                    log.error(
                        "projection stalled: nothing is acknowledged or dead-lettered until "
                        "the cause is gone",
                        projection=self.projection.name,
                        checkpoint=self.checkpoint,
                        reason=stalled.reason,
                    )
                else:
                    log.debug(
                        "projection still stalled",
                        projection=self.projection.name,
                        attempt=attempt,
                        retry_in_s=round(delay, 2),
                    )
                self._degrade(stalled.reason)
                if await self._pause(self._stop, delay):
                    return None


def _can_reset(js: JetStreamContext) -> bool:
    """True when the connected server (2.14+) and nats-py can reset a consumer in place."""
    # nats-py keeps its client there; the context exposes no public accessor for it.
    version = getattr(getattr(js, "_nc", None), "connected_server_version", None)
    if version is None or not hasattr(js, "reset_consumer"):
        return False
    try:
        return (int(version.major), int(version.minor)) >= (2, 14)
    except ValueError:  # a version string nats-py cannot parse: do not rely on it
        return False


def _consume_outcome(task: asyncio.Task[list[Msg]]) -> None:
    """Retrieve a dropped prefetch's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
