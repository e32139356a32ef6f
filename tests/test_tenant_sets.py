"""Namespace sets of engines that split the tenants: the setting, the CLI flag, the key naming a
set (leases, snapshots), and the data directory bound to the set its projections hold."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from structlog.testing import capture_logs

from consumers.lease import lease_key
from consumers.runner import ProjectionRunner, RunnerSettings
from consumers.snapshotting import (
    snapshot_id_for,
    snapshot_ids_of,
    snapshot_sequence,
    verified_snapshot,
)
from consumers.tenants import ALL, NAMESPACES_FILE, bind_data_dir, set_key
from engine.errors import ConfigurationError, SnapshotInvalidError
from engine.events import NAMESPACE_PATTERN, Event, WorkflowExecuted, encode_event, make_event
from engine.settings import Settings
from engine.stream import EventLog
from engine.subjects import EventSubjects
from engram.cli.main import build_parser, main
from engram.cli.serve import with_namespaces
from projections.snapshots.stores import DirectorySnapshots
from projections.tables import TablesProjection, TableStore

SUBJECTS = EventSubjects()


def test_namespaces_from_the_environment_sorted_once() -> None:
    """ENGRAM_NAMESPACES=beta,alpha,alpha is the set (alpha, beta); unset: every namespace
    (None), as before engines split the tenants."""
    assert Settings.load({"ENGRAM_NAMESPACES": "beta, alpha,alpha"}).namespaces == (
        "alpha",
        "beta",
    )
    assert Settings.load({}).namespaces is None


@pytest.mark.parametrize("empty", ["", ",", " , ", ",,"])
def test_an_empty_namespaces_variable_is_refused_naming_it(
    empty: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENGRAM_NAMESPACES set but naming no namespace is a ConfigurationError naming the
    variable, not silently every namespace (an engine meant for a few tenants would project
    and answer all of them); ``engram serve`` exits 2 saying so, before connecting anywhere.
    An empty sequence given in code is refused likewise."""
    with pytest.raises(ConfigurationError, match="ENGRAM_NAMESPACES names no namespace"):
        Settings.load({"ENGRAM_NAMESPACES": empty})
    with pytest.raises(ConfigurationError, match="names no namespace"):
        Settings.load(namespaces=())
    monkeypatch.setenv("ENGRAM_NAMESPACES", empty)
    assert main(["serve", "--nats-url", "nats://127.0.0.1:1"]) == 2
    assert "ENGRAM_NAMESPACES names no namespace" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["a.b", "a*", "a>", "has space", "x" * 65])
def test_a_namespace_that_is_not_one_subject_token_is_refused_naming_the_pattern(
    bad: str,
) -> None:
    """Each name must be one NATS subject token: ConfigurationError quoting the pattern."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.load({"ENGRAM_NAMESPACES": f"alpha,{bad}"})
    assert NAMESPACE_PATTERN in str(caught.value)
    assert repr(bad) in str(caught.value)


def test_serve_snapshot_and_replay_take_namespaces() -> None:
    """``--namespaces`` on serve, snapshot and replay sets settings.namespaces; a bad name is
    a ConfigurationError (exit 2) naming the pattern; an empty list is refused."""
    parser = build_parser()
    base = Settings()
    for argv in (
        ["serve", "--namespaces", "beta,alpha"],
        ["snapshot", "--namespaces", "beta,alpha"],
        ["replay", "--data-dir", "x", "--namespaces", "beta,alpha"],
    ):
        args = parser.parse_args(argv)
        assert with_namespaces(args, base).namespaces == ("alpha", "beta")
    assert with_namespaces(argparse.Namespace(), base) is base
    with pytest.raises(ConfigurationError, match="must match"):
        with_namespaces(argparse.Namespace(namespaces="alpha,be.ta"), base)
    with pytest.raises(ConfigurationError, match="names no namespace"):
        with_namespaces(argparse.Namespace(namespaces=","), base)


def test_set_key_is_the_same_for_the_same_set_and_differs_otherwise() -> None:
    """Engines owning one set in any order share a key (lease, snapshots); another set, or every
    namespace, has another."""
    assert set_key(None) == ALL
    assert set_key(("b", "a")) == set_key(("a", "b", "a"))
    assert set_key(("a", "b")) != set_key(("a", "c"))
    assert set_key(("a", "b")).startswith("ns-")
    assert lease_key("S", None) == "announcer.S"  # unchanged for an engine owning everything
    assert lease_key("S", ("a", "b")) == f"announcer.S.{set_key(('a', 'b'))}"
    assert lease_key("S", ("a", "b")) != lease_key("S", ("c", "d"))


def test_snapshot_ids_name_their_set() -> None:
    """A set's snapshot ids carry its key; each set lists only its own ids."""
    half = ("alpha", "beta")
    other = ("delta", "gamma")
    ids = sorted([snapshot_id_for(10), snapshot_id_for(12, half), snapshot_id_for(14, other)])
    assert snapshot_ids_of(ids, None) == [snapshot_id_for(10)]
    assert snapshot_ids_of(ids, half) == [snapshot_id_for(12, half)]
    assert snapshot_ids_of(ids, other) == [snapshot_id_for(14, other)]
    assert snapshot_sequence(snapshot_id_for(12, half)) == 12
    assert snapshot_sequence(snapshot_id_for(10)) == 10


