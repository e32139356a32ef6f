"""``engram serve --metrics``: the Prometheus exposition of a real engine on a real nats-server
counts what the engine did (events applied, queries per verb, errors, dead letters), reads its
state at scrape time (checkpoints, lag, lease, connection, snapshot, memory sizes), and follows
Prometheus' conventions with bounded labels."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path

import httpx
from nats.aio.client import Client as NatsClient

from consumers.snapshotting import default_store, take_snapshot
from engine import MemoryClient
from engine.errors import ForbiddenError
from engine.events import WorkflowExecuted, make_event
from engine.settings import Settings
from engine.stream import EventLog
from engine.verbs import CATALOGUE
from engram.cli.serve import serve_command
from engram.observability.prometheus import UNKNOWN_VERB
from engram.observability.sizes import ALL_NAMESPACES
from tests.cli_runs import cli_env, engram
from tests.engines import settle
from tests.metrics_scrapes import Scrape, metered, scrape
from tests.servers import free_port

PROJECTIONS = {"tables", "patterns", "vectors", "sessions", "recent", "cache"}


def _total(scraped: Scrape, name: str, **labels: str) -> float:
    """The sum of every sample ``name`` whose labels include ``labels``."""
    return sum(
        value
        for pairs, value in scraped.values(name).items()
        if labels.items() <= dict(pairs).items()
    )


async def test_scrape_counts_events_queries_dead_letters_and_memory(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """After 12 workflows in three namespaces, 3 task executions, one malformed message and a
    handful of queries, a scrape says: every projection applied every valid event of the
    stream (events applied + its dead letters = the stream's last sequence) and stands at that
    sequence with lag 0; the malformed message is one invalid_json dead letter per projection;
    each verb counts its requests (sql refused: a forbidden error); rows and vectors are
    counted per namespace; connected, lease held, ready."""
    async with (
        metered(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        for i in range(12):
            namespace = ("alpha", "beta", "gamma")[i % 3]
            await memory.store_workflow(
                workflow_steps=["plan", "act"],
                success=i % 4 != 0,
                duration=1.0,
                task_type="deploy",
                namespace=namespace,
            )
        for i in range(3):
            await memory.store_execution(
                task_id=f"t-{i}",
                execution_summary=f"deployed service {i} to staging",
                success=True,
                namespace="alpha",
            )
        await event_log.js.publish(
            "memory.task.executed.alpha", b"{not json", stream=settings.stream.name
        )
        await settle(engine)
        for _ in range(3):
            await memory.get_best_workflow_for_task("deploy", namespace="alpha")
        for _ in range(2):
            await memory.search_similar("deployed service", namespace="alpha")
        try:
            await memory.sql("SELECT 1")
        except ForbiddenError:
            pass
        else:
            raise AssertionError("sql is off on this engine")
        await settle(engine)  # the searches appended memory.recalled events
        scraped = await scrape(engine)
        status = await engine.status()

    last = status["last_sequence"]
    for projection in PROJECTIONS:
        applied = scraped.value("engram_projection_events_applied_total", projection=projection)
        dead = _total(scraped, "engram_dead_letters_total", projection=projection)
        assert applied + dead == last, (projection, applied, dead, last)
        assert scraped.value("engram_projection_checkpoint", projection=projection) == last
        assert scraped.value("engram_projection_lag_events", projection=projection) == 0
        assert scraped.value("engram_projection_degraded", projection=projection) == 0
        assert (
            scraped.value("engram_dead_letters_total", projection=projection, kind="invalid_json")
            == 1
        )
        batches = scraped.value("engram_projection_batches_total", projection=projection)
        assert batches >= 1
        assert (
            scraped.value("engram_projection_apply_seconds_count", projection=projection) == batches
        )
        assert (
            scraped.value("engram_projection_commit_seconds_count", projection=projection)
            == batches
        )
    assert scraped.value("engram_stream_last_sequence") == last
    assert scraped.value("engram_query_requests_total", verb="best_workflow") == 3
    assert scraped.value("engram_query_requests_total", verb="search") == 2
    assert scraped.value("engram_query_requests_total", verb="sql") == 1
    assert scraped.value("engram_query_errors_total", verb="sql", kind="forbidden") == 1
    assert scraped.value("engram_query_duration_seconds_count", verb="best_workflow") == 3
    assert scraped.value("engram_query_requests_total", verb="learning") == 0  # from the start
    assert scraped.value("engram_memory_rows", namespace="alpha", table="workflows") == 4
    assert scraped.value("engram_memory_rows", namespace="beta", table="workflows") == 4
    assert scraped.value("engram_memory_rows", namespace="alpha", table="task_executions") == 3
    assert scraped.value("engram_memory_vectors", namespace="alpha") == 3
    assert scraped.value("engram_memory_namespaces") == 3
    assert scraped.value("engram_data_disk_bytes", store="tables") > 0
    assert scraped.value("engram_nats_connected") == 1
    assert scraped.value("engram_announcer_lease_held") == 1
    assert scraped.value("engram_ready") == 1


_NAME = re.compile(r"^engram_[a-z0-9_]+$")


async def test_every_metric_follows_the_naming_conventions_and_labels_stay_bounded(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """Parsed with prometheus_client's parser: every metric is ``engram_`` snake case; every
    counter's samples end in ``_total``; histograms are in seconds; sizes in bytes end in
    ``_bytes``; requests on subjects naming no catalogued verb are counted under one
    ``_unknown`` verb, so no client can grow the label set."""
    async with (
        metered(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1.0)
        await event_log.js.publish("memory.workflow.executed", b"{not json")
        await settle(engine)
        for nonsense in ("nonsense", "also-nonsense", "x1"):
            reply = await nc.request(f"engram.query.default.{nonsense}", b"{}", timeout=5)
            assert json.loads(reply.data)["kind"] == "usage"
        scraped = await scrape(engine)

    assert scraped.families, "nothing exposed"
    for family in scraped.families:
        assert _NAME.match(family.name), family.name
        assert family.type in {"counter", "gauge", "histogram"}, (family.name, family.type)
        for sample in family.samples:
            assert sample.name.startswith(family.name)
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if "bytes" in family.name:
            assert family.name.endswith("_bytes"), family.name
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
    assert "# TYPE engram_query_requests_total counter" in scraped.text
    assert "_created" not in scraped.text  # no creation-time series beside each counter
    verbs = scraped.label_values("engram_query_requests_total", "verb")
    assert verbs == {*CATALOGUE, UNKNOWN_VERB}
    assert scraped.value("engram_query_requests_total", verb=UNKNOWN_VERB) == 3
    assert scraped.value("engram_query_errors_total", verb=UNKNOWN_VERB, kind="usage") == 3


async def test_namespaces_beyond_the_limit_are_reported_as_totals_only(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """200 namespaces with the default limit of 50: the memory sizes carry no per-namespace
    label, one ``_all`` total per table instead (equal to the rows stored), and
    ``engram_memory_namespaces`` still says 200."""
    async with (
        metered(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        assert engine.settings.metrics_max_namespaces == 50
        report = await memory.publish_many(
            make_event(
                WorkflowExecuted(workflow_steps=["plan"], success=True, duration=1.0),
                namespace=f"tenant-{i:03d}",
            )
            for i in range(200)
        )
        assert report.rejected == 0
        await settle(engine)
        scraped = await scrape(engine)

    for name in ("engram_memory_rows", "engram_memory_vectors", "engram_memory_vector_disk_bytes"):
        assert scraped.label_values(name, "namespace") <= {ALL_NAMESPACES}, name
    assert scraped.value("engram_memory_rows", namespace=ALL_NAMESPACES, table="workflows") == 200
    assert scraped.value("engram_memory_namespaces") == 200
    series = sum(len(f.samples) for f in scraped.families)
    assert series < 400, f"{series} series for 200 namespaces"


async def test_snapshot_age_and_size_follow_the_newest_snapshot(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """No snapshot yet: no age is exposed (an absent series, not a made-up one). After one is
    taken, the age is seconds (small) and the size is the bytes stored for it."""
    async with (
        metered(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1.0)
        await settle(engine)
        before = await scrape(engine)
        manifest = await take_snapshot(
            nc,
            engine.settings.model_copy(update={"data_dir": settings.data_dir / "snapshotter"}),
            default_store(nc.jetstream(), engine.settings),
        )
        after = await scrape(engine)

    assert not before.values("engram_snapshot_age_seconds")
    assert 0 <= after.value("engram_snapshot_age_seconds") < 60
    assert after.value("engram_snapshot_size_bytes") >= manifest.total_bytes > 0


async def test_engram_serve_metrics_flag_serves_the_endpoint(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """``engram serve --metrics 127.0.0.1:PORT`` as a real process: /readyz turns 200 once its
    projections run and /metrics names the engine; SIGTERM stops it with exit 0. A
    ``--metrics`` that is not HOST:PORT is a usage error (exit 2) naming the form."""
    port = free_port()
    argv = serve_command(str(settings.nats.url), settings.stream.name, tmp_path / "data")
    process = await asyncio.create_subprocess_exec(
        *argv,
        "--metrics",
        f"127.0.0.1:{port}",
        env=cli_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=2.0) as client, asyncio.timeout(60):
            while True:
                try:
                    ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:  # not listening yet
                    pass
                await asyncio.sleep(0.1)
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert ready.json() == {"ready": True, "reasons": []}
        assert 'engram_engine_info{instance="' in text
        assert "engram_ready 1.0" in text
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0

    bad = await engram(
        "serve", "--metrics", "9464", "--nats-url", "nats://127.0.0.1:1", cwd=tmp_path
    )
    assert bad.code == 2 and "expected HOST:PORT" in bad.err, bad
