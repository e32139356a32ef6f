"""engram purge on a real nats-server with an engine running: a purged tenant leaves the stream
(v2 and v1 messages, its dead letters), every projection of the running engine and every stored
snapshot; the other tenants are untouched; a replay of the purged stream builds the live state;
the tenant starts afresh when it publishes again; and a purge works on a compacted stream,
where the old snapshot is the only copy of the other tenants' early history.

A stream engram created denies single-message deletes, so a tenant's v1 messages (on subjects
every tenant shares) leave it only with the history below them (``--compact-legacy``); without
it they stay, named in the report, and the projections forget them all the same.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client as NatsClient

from consumers.compaction import compact, plan_compaction
from consumers.deadletters import dead_letter_stream_name
from consumers.purge import purge_namespace
from consumers.purge_snapshots import holds_namespace
from consumers.replay import replay
from consumers.snapshotting import default_store, restore_latest, take_snapshot, verified_snapshot
from consumers.tenant_traces import projection_traces
from engine.errors import EngramError
from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    KnowledgeAdded,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    encode_event,
    make_event,
)
from engine.settings import Settings
from engine.stream import EventLog, ReadRange, read_stream
from engram.app import Engine
from projections.learning.state import workflow_pattern_id
from projections.projection_set import ProjectionSet, open_projections
from projections.purging import belongs_to
from projections.snapshots.manifest import MANIFEST, SnapshotManifest
from projections.snapshots.packing import namespace_rows, unpack
from projections.snapshots.stores import DirectorySnapshots, SnapshotStore
from projections.tables.schema import TABLES, namespaced_tables
from projections.workflows import workflow_key
from tests.cli_runs import engram
from tests.engines import running, settle
from tests.states import state_of
from tests.strategies.events import purge_of

pytestmark = pytest.mark.timeout(300)

TENANTS = ("alpha", "beta", "gamma")
SECRET = "quokka-umbrella-7731"
"""Only beta's texts hold it: found nowhere once beta is purged."""
QUERIES = ("summary of the work", "decided to cache", SECRET)
TASKS = ("t0", "t1", "t2", "t3")


def _words(namespace: str) -> str:
    return f"{namespace} {SECRET}" if namespace == "beta" else namespace


def _tenant(namespace: str, start: datetime, tag: str = "") -> list[Event]:
    """Every kind of agent event of one tenant: a session with workflows (enough for a learned
    pattern), tasks, a decision and its outcome, knowledge, feedback; ended (compacted)."""
    words = _words(namespace)

    def at(seconds: int, data: Any, session: str | None = "s1") -> Event:
        return make_event(
            data,
            namespace=namespace,
            agent_id=f"agent-{namespace}",
            session_id=session,
            occurred_at=start + timedelta(seconds=seconds),
        )

    events = [at(0, SessionStarted(session_id="s1", goal=f"goal of {words}{tag}"), None)]
    for i in range(4):
        events.append(
            at(
                1 + i,
                WorkflowExecuted(
                    task_type="testing",
                    request=f"request of {words}",
                    workflow_steps=["plan", "code", "test"],
                    success=True,
                    duration=2.0 + i,
                ),
            )
        )
        events.append(
            at(
                1 + i,
                TaskExecuted(
                    task_id=f"t{i}{tag}",
                    task_type="testing",
                    execution_summary=f"summary of the work {i}{tag} by {words}",
                    success=i != 1,
                    error_patterns=[] if i != 1 else [f"timeout in {words}"],
                ),
            )
        )
    pattern = workflow_pattern_id(namespace, "testing", workflow_key(["plan", "code", "test"]))
    events += [
        at(
            6,
            DecisionLogged(
                decision_id=f"d1{tag}", actor="planner", decision=f"decided to cache {words}"
            ),
        ),
        at(7, DecisionOutcome(decision_id=f"d1{tag}", success=True, notes=f"notes of {words}")),
        at(8, KnowledgeAdded(kind="procedure", title=f"runbook {words}{tag}", content=words), None),
        at(9, PatternFeedback(pattern_id=pattern, helpful=True)),
        at(10, SessionEnded(session_id="s1", success=True), None),
    ]
    return events