async def test_a_snapshot_of_another_set_is_never_verified(tmp_path: Path) -> None:
    """verified_snapshot refuses an id of another set before reading anything: an engine never
    restores another set's snapshot, and compaction (every namespace) never trusts a set's."""
    store = DirectorySnapshots(tmp_path)
    half = ("alpha", "beta")
    with pytest.raises(SnapshotInvalidError, match="another namespace set"):
        await verified_snapshot(store, snapshot_id_for(5, half), "S", 1, 10)
    with pytest.raises(SnapshotInvalidError, match="covers every namespace"):
        await verified_snapshot(store, snapshot_id_for(5), "S", 1, 10, namespaces=half)
    with pytest.raises(SnapshotInvalidError, match="no manifest"):  # its own set: read on
        await verified_snapshot(store, snapshot_id_for(5, half), "S", 1, 10, namespaces=half)


def test_a_data_directory_is_bound_to_its_namespace_set(tmp_path: Path) -> None:
    """A data directory holding projections of one set refuses another (their checkpoints
    would skip an added tenant's earlier events); an empty one takes any set; a directory
    from before (no record) holds every namespace."""
    data = tmp_path / "d"
    bind_data_dir(data, ("alpha", "beta"), has_state=False)
    assert (data / NAMESPACES_FILE).exists()
    bind_data_dir(data, ("beta", "alpha"), has_state=True)  # the same set
    with pytest.raises(ConfigurationError, match="namespaces alpha, beta, not namespaces gamma"):
        bind_data_dir(data, ("gamma",), has_state=True)
    with pytest.raises(ConfigurationError, match="not every namespace"):
        bind_data_dir(data, None, has_state=True)
    bind_data_dir(data, ("gamma",), has_state=False)  # nothing applied yet: rebound
    bind_data_dir(data, ("gamma",), has_state=True)
    old = tmp_path / "old"
    old.mkdir()
    bind_data_dir(old, None, has_state=True)  # as before: nothing written, nothing refused
    assert not (old / NAMESPACES_FILE).exists()
    with pytest.raises(ConfigurationError, match="holds the projections of every namespace"):
        bind_data_dir(old, ("alpha",), has_state=True)


async def test_a_durable_with_another_filter_is_recreated_from_the_checkpoint(
    event_log: EventLog, tmp_path: Path
) -> None:
    """The runner of a projection owning alpha finds its durable created with another filter
    (every subject, as an engine owning everything left it, its ack floor past alpha's events):
    it says so in a warning, deletes it and creates it again from the projection's checkpoint
    with alpha's filters, so it reads alpha's events (v2 and v1) and never gamma's."""
    js = event_log.js
    stream = event_log.stream_name
    durable = f"split_{stream}"
    events = [_flow("alpha", i) for i in range(3)] + [_flow("gamma", i) for i in range(3)]
    await event_log.append_many(events)  # v2 subjects
    legacy = _flow("alpha", 9)
    await js.publish(
        SUBJECTS.subject(legacy.type), encode_event(legacy), headers={"Nats-Msg-Id": legacy.id}
    )
    last = (await event_log.state()).last_sequence
    await js.add_consumer(  # another set's durable, acknowledged up to the end
        stream,
        ConsumerConfig(
            durable_name=durable,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=last + 1,
            ack_policy=AckPolicy.ALL,
            filter_subject="memory.>",
        ),
    )
    store = TableStore.open(tmp_path / "t")
    try:
        runner = ProjectionRunner(
            js,
            stream,
            TablesProjection(store),
            durable=durable,
            settings=RunnerSettings(batch_size=50, max_wait_s=0.2),
            namespaces=("alpha",),
        )
        stop = asyncio.Event()
        with capture_logs() as logs:
            task = asyncio.create_task(runner.run(stop))
            try:
                async with asyncio.timeout(20):
                    while runner.checkpoint < last:
                        await asyncio.sleep(0.05)
                info = await js.consumer_info(stream, durable)
                pending = await runner.pending()
            finally:
                stop.set()
                await task
        rows = store.reader().execute("SELECT namespace, count(*) FROM workflows GROUP BY 1")
        held = dict(rows.fetchall())
    finally:
        store.close()
    assert held == {"alpha": 4}  # three v2, one v1; gamma's never
    assert sorted(info.config.filter_subjects or []) == sorted(SUBJECTS.filters(("alpha",)))
    assert pending == 0
    warned = [e for e in logs if "another filter" in e["event"]]
    assert len(warned) == 1
    assert warned[0]["old_filter"] == ["memory.>"]
    assert warned[0]["new_filter"] == SUBJECTS.filters(("alpha",))


def _flow(namespace: str, i: int) -> Event:
    return make_event(
        WorkflowExecuted(task_type="t", workflow_steps=["a", "b"], success=True, duration=1.0),
        namespace=namespace,
        event_id=f"flow-{namespace}-{i}",
    )
