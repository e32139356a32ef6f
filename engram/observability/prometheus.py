"""The engine's Prometheus metrics: the observers of its runners and query service (counters and
histograms, on the hot path: one cheap call per batch or request), and a collector reading
everything else at scrape time (checkpoints, lag, connection, lease, snapshot, memory sizes).

One ``CollectorRegistry`` per engine, never the global one, so several engines in one process
(tests) keep their figures apart. Names follow Prometheus' conventions: the ``engram_`` prefix,
base units (seconds, bytes), ``_total`` counters, bounded labels (a verb outside the catalogue is
``_unknown``; namespaces as in ``engram.observability.sizes``). The list with meanings is in
``/work/notes/ops-metrics-names.md`` (the README's metrics table).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from nats.errors import Error as NatsError
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine import __version__
from engine.errors import EngramError
from engine.verbs import CATALOGUE
from engine.verbs.replies import StatusReply
from engram.observability.readiness import Verdict, readiness
from engram.observability.sizes import (
    MemorySizes,
    bounded,
    disk_usage,
    measure_rows,
    measure_vectors,
)
from engram.observability.snapshot_age import NewestSnapshot, newest_snapshot

if TYPE_CHECKING:
    from engram.app import Engine

__all__ = ["APPLY_BUCKETS", "QUERY_BUCKETS", "UNKNOWN_VERB", "EngineMetrics"]

log = structlog.get_logger(__name__)

UNKNOWN_VERB = "_unknown"
"""The verb label of a request on a subject naming no catalogued verb."""
APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUERY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Query latency buckets: 0.1 s is one of them, so a p99 over 100 ms is read exactly."""
DECODE_KINDS = (
    "invalid_json",
    "invalid_event",
    "unknown_type",
    "unknown_version",
    "namespace_mismatch",
    "forged",
    "application_failed",
)
"""Dead-letter kinds every projection can produce: their series exist (at 0) from the first scrape,
so ``increase()`` sees the first dead letter."""
STATUS_TIMEOUT_S = 3.0