async def _publish(
    event_log: EventLog, nc: NatsClient, start: datetime, tag: str = "", *, v1: bool = True
) -> None:
    """Every tenant's events on v2 subjects, a few on v1 (``memory.<type>``, the namespace in
    the body, as streams written before v2 hold them), and a malformed message of each tenant
    on each kind of subject (dead letters)."""
    js = nc.jetstream()
    for namespace in TENANTS:
        events = _tenant(namespace, start, tag)
        legacy = events[1:3] if v1 else []  # a workflow and a task on v1
        await event_log.append_many([e for e in events if e not in legacy])
        for event in legacy:
            await js.publish(
                f"memory.{event.type}", encode_event(event), headers={"Nats-Msg-Id": event.id}
            )
        junk = {"namespace": namespace, "type": "workflow.executed", "oops": _words(namespace)}
        await js.publish(f"memory.workflow.executed.{namespace}", json.dumps(junk).encode())
        if v1:
            legacy_junk = json.dumps({**junk, "type": "task.executed"}).encode()
            await js.publish("memory.task.executed", legacy_junk)


def _tenant_view(projections: ProjectionSet, namespace: str) -> dict[str, Any]:
    """Everything the projections hold of one tenant (to compare before and after a purge)."""
    cursor = projections.store.reader()
    try:
        tables = {
            table: repr(
                cursor.execute(
                    f"SELECT * FROM {table} WHERE namespace = ? ORDER BY ALL", [namespace]
                ).fetchall()
            )
            for table in namespaced_tables()
        }
    finally:
        cursor.close()

    def learner(state: Any) -> dict[str, Any]:
        return {
            "workflows": repr({k: v for k, v in state.workflows.items() if k[0] == namespace}),
            "outcomes": repr({k: v for k, v in state.outcomes.items() if k[0] == namespace}),
            "versions": repr({k: v for k, v in state.versions.items() if v.namespace == namespace}),
            "feedback": repr({k: v for k, v in state.feedback.items() if k[0] == namespace}),
            "announced": sorted(k for k in state.announced if f":{namespace}:" in k),
            "ids": state.seen.owned(namespace).tolist(),
        }

    def sessions(state: Any) -> dict[str, Any]:
        records = [
            {**dataclasses.asdict(r), "compaction_duration_ms": None}
            for r in state.records.values()
            if r.namespace == namespace
        ]
        opened = [dataclasses.asdict(f) for f in state.open_sessions(namespace)]
        return {"records": records, "open": opened}  # dicts: a restored one is key-sorted

    return {
        "tables": tables,
        "learner": projections.learner.read(learner),
        "sessions": projections.sessions.read(sessions),
        "memories": {
            k: m.to_json()
            for k, m in projections.vectors.memories.items()
            if m.namespace == namespace
        },
        "answers": [
            projections.vectors.search(namespace=namespace, text=q, top_k=10, mode=mode)
            for q in QUERIES
            for mode in ("hybrid", "lexical")
        ],
    }


def _beta_rows(cursor: duckdb.DuckDBPyConnection, purge_sequence: int) -> dict[str, int]:
    """Rows of beta in every table (the purge's own id in event_ids aside), and rows of any
    table whose text holds the secret."""
    found: dict[str, int] = {}
    for table in TABLES:
        rows = cursor.execute(f"SELECT * FROM {table}").fetchall()
        columns = [d[0] for d in cursor.description or ()]
        for row in rows:
            record = dict(zip(columns, row, strict=True))
            own_marker = table == "event_ids" and record.get("sequence") == purge_sequence
            if (record.get("namespace") == "beta" and not own_marker) or SECRET in repr(row):
                found[table] = found.get(table, 0) + 1
    return found


def _decompressed(body: bytes) -> bytes:
    for opener in (gzip.decompress, zlib.decompress):
        try:
            return opener(body)
        except (OSError, zlib.error, EOFError):
            continue
    return body


async def _stream_bodies(nc: NatsClient, stream: str, subject: str) -> list[Any]:
    js = nc.jetstream()
    return [m async for m in read_stream(js, stream, ReadRange(subject=subject))]


