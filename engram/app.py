"""The running engine: every projection live on its own durable consumer, plus the query
service. ``engram serve`` is this, on the embedded server or a given one.

An engine owns every namespace (``Settings.namespaces`` None) or a set of them: its consumers
read only its tenants' subjects, its query service answers only their subjects, it announces
under its set's lease and snapshots into its set's bucket, and its data directory is bound to
the set (``consumers.tenants``). Engines with disjoint sets share one stream; engines with the
same set are replicas, as engines owning everything always were."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from consumers.deadletters import DeadLetterPublisher
from consumers.instance import durable_name, instance_id
from consumers.lease import AnnouncerLease
from consumers.outage import ConnectionWatch
from consumers.queries import OperatorAccess, QueryDispatcher, build_query_broker
from consumers.queries.cache_verbs import CacheVerbs
from consumers.queries.freshness import Freshness, Progress
from consumers.queries.item_verbs import ItemVerbs
from consumers.queries.learning_verbs import register_learning_verbs
from consumers.queries.memory_verbs import MemoryVerbs
from consumers.queries.session_verbs import register_session_verbs
from consumers.runner import ProjectionRunner, RunnerSettings, retry_delay
from consumers.tenants import bind_data_dir, set_key
from consumers.unavailable import patiently
from engine.backoff import wait_or_stop
from engine.errors import EngramError, ProjectionError
from engine.events import EventData, make_event
from engine.settings import Settings
from engine.signing import EngineKey
from engine.stream import EventLog
from engine.stream.append import Appender
from engine.stream.engine_key import signing_key
from engine.verbs.replies import StreamDurability
from engine.verbs.requests import StatusRequest
from engram.observability import (
    EngineMetrics,
    MetricsEndpoint,
    server_sync_interval,
    stream_durability,
)
from projections.base import Announcer, Projection
from projections.context import HeuristicTokenCounter
from projections.faults import describe, is_environmental
from projections.identity import duplicates_seen
from projections.projection_set import (
    ProjectionSet,
    active_embedder,
    open_projections,
    vector_projection,
)
from projections.tables import DATABASE_FILE

__all__ = ["Engine"]

log = structlog.get_logger(__name__)


class Engine:
    """Projections + dead letters + query service over one NATS connection."""

    def __init__(
        self,
        settings: Settings,
        nc: NatsClient,
        url: str,
        *,
        runner_settings: RunnerSettings | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.url = url
        self.log = EventLog(nc, settings.stream)
        self.runner_settings = runner_settings or RunnerSettings()
        self._runner_js = nc.jetstream(timeout=self.runner_settings.api_timeout_s)
        """The runners' and the lease's JetStream API: short timeouts, so that after a leader
        election in a cluster they ask again soon (RunnerSettings.api_timeout_s)."""
        self.instance = instance_id(settings.data_dir)
        self.runners: list[ProjectionRunner] = []
        self._set: ProjectionSet | None = None
        self._lease: AnnouncerLease | None = None
        self.restored_from: str | None = None
        """The snapshot this engine's empty data directory was restored from, if any."""
        self.history_from: int | None = None
        """The stream sequence this engine's projections start at when it started empty on a
        stream whose early history is gone and no snapshot of its namespaces covered it."""
        self.dispatcher: QueryDispatcher | None = None
        """The query verbs this engine answers (set while it runs)."""
        self.cache_verbs: CacheVerbs | None = None
        """``cache_lookup`` and its lookup and hit counts (set while it runs)."""
        self.progress = Progress()
        """Woken by every runner's applied batch: queries reading their writes wait on it."""
        self.appender = Appender(
            nc,
            settings.stream.name,
            timeout_s=settings.nats.request_timeout_s,
            subjects=settings.stream.events,
        )
        self.connection = ConnectionWatch(nc)
        """Logs a NATS outage once each way; the runners wait on it instead of failing."""
        self.snapshot_poll_s = 5.0
        self.snapshots_reason: str | None = None
        """Why scheduled snapshots fail (None while they do not)."""
        self.key: EngineKey | None = None
        """The stream's engine key, loaded by ``run``: signs what this engine publishes (the
        appender's signer) and verifies every derived event its runners read."""
        self.metrics = EngineMetrics(self) if settings.metrics_listen is not None else None
        """Prometheus metrics (``settings.metrics_listen``): the runners' and the query
        service's observer, served by ``metrics_endpoint`` while the engine runs."""
        self.metrics_endpoint: MetricsEndpoint | None = None

    @property
    def lease(self) -> AnnouncerLease | None:
        """The announcer lease of this engine's namespace set (None: nothing to announce)."""
        return self._lease

    @property
    def set(self) -> ProjectionSet:
        if self._set is None:
            raise EngramError("the engine is not running")
        return self._set

    def _dispatcher(self, projections: ProjectionSet) -> QueryDispatcher:
        access = OperatorAccess.remote(
            self.settings.data_dir, sql=self.settings.query_sql, export=self.settings.query_export
        )
        freshness = Freshness(self, self.progress, self.settings.query_consistency_wait_s)
        dispatcher = QueryDispatcher(projections.store.reader, access=access, freshness=freshness)
        dispatcher.register("status", self.status)
        register_learning_verbs(dispatcher, projections.learner)
        register_session_verbs(dispatcher, projections.sessions)
        self._memory_verbs = MemoryVerbs(
            projections.vectors,
            projections.learner,
            projections.recent,
            HeuristicTokenCounter(),
            self._publish,
        )
        self._memory_verbs.register(dispatcher)
        # The items (LangGraph store) from the tables, ranked with the active embedder.
        ItemVerbs(
            projections.store.reader,
            lambda: projections.vectors.embedder,
            lexical_weight=self.settings.search_lexical_weight,
        ).register(dispatcher)
        self.cache_verbs = CacheVerbs(projections.cache, self.settings.cache_similarity)
        self.cache_verbs.register(dispatcher)
        if dispatcher.unserved():  # every catalogued verb is the engine's to answer
            raise EngramError(f"the engine serves no handler for {dispatcher.unserved()}")
        return dispatcher

    def _runner(
        self, projection: Projection, dead_letters: DeadLetterPublisher, name: str | None = None
    ) -> ProjectionRunner:
        return ProjectionRunner(
            self._runner_js,
            self.settings.stream.name,
            projection,
            durable=durable_name(self.instance, name or projection.name),
            settings=self.runner_settings,
            dead_letters=dead_letters,
            **self._announcing(projection),
            verifier=self.key,
            link=self.connection,
            subjects=self.settings.stream.events,
            namespaces=self.settings.namespaces,
            progress=self.progress,
            observer=self.metrics,
        )

    # -- what the projections applied (consumers.queries.freshness.Applied) -------------------

    def checkpoints(self) -> dict[str, int]:
        """The sequence each running projection has applied (what its queries see)."""
        return {runner.projection.name: runner.checkpoint for runner in self.runners}

    async def settled(self, names: Iterable[str], sequence: int) -> bool:
        """True when each projection of ``names`` has nothing of its tenants left to apply up
        to ``sequence`` (owning some namespaces only: see ``_caught_up``)."""
        if self.settings.namespaces is None:
            return False  # every event reaches every runner: the checkpoints say it all
        wanted = set(names)
        runners = [r for r in self.runners if r.projection.name in wanted]
        try:
            return all([await self._caught_up(runner, sequence) for runner in runners])
        except (NatsError, TimeoutError):  # the server away: not known to be settled
            return False

    async def last_sequence(self) -> int:
        """The stream's last sequence."""
        return (await self.log.state()).last_sequence

    async def _watch_embedder(
        self,
        stop: asyncio.Event,
        dead_letters: DeadLetterPublisher,
        tasks: dict[str, asyncio.Task[None]],
    ) -> None:
        """Blue/green: when a reindex activates another embedder, tail its index to the end of
        the stream, then switch searches to it and retire the old index's runner."""
        while not stop.is_set():
            await wait_or_stop(stop, 1.0)
            wanted = active_embedder(self.settings)
            current = self.set.vectors
            if stop.is_set() or wanted == current.embedder.name:
                continue
            try:
                fresh = await asyncio.to_thread(vector_projection, self.settings, wanted)
            except EngramError as exc:
                log.error("cannot switch embedder", embedder=wanted, error=str(exc))
                continue
            runner = self._runner(fresh, dead_letters, name=f"vectors_{fresh.embedder.name}")
            task = asyncio.create_task(runner.run(stop), name=f"vectors-{wanted}")
            target = (await self.log.state()).last_sequence
            while not stop.is_set() and not await self._caught_up(runner, target):  # noqa: ASYNC110 - polls
                await asyncio.sleep(0.05)
            self._memory_verbs.vectors = fresh
            self.set.vectors = fresh
            old_task = tasks.pop("vectors")
            old_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old_task
            self.runners = [r for r in self.runners if r.projection is not current] + [runner]
            tasks["vectors"] = task
            await asyncio.to_thread(current.close)
            log.info("switched embedder", old=current.embedder.name, new=wanted)

    async def _publish(self, data: EventData, namespace: str) -> None:
        """Record a usage event (memory.recalled, context.suggested, pattern.matched)."""
        event = make_event(data, namespace=namespace, agent_id="engram-query")
        try:
            await self.appender.append(self.appender.encode(event))
        except EngramError as exc:
            log.warning("usage event not recorded", type=event.type, error=str(exc))

    async def _caught_up(self, runner: ProjectionRunner, target: int) -> bool:
        """True once ``runner`` applied every event of its tenants up to ``target`` (for an
        engine owning some namespaces: every one stored so far, its consumer has none left)."""
        if self.settings.namespaces is None:
            return runner.checkpoint >= target
        return runner.checkpoint >= target or await runner.pending() == 0

    async def _lag(self, runner: ProjectionRunner, last_sequence: int) -> int:
        """Events ``runner`` has still to apply. Owning every namespace: the stream's last
        sequence minus its checkpoint. Owning some: its consumer's pending messages (the
        stream's last event may be another tenant's, which it never receives)."""
        behind = max(0, last_sequence - runner.checkpoint)
        if self.settings.namespaces is None or behind == 0:
            return behind
        try:
            pending = await runner.pending()
        except (NatsError, TimeoutError):  # the server away: the upper bound
            return behind
        return behind if pending is None else min(pending, behind)

    async def durability(self) -> StreamDurability:
        """The stream's replicas, storage and limits, and the server's fsync interval (known
        for the embedded server only), with a warning when acknowledged events can be lost."""
        info = await self.log.js.stream_info(self.settings.stream.name)
        sync = server_sync_interval(self.settings.server_dir, self.url)
        return stream_durability(info.config, sync, info.state.messages)

    async def status(self, _request: StatusRequest | None = None) -> dict[str, Any]:
        """Stream state and, per projection, its checkpoint and lag; the namespaces this
        engine owns (None: every one) and the key naming their set."""
        state = await self.log.state()
        projections = {}
        for runner in self.runners:
            projections[runner.projection.name] = {
                "checkpoint": runner.checkpoint,
                "last_sequence": state.last_sequence,
                "lag": await self._lag(runner, state.last_sequence),
                "durable": runner.durable,
                # Stopped by its environment (a full disk, NATS away ...), with the cause.
                "degraded": runner.degraded,
                "reason": runner.reason,
                # Repeated envelope ids it ignored (the first occurrence wins everywhere).
                "duplicates": duplicates_seen(runner.projection),
            }
        return {
            "stream": state.name,
            "messages": state.messages,
            "bytes": state.bytes,
            "first_sequence": state.first_sequence,
            "last_sequence": state.last_sequence,
            "projections": projections,
            "snapshots": {
                "degraded": self.snapshots_reason is not None,
                "reason": self.snapshots_reason,
            },
            "instance": self.instance,
            # Not None: the projections lack the history before it (see run()).
            "history_from": self.history_from,
            "namespaces": None if self.settings.namespaces is None else [*self.settings.namespaces],
            "namespace_set": set_key(self.settings.namespaces),
            "nats_connected": self.connection.is_up(),
            "ready_max_lag": self.settings.ready_max_lag,
            "durability": (await self.durability()).model_dump(),
            "cache": None if self.cache_verbs is None else await self.cache_verbs.status(),
        }

    def _announcing(self, projection: Projection) -> dict[str, Any]:
        if not isinstance(projection, Announcer):  # the learner and the session compactor
            return {}
        if self._lease is None:  # one lease per engine: it announces everything or nothing
            self._lease = AnnouncerLease(
                self._runner_js,
                self.settings.stream.name,
                self.instance,
                namespaces=self.settings.namespaces,
                replicas=self.settings.stream.replicas,
            )
        return {"announcer": projection, "appender": self.appender, "lease": self._lease}

    async def _keep_lease(self, stop: asyncio.Event) -> None:
        """Renew the announcer lease while the announcing projections are healthy, so a long
        apply or save never lets it lapse (and a stalled one lets another engine announce)."""
        if self._lease is None:
            return
        announcing = [r for r in self.runners if r.lease is not None]
        await self._lease.keep(stop, lambda: not any(r.degraded for r in announcing))

    async def _restore_snapshot(self) -> None:
        """An empty data directory starts from the newest valid snapshot, if there is one, so
        start-up replays only the tail whatever the history's length."""
        from consumers.snapshotting import default_store, restore_latest

        store = default_store(self.log.js, self.settings)
        manifest = await restore_latest(self.log.js, self.settings, store, self.settings.data_dir)
        if manifest is not None:
            self.restored_from = manifest.snapshot_id
            log.info(
                "started from snapshot", snapshot=manifest.snapshot_id, sequence=manifest.sequence
            )

    async def _snapshot_policy(self, stop: asyncio.Event) -> None:
        """Snapshot every ``snapshot_every_events`` new events or ``snapshot_every_s`` seconds
        (whichever comes first), so a restart on an empty directory replays only a tail."""
        from consumers.snapshotting import (
            default_store,
            snapshot_ids_of,
            snapshot_sequence,
            take_snapshot,
        )

        every_n, every_s = self.settings.snapshot_every_events, self.settings.snapshot_every_s
        if not every_n and not every_s:
            return
        store = default_store(self.log.js, self.settings)
        ids = snapshot_ids_of(await store.snapshot_ids(), self.settings.namespaces)
        covered = (snapshot_sequence(ids[-1]) or 0) if ids else 0
        since = time.monotonic()
        failures, retry_at = 0, 0.0
        while not stop.is_set():
            await wait_or_stop(stop, self.snapshot_poll_s)
            if not self.connection.is_up():
                continue  # the connection watch logs the outage
            try:
                last = (await self.log.state()).last_sequence
            except (NatsError, TimeoutError) as exc:  # the server is away: try again later
                if not self.connection.settling():
                    log.warning("snapshot policy cannot read the stream", error=repr(exc))
                continue
            fresh = last - covered
            due = (every_n and fresh >= every_n) or (
                every_s and fresh > 0 and time.monotonic() - since >= every_s
            )
            if stop.is_set() or not due or time.monotonic() < retry_at:
                continue
            try:
                manifest = await take_snapshot(self.nc, self.settings, store)
            except Exception as exc:  # a full disk, the server away, a bug: retry, later each time
                failures += 1
                pause = retry_delay(failures, self.snapshot_poll_s, 600.0)
                retry_at = time.monotonic() + pause
                reason = describe(exc)
                log.log(
                    logging.DEBUG if reason == self.snapshots_reason else logging.ERROR,
                    "scheduled snapshot failed, retrying later",
                    reason=reason,
                    attempt=failures,
                    retry_in_s=round(pause, 1),
                )
                self.snapshots_reason = reason
                continue
            if self.snapshots_reason is not None:
                log.warning("scheduled snapshots resumed", attempts=failures)
            self.snapshots_reason, failures = None, 0
            covered, since = manifest.sequence + 1, time.monotonic()  # +1: its own event

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop consuming and close the stores. With
        ``settings.metrics_listen`` the metrics endpoint listens from the start (``/readyz``
        says not ready until the projections run) to the end."""
        if self.metrics is not None and self.settings.metrics_listen is not None:
            self.metrics_endpoint = MetricsEndpoint(self.metrics, self.settings.metrics_listen)
            await self.metrics_endpoint.start()
        try:
            await self._run(stop)
        finally:
            if self.metrics_endpoint is not None:
                await self.metrics_endpoint.stop()

    def _warn_durability(self, durability: StreamDurability) -> None:
        """Say once, at start, when acknowledged events of the stream can be lost on a power
        failure: a warning when the server is known to fsync only now and then, a notice when
        its sync_interval cannot be seen (a server engram did not start)."""
        if durability.warning is None:
            return
        log.log(
            logging.INFO if durability.sync_interval == "unknown" else logging.WARNING,
            "acknowledged events can be lost on a power failure",
            stream=self.settings.stream.name,
            replicas=durability.replicas,
            sync_interval=durability.sync_interval,
            detail=durability.warning,
        )

    async def _run(self, stop: asyncio.Event) -> None:
        # The key first: every precondition is checked before the broker is changed (a refusal
        # for a missing ENGRAM_ENGINE_KEY must not leave a new stream behind).
        # Each start step is asked again while JetStream does not answer yet (a new cluster's
        # buckets, an election after a node loss), within consumers.unavailable's patience.
        self.key = self.appender.signer = await patiently(
            "reading the engine key", lambda: signing_key(self.log.js, self.settings)
        )
        info = await patiently("creating or checking the stream", self.log.ensure)
        sync = server_sync_interval(self.settings.server_dir, self.url)
        self._warn_durability(stream_durability(info.config, sync, info.state.messages))
        dead_letters = DeadLetterPublisher(self.log.js, self.settings.stream)
        await patiently("creating or checking the dead-letter stream", dead_letters.ensure)
        fresh = not (self.settings.data_dir / DATABASE_FILE).exists()
        # Refuses a data directory whose projections hold another namespace set.
        bind_data_dir(self.settings.data_dir, self.settings.namespaces, has_state=not fresh)
        if fresh:
            await patiently("looking for a snapshot", self._restore_snapshot)
            if self.restored_from is None and info.state.first_seq > 1:
                # Compacted or expired history, and no snapshot of this engine's namespaces
                # covers it: said loudly and kept in the status, never served silently.
                self.history_from = info.state.first_seq
                log.warning(
                    "starting without the stream's early history",
                    first_sequence=info.state.first_seq,
                    reason="the events before it are gone (compacted or expired) and no "
                    "snapshot of this engine's namespaces covers them: its projections hold "
                    "only what follows; take snapshots of this namespace set before compacting",
                )
        self._set = open_projections(self.settings, info.state.last_seq)
        dispatcher = self.dispatcher = self._dispatcher(self._set)
        self.runners = [self._runner(p, dead_letters) for p in self._set.live]
        # Owning some namespaces: engram.query.<ns>.* for each (queue group as before: engines
        # owning the same set share the requests); owning all, every tenant's and operator's.
        broker = build_query_broker(
            dispatcher,
            self.url,
            self.settings.nats,
            self.settings.stream.service,
            namespaces=self.settings.namespaces,
            observer=self.metrics,
        )
        await broker.start()
        tasks = {r.projection.name: asyncio.create_task(r.run(stop)) for r in self.runners}
        watcher = asyncio.create_task(self._watch_embedder(stop, dead_letters, tasks))
        snapshots = asyncio.create_task(self._snapshot_policy(stop))
        connection = asyncio.create_task(self.connection.run(stop))
        keeper = asyncio.create_task(self._keep_lease(stop))
        log.info(
            "engine running",
            projections=[p.name for p in self._set.live],
            embedder=self._set.vectors.embedder.name,
            instance=self.instance,
            queries=dispatcher.verbs,
            namespaces="all" if self.settings.namespaces is None else self.settings.namespaces,
        )
        try:
            await stop.wait()
        finally:
            # Whatever failed on the way, the projections are closed: close is their save.
            try:
                await _cancel([watcher, snapshots, connection, keeper])
                await _cancel(list(tasks.values()))
                try:
                    await broker.stop()
                except NatsError as exc:  # the server is away: nothing left to drain
                    log.warning("query service stopped without draining", error=repr(exc))
                if self._lease is not None and not self.connection.is_up():
                    # A release would wait for a NATS that is away: the lease expires by its TTL.
                    log.info("announcer lease left to expire: NATS is away")
                elif self._lease is not None:
                    try:
                        await self._lease.release()
                    except (NatsError, TimeoutError) as exc:  # it expires by its TTL instead
                        log.warning("announcer lease not released", error=repr(exc))
            finally:
                try:
                    self._set.close()
                except Exception as exc:
                    if not is_environmental(exc):
                        raise
                    raise ProjectionError(
                        f"the projections could not all save on shutdown ({describe(exc)}); "
                        "nothing is lost: the next start resumes each from its last saved "
                        "checkpoint"
                    ) from exc
                finally:
                    self._set = None


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and await ``tasks``; one that had failed is logged, never raised into shutdown."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # shutdown goes on: the stores must still be closed
            log.error("engine task failed", task=task.get_name(), error=repr(exc))