class EngineMetrics:
    """Implements ``consumers.observer.RunnerObserver`` and ``QueryObserver`` for one engine, and
    serves its exposition (``exposition``) and readiness (``verdict``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # No ``*_created`` series beside every counter and histogram: they double the series
        # and nothing here reads them (a process-wide switch of prometheus-client's).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        reg = self.registry
        self.events_applied = Counter(
            "engram_projection_events_applied",
            "Valid events applied by the projection (dead letters not counted).",
            ["projection"],
            registry=reg,
        )
        self.batches = Counter(
            "engram_projection_batches",
            "Batches applied and acknowledged.",
            ["projection"],
            registry=reg,
        )
        self.apply_seconds = Histogram(
            "engram_projection_apply_seconds",
            "The projection's apply of one batch, its store's commit included.",
            ["projection"],
            buckets=APPLY_BUCKETS,
            registry=reg,
        )
        self.commit_seconds = Histogram(
            "engram_projection_commit_seconds",
            "One batch from its arrival to its acknowledgement to JetStream.",
            ["projection"],
            buckets=APPLY_BUCKETS,
            registry=reg,
        )
        self.dead_letters = Counter(
            "engram_dead_letters",
            "Dead letters published, by projection and kind.",
            ["projection", "kind"],
            registry=reg,
        )
        self.announcements = Counter(
            "engram_announcements",
            "Derived events published (pattern.learned, session.compacted), by outcome.",
            ["projection", "outcome"],
            registry=reg,
        )
        self.query_requests = Counter(
            "engram_query_requests", "Query requests answered.", ["verb"], registry=reg
        )
        self.query_errors = Counter(
            "engram_query_errors", "Query error replies, by kind.", ["verb", "kind"], registry=reg
        )
        self.query_seconds = Histogram(
            "engram_query_duration_seconds",
            "From a request's arrival to its reply.",
            ["verb"],
            buckets=QUERY_BUCKETS,
            registry=reg,
        )
        for verb in CATALOGUE:  # every verb's count from the start (rate() needs two points)
            self.query_requests.labels(verb)
        # Children by label, looked up once: the hot path then costs a dict lookup per series.
        self._projection_children: dict[str, tuple[Counter, Counter, Histogram, Histogram]] = {}
        self.loop_lag_s: float | None = None
        """The loop probe's recent delay (set by the endpoint's probe)."""
        self.status: StatusReply | None = None
        self.verdict_now = Verdict(False, ("not scraped yet",))
        self.sizes: MemorySizes | None = None
        self.snapshot: NewestSnapshot | None = None
        self._counted_at: float | None = None
        self._lock = asyncio.Lock()
        reg.register(_EngineCollector(self))

    # -- RunnerObserver -----------------------------------------------------------------------

    def _children(self, projection: str) -> tuple[Counter, Counter, Histogram, Histogram]:
        children = self._projection_children.get(projection)
        if children is None:
            children = (
                self.events_applied.labels(projection),
                self.batches.labels(projection),
                self.apply_seconds.labels(projection),
                self.commit_seconds.labels(projection),
            )
            self._projection_children[projection] = children
            for kind in DECODE_KINDS:
                self.dead_letters.labels(projection, kind)
        return children

    def batch_applied(self, projection: str, events: int, apply_s: float, commit_s: float) -> None:
        applied, batches, apply_h, commit_h = self._children(projection)
        applied.inc(events)
        batches.inc()
        apply_h.observe(apply_s)
        commit_h.observe(commit_s)

    def dead_lettered(self, projection: str, kinds: Sequence[str]) -> None:
        for kind in kinds:
            self.dead_letters.labels(projection, kind).inc()

    def announced(self, projection: str, new: int, duplicate: int, failed: int) -> None:
        for outcome, count in (("new", new), ("duplicate", duplicate), ("failed", failed)):
            self.announcements.labels(projection, outcome).inc(count)

    # -- QueryObserver ------------------------------------------------------------------------

    def answered(self, verb: str, seconds: float, error_kind: str | None) -> None:
        label = verb if verb in CATALOGUE else UNKNOWN_VERB
        self.query_requests.labels(label).inc()
        self.query_seconds.labels(label).observe(seconds)
        if error_kind is not None:
            self.query_errors.labels(label, error_kind).inc()

    # -- at scrape time -----------------------------------------------------------------------

    async def verdict(self) -> Verdict:
        """Read the engine's status (bounded in time) and judge its readiness; keeps both for
        the collector."""
        engine = self.engine
        status, problem = None, None
        if not engine.connection.is_up():
            problem = (
                f"the state of stream {engine.settings.stream.name} cannot be read: NATS is away"
            )
        else:
            try:
                async with asyncio.timeout(STATUS_TIMEOUT_S):
                    status = StatusReply.model_validate(await engine.status())
            except (NatsError, TimeoutError, EngramError) as exc:
                problem = (
                    f"the state of stream {engine.settings.stream.name} cannot be read: "
                    f"{type(exc).__name__}: {str(exc)[:200]}"
                )
        self.status = status
        self.verdict_now = readiness(status, connected=engine.connection.is_up(), problem=problem)
        return self.verdict_now

    async def exposition(self) -> bytes:
        """The text exposition: the engine's state read first (status, snapshot, sizes; the
        last two at most every ``metrics_memory_refresh_s``), then every metric rendered."""
        async with self._lock:  # concurrent scrapes share one refresh at a time
            await self.verdict()
            refresh_s = self.engine.settings.metrics_memory_refresh_s
            now = time.monotonic()
            if self._counted_at is None or now - self._counted_at >= refresh_s:
                self._counted_at = now
                await self._count()
            return generate_latest(self.registry)

    async def _count(self) -> None:
        engine = self.engine
        if engine.connection.is_up():  # else the last one read stands (its age still grows)
            try:
                async with asyncio.timeout(STATUS_TIMEOUT_S):
                    self.snapshot = await newest_snapshot(engine.log.js, engine.settings)
            except (NatsError, TimeoutError, EngramError) as exc:
                log.debug("snapshot age not read", error=repr(exc))
        try:
            self.sizes = await asyncio.to_thread(self._measure)
        except (EngramError, OSError) as exc:  # not running (yet), or the disk refuses
            log.debug("memory sizes not counted", error=repr(exc))

    def _measure(self) -> MemorySizes:
        engine, settings = self.engine, self.engine.settings
        projections = engine.set
        cursor = projections.store.reader()
        try:
            rows = measure_rows(cursor)
        finally:
            cursor.close()
        vectors, vector_bytes = measure_vectors(projections.vectors)
        disk = disk_usage(settings.data_dir, settings.vectors_dir, settings.server_dir)
        return bounded(rows, vectors, vector_bytes, disk, settings.metrics_max_namespaces)


class _EngineCollector(Collector):
    """The metrics read from the engine when scraped (after ``EngineMetrics.exposition``'s
    refresh): nothing here does I/O."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m, engine = self.metrics, self.metrics.engine
        checkpoint = _gauge(
            "engram_projection_checkpoint", "Last stream sequence applied.", "projection"
        )
        degraded = _gauge(
            "engram_projection_degraded", "1 while the projection cannot progress.", "projection"
        )
        for runner in engine.runners:
            checkpoint.add_metric([runner.projection.name], runner.checkpoint)
            degraded.add_metric([runner.projection.name], 1 if runner.degraded else 0)
        yield checkpoint
        yield degraded
        yield from _status_metrics(m.status)
        yield _single(
            "engram_nats_connected",
            "The engine's NATS connection is up.",
            engine.connection.is_up(),
        )
        reconnects = CounterMetricFamily(
            "engram_nats_reconnects", "Reconnections of the engine's NATS connection."
        )
        reconnects.add_metric([], float(engine.nc.stats.get("reconnects", 0)))
        yield reconnects
        lease = engine.lease
        if lease is not None:
            yield _single(
                "engram_announcer_lease_held",
                "1 while this engine holds the announcer lease of its namespace set.",
                lease.held_now,
            )
        yield _single(
            "engram_snapshots_degraded",
            "1 while scheduled snapshots fail.",
            engine.snapshots_reason is not None,
        )
        if m.snapshot is not None:
            age = (datetime.now(UTC) - m.snapshot.created_at).total_seconds()
            yield _single(
                "engram_snapshot_age_seconds",
                "Seconds since the newest snapshot was created.",
                max(0.0, age),
            )
            yield _single(
                "engram_snapshot_size_bytes",
                "Bytes of the newest snapshot's files.",
                m.snapshot.size_bytes,
            )
        yield _single("engram_ready", "1 when /readyz answers 200.", m.verdict_now.ready)
        if m.loop_lag_s is not None:
            yield _single(
                "engram_event_loop_lag_seconds", "The loop probe's recent delay.", m.loop_lag_s
            )
        info = GaugeMetricFamily(
            "engram_engine_info",
            "The engine (constant 1).",
            labels=["version", "instance", "namespace_set"],
        )
        namespaces = engine.settings.namespaces
        info.add_metric(
            [__version__, engine.instance, "all" if namespaces is None else ",".join(namespaces)], 1
        )
        yield info
        if m.sizes is not None:
            yield from _size_metrics(m.sizes)


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _single(name: str, documentation: str, value: float | bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _status_metrics(status: StatusReply | None) -> Iterator[Metric]:
    """Lag and the stream's state, from the last status read (absent when it failed)."""
    if status is None:
        return
    lag = _gauge(
        "engram_projection_lag_events", "Events the projection has still to apply.", "projection"
    )
    for name, projection in sorted(status.projections.items()):
        lag.add_metric([name], projection.lag)
    yield lag
    yield _single("engram_stream_messages", "Messages in the stream.", status.messages)
    yield _single("engram_stream_bytes", "Bytes in the stream.", status.bytes)
    yield _single(
        "engram_stream_last_sequence", "The stream's last sequence.", status.last_sequence
    )
    if status.durability is not None:
        yield _single(
            "engram_stream_replicas", "The stream's replicas.", status.durability.replicas
        )


def _size_metrics(sizes: MemorySizes) -> Iterator[Metric]:
    rows = _gauge(
        "engram_memory_rows", "Rows per namespace in each namespaced table.", "namespace", "table"
    )
    for (namespace, table), count in sorted(sizes.rows.items()):
        rows.add_metric([namespace, table], count)
    yield rows
    vectors = _gauge(
        "engram_memory_vectors", "Vectors per namespace in the live index.", "namespace"
    )
    for namespace, count in sorted(sizes.vectors.items()):
        vectors.add_metric([namespace], count)
    yield vectors
    vector_bytes = _gauge(
        "engram_memory_vector_disk_bytes",
        "Bytes of each namespace's saved vector index.",
        "namespace",
    )
    for namespace, count in sorted(sizes.vector_disk_bytes.items()):
        vector_bytes.add_metric([namespace], count)
    yield vector_bytes
    yield _single("engram_memory_namespaces", "Namespaces the engine holds.", sizes.namespaces)
    disk = _gauge("engram_data_disk_bytes", "Bytes under the data directory per store.", "store")
    for store, count in sorted(sizes.disk_bytes.items()):
        disk.add_metric([store], count)
    yield disk