async def _assert_snapshots_free_of_beta(
    nc: NatsClient, settings: Settings, store: SnapshotStore, purge_sequence: int, scratch: Path
) -> list[str]:
    """Every stored snapshot verifies, and unpacked holds no beta row, no file naming beta and
    no byte of its secret (after decompression); returns their ids."""
    info = await nc.jetstream().stream_info(settings.stream.name)
    ids = await store.snapshot_ids()
    for snapshot_id in ids:
        _, files = await verified_snapshot(
            store, snapshot_id, settings.stream.name, info.state.first_seq, info.state.last_seq
        )
        assert namespace_rows(files, "beta", below=purge_sequence) == 0, snapshot_id
        for name, body in files.items():
            assert "beta" not in name and SECRET.encode() not in _decompressed(body), name
        target = scratch / snapshot_id
        unpack(files, target)
        connection = duckdb.connect(str(target / "engram.duckdb"), read_only=True)
        try:
            assert _beta_rows(connection.cursor(), purge_sequence) == {}, snapshot_id
        finally:
            connection.close()
        for path in target.rglob("*"):
            if path.is_file() and not path.name.startswith("engram.duckdb"):
                assert SECRET.encode() not in _decompressed(path.read_bytes()), path
    return ids


def _live_state(engine: Engine) -> dict[str, Any]:
    projections = engine.set
    return {
        **state_of(projections),
        "tenants": {ns: _tenant_view(projections, ns) for ns in TENANTS},
    }


async def _replayed_state(
    nc: NatsClient, settings: Settings, directory: Path, store: SnapshotStore | None = None
) -> dict[str, Any]:
    """The state rebuilt in ``directory`` from the stream (after the newest snapshot of
    ``store`` when given), as a new engine would."""
    target = settings.model_copy(update={"data_dir": directory})
    if store is not None:
        assert await restore_latest(nc.jetstream(), target, store, directory) is not None
    projections = open_projections(target)
    try:
        await replay(nc.jetstream(), settings.stream.name, projections.persistent)
        return {
            **state_of(projections),
            "tenants": {ns: _tenant_view(projections, ns) for ns in TENANTS},
        }
    finally:
        projections.close()


async def test_purge_removes_a_tenant_from_the_stream_projections_and_snapshots(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Three tenants with every kind of event (v2, some v1, malformed ones), an engine running,
    a snapshot stored; ``engram purge --namespace beta --compact-legacy`` (after a dry run that
    changes nothing): the stream and the dead-letter stream hold nothing of beta but the purge
    event (its v1 messages went with the history below them);
    the running engine's tables, learner, sessions, memories and indexes have forgotten it
    (its secret text is found nowhere, no SQL row is beta's); alpha and gamma are exactly as
    before; every stored snapshot is free of beta and the pre-purge one is gone; a new engine's
    rebuild (the new snapshot and the tail) equals the live state; purging beta again resumes
    the finished purge (no second marker, nothing more removed), a namespace never used is
    refused; beta publishing again starts afresh, and a rebuild still equals the live state."""
    js = nc.jetstream()
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    common = [
        "--nats-url", str(settings.nats.url), "--stream", settings.stream.name,
        "--data-dir", str(operator.data_dir),
    ]  # fmt: skip
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    await _publish(event_log, nc, t0)
    store = default_store(js, operator)
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        before = {ns: _tenant_view(engine.set, ns) for ns in TENANTS}
        assert before["beta"]["memories"] and before["beta"]["learner"]["versions"] != "{}"
        assert engine.set.vectors.search(namespace="beta", text=SECRET, top_k=3)
        assert engine.set.sessions.compacted_sessions("beta")
        old = await take_snapshot(nc, operator, store)
        stream_before = (await js.stream_info(settings.stream.name)).state
        # beta's v2 messages: its events, its malformed one, the engine's pattern.learned and
        # session.compacted of it
        expected_v2 = len(await _stream_bodies(nc, settings.stream.name, "memory.*.*.beta"))
        assert expected_v2 > 13

        dry = await engram("purge", "--namespace", "beta", "--reason", "GDPR-42", "--dry-run",
                           "--json", *common, cwd=tmp_path)  # fmt: skip
        assert dry.code == 0, dry.err
        counted = dry.json()
        # 2 events and 1 malformed message of beta on v1, found among every tenant's 9
        assert (counted["v2_messages"], counted["v1_messages"]) == (expected_v2, 3), counted
        assert counted["v1_scanned"] == 9 and counted["deletes_denied"] is True
        after_dry = (await js.stream_info(settings.stream.name)).state
        assert after_dry.messages == stream_before.messages  # nothing changed

        run = await engram("purge", "--namespace", "beta", "--reason", "GDPR-42", "--yes",
                           "--compact-legacy", "--json", *common, cwd=tmp_path)  # fmt: skip
        assert run.code == 0, run.err
        done = run.json()
        point = done["purge_sequence"]
        assert (done["v2_removed"], done["v1_removed"], done["v1_kept"]) == (expected_v2, 3, [])
        assert done["compacted_below"] < point and done["compacted_messages"] > 0
        first = (await js.stream_info(settings.stream.name)).state.first_seq
        assert first == done["compacted_below"]
        assert done["dead_letters_removed"] >= 2  # beta's malformed v2 and v1 messages
        [superseded] = done["snapshots"]
        assert superseded["deleted"] == [old.snapshot_id]
        await settle(engine)

        # -- the stream and the dead letters ------------------------------------------------
        purge = purge_of("beta")
        messages = await _stream_bodies(nc, settings.stream.name, "memory.>")
        beta = [m for m in messages if belongs_to(purge, m.subject, m.data)]
        assert [(m.sequence, m.subject) for m in beta] == [(point, "memory.namespace.purged.beta")]
        assert json.loads(beta[0].data)["data"]["reason"] == "GDPR-42"
        assert not [m for m in messages if SECRET.encode() in m.data]
        dlq = dead_letter_stream_name(settings.stream)
        letters = await _stream_bodies(nc, dlq, "engram.deadletter.>")
        assert letters and not [m for m in letters if SECRET.encode() in m.data]
        assert any(b"alpha" in m.data for m in letters)  # the others' dead letters stay

        # -- the running engine's projections -----------------------------------------------
        projections = engine.set
        for text in QUERIES:
            assert projections.vectors.search(namespace="beta", text=text, top_k=10) == []
        cursor = projections.store.reader()
        try:
            assert _beta_rows(cursor, point) == {}
        finally:
            cursor.close()
        assert (
            projections.learner.read(
                lambda s: (
                    [k for k in [*s.workflows, *s.outcomes] if k[0] == "beta"]
                    + [p for p, v in s.versions.items() if v.namespace == "beta"]
                    + [p for p in s.announced if ":beta:" in p]
                    + [a for a in s.pending if a.namespace == "beta"]
                )
            )
            == []
        )
        assert projections.sessions.read(lambda s: s.open_sessions("beta")) == []
        assert projections.sessions.compacted_sessions("beta") == []
        assert [e.event.type for e in projections.recent.recent("beta")] == ["namespace.purged"]
        after = {ns: _tenant_view(projections, ns) for ns in TENANTS}
        assert after["alpha"] == before["alpha"] and after["gamma"] == before["gamma"]

        # -- snapshots ---------------------------------------------------------------------------
        ids = await _assert_snapshots_free_of_beta(nc, operator, store, point, tmp_path / "snaps")
        assert old.snapshot_id not in ids and ids == [superseded["snapshot_id"]]

        # -- again, and refusals ----------------------------------------------------------------
        again = await engram("purge", "--namespace", "beta", "--reason", "again", "--yes", *common,
                             cwd=tmp_path)  # fmt: skip
        assert again.code == 0, again.err
        assert f"resumed the purge of beta at its namespace.purged (sequence {point}" in again.out
        assert "0 v2 and 0 v1 messages and 0 dead letters" in again.out
        markers = await _stream_bodies(nc, settings.stream.name, "memory.namespace.purged.beta")
        assert [m.sequence for m in markers] == [point]
        await settle(engine)
        never = await engram("purge", "--namespace", "delta", "--reason", "x", "--yes", *common,
                             cwd=tmp_path)  # fmt: skip
        assert never.code == 2 and "namespace delta has no events" in never.err
        assert "nothing to purge" in never.err
        unsure = await engram("purge", "--namespace", "alpha", "--reason", "x", *common,
                              cwd=tmp_path)  # fmt: skip
        assert unsure.code == 2 and "--yes" in unsure.err  # no terminal to confirm on
        live = _live_state(engine)

        # -- beta starts afresh ---------------------------------------------------------------
        await event_log.append_many(_tenant("beta", t0 + timedelta(hours=1), tag="-new"))
        await settle(engine)
        fresh = _tenant_view(engine.set, "beta")
        assert len(fresh["memories"]) == len(before["beta"]["memories"])
        key = workflow_key(["plan", "code", "test"])
        runs = engine.set.learner.read(lambda s: s.workflows[("beta", "testing")][key].executions)
        assert runs == 4  # the new ones only
        relived = _live_state(engine)

    assert live["tenants"]["beta"]["memories"] == {}
    assert await _replayed_state(nc, settings, tmp_path / "rebuilt", store) == relived


async def test_a_replay_of_the_purged_stream_equals_the_live_state(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Without compaction (and no snapshot store), a purge removes beta's v2 messages and
    reports its v1 ones as kept (the stream denies single deletes); the live engine forgets
    all of them, and a replay of the whole stream from sequence 1 (which applies those v1
    messages, then the purge) has exactly the live state."""
    await _publish(event_log, nc, datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        report = await purge_namespace(nc, settings, "beta", "erasure")
        await settle(engine)
        assert len(report.v1_kept) == 3 and report.v1_removed == 0
        assert report.compacted_below is None and report.snapshots == []
        messages = await _stream_bodies(nc, settings.stream.name, "memory.>")
        left = {m.sequence for m in messages if belongs_to(purge_of("beta"), m.subject, m.data)}
        assert left == {*report.v1_kept, report.purge_sequence}
        live = _live_state(engine)
    assert live["tenants"]["beta"]["memories"] == {}
    assert await _replayed_state(nc, settings, tmp_path / "replay") == live


async def test_purge_on_a_compacted_stream_keeps_the_others_history(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """History below a snapshot compacted away: the old snapshot is the only copy of alpha's
    and gamma's early state. A purge of beta takes a new snapshot from it (forgetting beta),
    verifies it, and only then deletes the old one: a new engine restoring the new snapshot
    and replaying the tail has the live state, with alpha's early history and without beta."""
    js = nc.jetstream()
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    store = default_store(js, operator)
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    await _publish(event_log, nc, t0)
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        early = await take_snapshot(nc, operator, store)
        plan = await plan_compaction(js, operator, store, older_than_s=0)
        assert await compact(js, operator, plan) > 0
        assert (await js.stream_info(settings.stream.name)).state.first_seq > early.sequence
        await _publish(event_log, nc, t0 + timedelta(hours=1), tag="-late", v1=False)
        await settle(engine)
        assert await holds_namespace(store, early.snapshot_id, "beta") is True
        report = await purge_namespace(nc, settings, "beta", "erasure", [(operator, store)])
        assert report.v1_kept == ()  # the early v1 messages were compacted already
        await settle(engine)
        [superseded] = report.snapshots
        assert superseded.deleted == (early.snapshot_id,)
        await _assert_snapshots_free_of_beta(
            nc, operator, store, report.purge_sequence, tmp_path / "snaps"
        )
        live = _live_state(engine)
        cursor = engine.set.store.reader()
        try:
            alpha_tasks = cursor.execute(
                "SELECT task_id FROM task_executions WHERE namespace = 'alpha' ORDER BY task_id"
            ).fetchall()
        finally:
            cursor.close()
    assert live["tenants"]["beta"]["memories"] == {}
    assert [t for (t,) in alpha_tasks] == sorted([*TASKS, *(f"{t}-late" for t in TASKS)])
    rebuilt = await _replayed_state(nc, settings, tmp_path / "rebuilt", store)
    assert rebuilt == live


# -- a purge that stopped half-way, snapshots stored meanwhile, what a snapshot holds ------------


async def _dead_letters_of_beta(nc: NatsClient, settings: Settings) -> list[int]:
    dlq = dead_letter_stream_name(settings.stream)
    letters = await _stream_bodies(nc, dlq, "engram.deadletter.>")
    return [m.sequence for m in letters if b"beta" in m.data]


async def test_a_purge_that_failed_after_the_stream_purge_is_finished_by_a_rerun(
    event_log: EventLog,
    settings: Settings,
    nc: NatsClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A purge of beta fails right after its stream purge (the dead-letter step raises): its
    marker is in the stream, beta's messages are gone, its dead letters and the old snapshot
    are still there. A dry run then says it would resume at that marker; ``engram purge``
    again resumes there (exit 0, "resumed", no second marker): beta's dead letters go, the
    old snapshot is superseded, every snapshot is free of beta. Only a namespace with neither
    messages nor a marker is "nothing to purge"."""
    js = nc.jetstream()
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    store = default_store(js, operator)
    common = [
        "--nats-url", str(settings.nats.url), "--stream", settings.stream.name,
        "--data-dir", str(operator.data_dir),
    ]  # fmt: skip
    await _publish(event_log, nc, datetime(2026, 11, 20, 9, 0, tzinfo=UTC), v1=False)
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        old = await take_snapshot(nc, operator, store)
        assert await _dead_letters_of_beta(nc, settings)

        async def broken(*_: Any, **__: Any) -> tuple[int, int]:
            raise EngramError("injected: the connection dropped after the stream purge")

        with monkeypatch.context() as patched:
            patched.setattr("consumers.purge.purge_dead_letters", broken)
            with pytest.raises(EngramError, match="injected"):
                await purge_namespace(nc, settings, "beta", "GDPR-7", [(operator, store)])
        markers = await _stream_bodies(nc, settings.stream.name, "memory.namespace.purged.beta")
        [point] = [m.sequence for m in markers]
        assert await _stream_bodies(nc, settings.stream.name, "memory.*.*.beta") == markers
        assert await _dead_letters_of_beta(nc, settings)  # left by the failure
        assert await store.snapshot_ids() == [old.snapshot_id]

        dry = await engram("purge", "--namespace", "beta", "--reason", "GDPR-7", "--dry-run",
                           *common, cwd=tmp_path)  # fmt: skip
        assert dry.code == 0, dry.err
        assert f"would resume the purge of beta at its namespace.purged (sequence {point}" in (
            dry.out
        )
        rerun = await engram("purge", "--namespace", "beta", "--reason", "GDPR-7", "--yes",
                             "--json", *common, cwd=tmp_path)  # fmt: skip
        assert rerun.code == 0, rerun.err
        done = rerun.json()
        assert (done["resumed"], done["purge_sequence"], done["resume_at"]) == (True, point, point)
        assert done["dead_letters_removed"] >= 1 and done["v2_removed"] == 0
        [superseded] = done["snapshots"]
        assert superseded["deleted"] == [old.snapshot_id]
        markers = await _stream_bodies(nc, settings.stream.name, "memory.namespace.purged.beta")
        assert [m.sequence for m in markers] == [point]  # no second marker
        assert await _dead_letters_of_beta(nc, settings) == []
        await _assert_snapshots_free_of_beta(nc, operator, store, point, tmp_path / "snaps")
        await settle(engine)
        assert engine.set.vectors.search(namespace="beta", text=SECRET, top_k=3) == []

        never = await engram("purge", "--namespace", "delta", "--reason", "x", "--yes", *common,
                             cwd=tmp_path)  # fmt: skip
        assert never.code == 2 and "nothing to purge" in never.err


class _LateSnapshot:
    """A snapshot store whose first listing misses one snapshot: an engine stored it (taken
    before the purge point) just after the purge listed the store."""

    def __init__(self, store: SnapshotStore, late: str) -> None:
        self.store, self.late, self.listings = store, late, 0
        self.location = store.location

    async def put(self, snapshot_id: str, name: str, data: bytes) -> None:
        await self.store.put(snapshot_id, name, data)

    async def get(self, snapshot_id: str, name: str) -> bytes | None:
        return await self.store.get(snapshot_id, name)

    async def delete(self, snapshot_id: str) -> None:
        await self.store.delete(snapshot_id)

    async def snapshot_ids(self) -> list[str]:
        self.listings += 1
        ids = await self.store.snapshot_ids()
        return [i for i in ids if i != self.late] if self.listings == 1 else ids


async def test_a_snapshot_stored_while_the_purge_runs_is_superseded_too(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Two snapshots holding beta, one of them stored only after the purge first listed the
    store (as an engine's scheduled snapshot may be): the purge lists again after deleting and
    deletes it too; every snapshot left is free of beta."""
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    store = DirectorySnapshots(tmp_path / "snapshots")
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    await _publish(event_log, nc, t0, v1=False)
    first = await take_snapshot(nc, operator, store)
    await event_log.append_many(_tenant("alpha", t0 + timedelta(hours=1), tag="-more"))
    late = await take_snapshot(nc, operator, store)
    assert first.sequence < late.sequence
    racing = _LateSnapshot(store, late.snapshot_id)
    report = await purge_namespace(nc, settings, "beta", "erasure", [(operator, racing)])
    [superseded] = report.snapshots
    assert set(superseded.deleted) == {first.snapshot_id, late.snapshot_id}
    assert racing.listings >= 2
    ids = await _assert_snapshots_free_of_beta(
        nc, operator, store, report.purge_sequence, tmp_path / "snaps"
    )
    assert ids == [superseded.snapshot_id]


async def _stored(
    store: SnapshotStore, snapshot_id: str
) -> tuple[SnapshotManifest, dict[str, bytes]]:
    raw = await store.get(snapshot_id, MANIFEST)
    assert raw is not None
    manifest = SnapshotManifest.model_validate_json(raw)
    files = {name: await store.get(snapshot_id, name) for name in manifest.files}
    return manifest, {name: body for name, body in files.items() if body is not None}


def _without_beta_rows(files: dict[str, bytes], scratch: Path) -> dict[str, bytes]:
    """The snapshot's files with every row of beta taken out of its tables (its dead letters
    included): what a check of the tables alone would call free of beta."""
    scratch.mkdir(parents=True, exist_ok=True)
    purge = purge_of("beta")
    stripped = dict(files)
    connection = duckdb.connect(":memory:")
    try:
        for name, body in files.items():
            if not name.startswith("tables/"):
                continue
            source, target = scratch / "in.parquet", scratch / "out.parquet"
            source.write_bytes(body)
            read = f"read_parquet('{source}')"
            columns = [
                r[0] for r in connection.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()
            ]
            if "namespace" in columns:
                where = "namespace IS DISTINCT FROM 'beta'"
            elif name == "tables/dead_letters.parquet":
                rows = connection.execute(f"SELECT sequence, subject, raw FROM {read}").fetchall()
                doomed = [s for s, subject, raw in rows if belongs_to(purge, subject, bytes(raw))]
                assert doomed  # beta's malformed messages
                where = f"sequence NOT IN ({', '.join(map(str, doomed))})"
            else:
                continue
            connection.execute(f"COPY (SELECT * FROM {read} WHERE {where}) TO '{target}'")
            stripped[name] = target.read_bytes()
    finally:
        connection.close()
    assert namespace_rows(stripped, "beta") == 0 and namespace_rows(files, "beta") > 0
    return stripped


async def test_a_snapshot_holds_a_tenant_by_any_projections_files(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """A snapshot whose tables hold no row of beta still holds beta when its learner, its
    session compactor, its vector projection or its semantic cache does (each alone; the cache
    by the clock and the ids of beta's events), or its tables' dead letters
    do: holds_namespace says so for each, and says no when none does, or for a namespace the
    snapshot never saw; an unreadable projection file means "cannot tell" (None)."""
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    store = DirectorySnapshots(tmp_path / "snapshots")
    await _publish(event_log, nc, datetime(2026, 11, 20, 9, 0, tzinfo=UTC), v1=False)
    taken = await take_snapshot(nc, operator, store)
    manifest, files = await _stored(store, taken.snapshot_id)
    assert projection_traces(files, "beta") == ["learner", "sessions", "vectors", "cache"]
    assert projection_traces(files, "delta") == []
    assert await holds_namespace(store, taken.snapshot_id, "delta") is False

    stripped = _without_beta_rows(files, tmp_path / "scratch")
    prefixes = {
        "learner": "patterns/",
        "sessions": "sessions/",
        "vectors": "vectors/",
        "cache": "cache/",
    }
    variants: dict[str, dict[str, bytes]] = {
        "none": {n: b for n, b in stripped.items() if n.startswith("tables/")},
        "dead letters": {
            **{n: b for n, b in stripped.items() if n.startswith("tables/")},
            "tables/dead_letters.parquet": files["tables/dead_letters.parquet"],
        },
        **{
            projection: {n: b for n, b in stripped.items() if n.startswith(("tables/", prefix))}
            for projection, prefix in prefixes.items()
        },
        "unreadable": {
            **{n: b for n, b in stripped.items() if n.startswith("tables/")},
            "patterns/learner-state.json.gz": b"not gzip",
        },
    }
    found: dict[str, bool | None] = {}
    for variant, chosen in variants.items():
        snapshot_id = f"{manifest.sequence:012d}"[:-2] + f"{len(found):02d}"
        entries = {n: manifest.files[n] for n in chosen if n in manifest.files}
        for name, body in chosen.items():
            await store.put(snapshot_id, name, body)
        copy = manifest.model_copy(update={"snapshot_id": snapshot_id, "files": entries})
        await store.put(snapshot_id, MANIFEST, copy.model_dump_json().encode())
        found[variant] = await holds_namespace(store, snapshot_id, "beta", manifest.sequence + 1)
    assert found == {
        "none": False,
        "dead letters": True,
        "learner": True,
        "sessions": True,
        "vectors": True,
        "cache": True,
        "unreadable": None,
    }


async def test_a_rerun_with_compact_legacy_resumes_until_the_tenant_publishes_again(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """A purge without --compact-legacy keeps beta's v1 messages (the stream denies single
    deletes). Run again with compaction while beta has published nothing since, it resumes at
    the same marker: no second marker, the history below the v1 messages compacted, none of
    beta's left but the marker. Once beta has published again, a rerun is a new purge: a new
    marker, and beta's new events go too."""
    js = nc.jetstream()
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    store = DirectorySnapshots(tmp_path / "snapshots")
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    await _publish(event_log, nc, t0)
    await take_snapshot(nc, operator, store)
    stores = [(operator, store)]
    first = await purge_namespace(nc, settings, "beta", "erasure", stores)
    assert len(first.v1_kept) == 3 and not first.resumed
    again = await purge_namespace(nc, settings, "beta", "erasure", stores, compact_legacy=True)
    assert (again.resumed, again.purge_sequence) == (True, first.purge_sequence)
    assert again.v1_kept == () and again.compacted_below == max(first.v1_kept) + 1
    messages = await _stream_bodies(nc, settings.stream.name, "memory.>")
    beta = [m.sequence for m in messages if belongs_to(purge_of("beta"), m.subject, m.data)]
    assert beta == [first.purge_sequence]

    await event_log.append_many(_tenant("beta", t0 + timedelta(hours=1), tag="-new"))
    third = await purge_namespace(nc, settings, "beta", "erasure", stores)
    assert not third.resumed and third.purge_sequence > first.purge_sequence
    assert third.v2_removed > 0
    messages = await _stream_bodies(nc, settings.stream.name, "memory.>")
    beta = [m.sequence for m in messages if belongs_to(purge_of("beta"), m.subject, m.data)]
    assert beta == [third.purge_sequence]  # the first marker went with the rest below
    assert (await js.stream_info(settings.stream.name)).state.first_seq == again.compacted_below
