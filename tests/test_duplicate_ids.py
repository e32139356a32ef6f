"""The envelope id is the identity of an event in every projection (issue 10, finding 7).

The same id published again (without ``Nats-Msg-Id``, after the duplicate window, or by two
publishers) reaches the stream again. The first occurrence wins everywhere: tables, learner,
sessions, vectors and the recent tier ignore the later ones, count them, and keep doing so across
restarts, crashes, replays and snapshots (restarts and crashes at any point over histories with
repeats: the Projection contract, tests/test_projection_contract.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

import projections.identity as identity
from consumers.replay import replay
from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    KnowledgeAdded,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    encode_event,
    make_event,
)
from engine.settings import Settings
from engine.stream import EventLog
from projections.context import RecentEvents
from projections.embedders import HashingEmbedder
from projections.identity import SeenIds, event_key
from projections.learning import LearnerProjection
from projections.learning.persistence import dump_state, restore_state
from projections.learning.scoring import LearnerConfig
from projections.projection_set import ProjectionSet, open_projections
from projections.records import SequencedEvent
from projections.sessions import SessionCompactor, state_digest
from projections.snapshots.packing import pack, unpack
from projections.tables import TablesProjection, TableStore, table_digests
from projections.task_types import KeywordTaskTypeClassifier
from projections.vectors.projection import VectorProjection
from tests.engines import running, settle
from tests.histories import realistic_history
from tests.query_subjects import raw_subject
from tests.strategies.events import repeated, splits

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2026, 11, 20, tzinfo=UTC)

# -- the record of ids -------------------------------------------------------------------------


def test_event_key_is_pinned() -> None:
    """Keys are saved in every projection's state: the function must never change."""
    assert event_key("0193a6f0-6c1e-7cc2-9d1a-3f2b9c1d4e5f") == 2564140534390844111
    assert event_key("") == 13020603013274838756


def test_first_occurrence_wins_and_repeats_are_counted() -> None:
    """``first`` is True once per id; every later call counts one duplicate."""
    seen = SeenIds()
    assert [seen.first(i) for i in ["a", "b", "a", "c", "a", "b"]] == [
        True,
        True,
        False,
        True,
        False,
        False,
    ]
    assert (len(seen), seen.duplicates) == (3, 3)
    assert event_key("a") in seen and event_key("z") not in seen


def test_fresh_judges_a_batch_without_recording_it() -> None:
    """``fresh`` marks repeats of recorded ids and of ids earlier in the batch; records nothing."""
    seen = SeenIds()
    seen.add(event_key("old"))
    keys = [event_key(i) for i in ["new", "old", "new", "other"]]
    assert seen.fresh(keys) == [True, False, False, True]
    assert len(seen) == 1 and seen.duplicates == 0
    assert seen.fresh([]) == []


def test_bytes_round_trip_and_journal() -> None:
    """``to_bytes`` is sorted and deterministic; the journal holds the keys added since cleared,
    in order; a torn record (not whole keys) is refused."""
    seen = SeenIds(journal=True, duplicates=4)
    for name in ["x", "y", "z"]:
        seen.add(event_key(name))
    restored = SeenIds.from_bytes(seen.to_bytes(), duplicates=4)
    assert restored == seen
    assert list(np.frombuffer(seen.to_bytes(), dtype="<u8")) == sorted(event_key(n) for n in "xyz")
    assert np.frombuffer(seen.journal_bytes(), dtype="<u8").tolist() == [
        event_key(n) for n in "xyz"
    ]
    seen.clear_journal()
    seen.add(event_key("w"))
    assert np.frombuffer(seen.journal_bytes(), dtype="<u8").tolist() == [event_key("w")]
    with pytest.raises(ValueError, match="whole number"):
        SeenIds.from_bytes(b"\x00" * 9)
    with pytest.raises(ValueError, match="no journal"):
        SeenIds().journal_bytes()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 40), max_size=200),
    st.integers(1, 8),
)
def test_record_behaves_as_a_set_through_merges(keys: list[int], merge_at: int) -> None:
    """Whatever the keys and however often the recent set is merged into the sorted array, the
    record answers membership like a plain set and ``fresh`` like a set built as it goes."""
    original = identity._MIN_MERGE
    identity._MIN_MERGE = merge_at  # merge after a few additions, to exercise merging
    try:
        seen, model = SeenIds(), set()
        for key in keys:
            assert seen.fresh([key, key]) == [key not in model, False]
            seen.add(key)
            model.add(key)
            assert key in seen and len(seen) == len(model)
        assert all(k in seen for k in model)
        assert sorted(model) == seen.keys().tolist()
        assert SeenIds.from_bytes(seen.to_bytes()).keys().tolist() == sorted(model)
    finally:
        identity._MIN_MERGE = original


# -- histories with repeats ---------------------------------------------------------------------


def first_occurrences(history: Sequence[SequencedEvent]) -> list[SequencedEvent]:
    """The history with its repeats removed (each id's lowest sequence kept)."""
    firsts: dict[str, SequencedEvent] = {}
    for item in history:
        firsts.setdefault(item.event.id, item)
    return sorted(firsts.values(), key=lambda i: i.sequence)


def cut(history: Sequence[SequencedEvent], cuts: Sequence[int]) -> list[list[SequencedEvent]]:
    bounds = [0, *cuts, len(history)]
    return [list(history[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def feed(projection: Any, batches: Sequence[Sequence[SequencedEvent]], last: int) -> None:
    for batch in batches:
        projection.apply(batch, [], batch[-1].sequence)
    projection.apply([], [], last)  # the watermark of a history whose last event was a repeat


# What each projection's state is, for comparison (its duplicates count aside).


def tables_state(projection: TablesProjection) -> dict[str, Any]:
    cursor = projection.store.reader()
    firsts = cursor.execute(
        "SELECT sequence, event_key FROM event_ids WHERE NOT duplicate ORDER BY sequence"
    ).fetchall()
    return {
        "tables": table_digests(cursor, exclude=frozenset({"event_ids", "checkpoints"})),
        "checkpoint": projection.checkpoint(),
        "first_occurrences": firsts,
    }


def learner_state(projection: LearnerProjection) -> dict[str, Any]:
    dump = dump_state(projection.state)
    dump.pop("duplicates")
    dump.pop("duplicates_by_namespace")  # the repeats each namespace made
    return dump


def sessions_state(projection: SessionCompactor) -> str:
    duplicates = projection.state.seen.duplicates
    projection.state.seen.duplicates = 0
    try:
        return state_digest(projection.state)
    finally:
        projection.state.seen.duplicates = duplicates


def vectors_state(projection: VectorProjection) -> dict[str, Any]:
    return {
        "memories": {label: m.to_json() for label, m in projection.memories.items()},
        "answers": [
            [h["id"] for h in projection.search(namespace=ns, text=text, top_k=10)]
            for ns in ("default", "team-a", "team-b")
            for text in ("abc", "xyz gh")
        ],
        "checkpoint": projection.state.applied,
    }


def recent_state(projection: RecentEvents) -> dict[str, Any]:
    return {
        ns: (
            [(e.sequence, e.event.id) for e in projection.recent(ns)],
            [e.sequence for e in projection.active_sessions(ns)],
        )
        for ns in ("default", "team-a", "team-b")
    }


Maker = Callable[[], Any]
Reader = Callable[[Any], Any]


def in_memory() -> list[tuple[str, Maker, Reader]]:
    return [
        ("tables", lambda: TablesProjection(TableStore.in_memory()), tables_state),
        ("learner", lambda: LearnerProjection(None), learner_state),
        ("sessions", lambda: SessionCompactor(None), sessions_state),
        ("vectors", lambda: VectorProjection(None, HashingEmbedder(dimension=32)), vectors_state),
        ("recent", lambda: RecentEvents(8), recent_state),
    ]


@FAST
@given(repeated(), st.data())
def test_every_projection_equals_the_history_without_repeats(
    history_and_repeats: tuple[list[SequencedEvent], int], data: st.DataObject
) -> None:
    """For any history with repeated ids at any positions, in any batching, every projection
    ends in the state of the same history with the repeats removed, and counts the repeats."""
    history, repeats = history_and_repeats
    last = history[-1].sequence if history else 0
    batches = cut(history, data.draw(splits(len(history))))
    reference = first_occurrences(history)
    for name, make, state in in_memory():
        projection, clean = make(), make()
        feed(projection, batches, last)
        feed(clean, [reference] if reference else [], last)
        assert state(projection) == state(clean), name
        assert (projection.duplicates_seen(), clean.duplicates_seen()) == (repeats, 0), name


# -- the tables: keyed merges must not count a repeat twice --------------------------------------


def _at(events: Sequence[Event]) -> list[SequencedEvent]:
    return [SequencedEvent(s, T0, e) for s, e in enumerate(events, 1)]


def test_keyed_tables_take_the_first_occurrence_only() -> None:
    """sessions, decisions and knowledge are merged by key: a repeated id used to add its
    counts again (event_count, workflow_count) and to overwrite what the first said."""
    when = T0 + timedelta(seconds=1)

    def ev(data: Any, event_id: str) -> Event:
        return make_event(data, session_id="s1", occurred_at=when, event_id=event_id)

    workflow = ev(WorkflowExecuted(workflow_steps=["a"], success=True, duration=1.0), "w1")
    events = [
        ev(SessionStarted(session_id="s1"), "start"),
        workflow,
        ev(DecisionLogged(decision_id="d1", actor="x", decision="go"), "d1-logged"),
        ev(DecisionOutcome(decision_id="d1", success=True, notes="first"), "d1-outcome"),
        ev(KnowledgeAdded(kind="procedure", title="T", content="first", knowledge_id="k"), "k1"),
        workflow,
        ev(DecisionOutcome(decision_id="d1", success=False, notes="second"), "d1-outcome"),
        ev(KnowledgeAdded(kind="procedure", title="T", content="second", knowledge_id="k"), "k1"),
        ev(SessionEnded(session_id="s1", success=True), "start"),  # reuses the start's id
    ]
    store = TableStore.in_memory()
    projection = TablesProjection(store)
    history = _at(events)
    for item in history:  # one batch per event: the repeats meet stored rows
        projection.apply([item], [], item.sequence)
    cursor = store.reader()
    session = cursor.execute(
        "SELECT event_count, workflow_count, ended_at FROM sessions WHERE session_id = 's1'"
    ).fetchone()
    assert session == (5, 1, None)
    decision = cursor.execute(
        "SELECT outcome_success, outcome_notes, outcome_sequence FROM decisions"
    ).fetchone()
    assert decision == (True, "first", 4)
    assert cursor.execute("SELECT content, sequence FROM knowledge").fetchone() == ("first", 5)
    assert cursor.execute("SELECT count(*) FROM workflows").fetchone() == (1,)
    assert cursor.execute(
        "SELECT list(sequence ORDER BY sequence) FROM event_ids WHERE duplicate"
    ).fetchone() == ([6, 7, 8, 9],)
    assert projection.duplicates_seen() == 4
    assert TablesProjection(store).checkpoint() == 9
    store.close()


def test_learner_state_of_format_1_loads_with_an_empty_record() -> None:
    """A learner state saved before ids were recorded still loads (with no ids, no repeats)."""
    old = dump_state(LearnerProjection(None).state)
    for field in ("seen", "duplicates"):
        del old[field]
    old["format"] = 1
    state = restore_state(old, LearnerConfig(), KeywordTaskTypeClassifier())
    assert len(state.seen) == 0 and state.seen.duplicates == 0


# -- snapshots ----------------------------------------------------------------------------------


def _with_repeats(events: list[Event], every: int) -> list[Event]:
    """``events`` and, after every ``every``-th one, a re-send of an event well before it."""
    out: list[Event] = []
    for index, event in enumerate(events):
        out.append(event)
        if index and index % every == 0:
            out.append(events[index // 2])
    return out


def _feed_set(projections: ProjectionSet, history: Sequence[SequencedEvent]) -> None:
    for projection in projections.persistent:
        tail = [e for e in history if e.sequence > projection.checkpoint()]
        for start in range(0, len(tail), 7):
            batch = tail[start : start + 7]
            projection.apply(batch, [], batch[-1].sequence)


def _counts(projections: ProjectionSet) -> dict[str, int | None]:
    return {p.name: identity.duplicates_seen(p) for p in projections.persistent}


def test_the_record_of_ids_travels_with_a_snapshot(tmp_path: Path) -> None:
    """A snapshot carries every projection's ids: an engine restored from it ignores repeats
    (in the tail) of events the snapshot covers, exactly as one that applied everything."""
    events = _with_repeats(realistic_history(0, 120), every=9)
    history = [SequencedEvent(s, e.occurred_at, e) for s, e in enumerate(events, 1)]
    at = len(history) // 2

    def opened(name: str) -> ProjectionSet:
        return open_projections(Settings(data_dir=tmp_path / name))

    source = opened("source")
    _feed_set(source, history[:at])
    source.close()
    files = pack(tmp_path / "source", Settings().embedder)
    unpack(files, tmp_path / "restored")
    restored = opened("restored")
    _feed_set(restored, history)
    whole = opened("whole")
    _feed_set(whole, history)
    repeats = len(history) - len(first_occurrences(history))
    assert repeats > 5
    assert _counts(restored) == _counts(whole) == dict.fromkeys(_counts(whole), repeats)
    assert table_digests(restored.store.reader()) == table_digests(whole.store.reader())
    assert learner_state(restored.learner) == learner_state(whole.learner)
    assert sessions_state(restored.sessions) == sessions_state(whole.sessions)
    assert restored.vectors.memories.keys() == whole.vectors.memories.keys()
    restored.close()
    whole.close()


# -- end to end, on a real nats-server ------------------------------------------------------------

TASK_TEXT = "rotated the postgres credentials of the billing service"


async def _ask(nc: NatsClient, verb: str, body: dict[str, Any] | None = None) -> Any:
    reply = await nc.request(raw_subject(verb, body), json.dumps(body or {}).encode(), timeout=10)
    answer = json.loads(reply.data)
    assert "error" not in answer, answer
    return answer


async def _observed(nc: NatsClient) -> dict[str, Any]:
    metrics = (await _ask(nc, "metrics", {"namespace": "default"}))["metrics"]
    learning = await _ask(nc, "learning", {"namespace": "default"})
    hits = (await _ask(nc, "search", {"text": TASK_TEXT, "top_k": 10}))["hits"]
    status = await _ask(nc, "status")
    return {
        "metrics_runs": sum(m["total_executions"] for m in metrics),
        "learning_runs": learning["total_workflows_executed"],
        "hits": [h["id"] for h in hits],
        "duplicates": {n: p["duplicates"] for n, p in status["projections"].items()},
    }


async def _send_copies(event_log: EventLog, event: Event, copies: range) -> None:
    """Store ``event`` once per copy: a distinct Nats-Msg-Id each, as a publisher that does not
    set it (or publishes after the duplicate window) would get."""
    for copy in copies:
        ack = await event_log.js.publish(
            event.subject,
            encode_event(event),
            stream=event_log.settings.name,
            headers={"Nats-Msg-Id": f"{event.id}-copy-{copy}"},
        )
        assert not ack.duplicate


@pytest.mark.slow
async def test_a_repeated_id_counts_once_everywhere_live_after_restart_and_replay(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """The same envelope stored three times: metrics and learning both count one run, a search
    finds the memory once, status shows two duplicates per projection; a fourth copy after a
    restart is a duplicate too; a clean replay builds the same."""
    workflow = make_event(
        WorkflowExecuted(task_type="deployment", workflow_steps=["a"], success=True, duration=2),
        session_id="s-dup",
        event_id="wf-repeated",
    )
    task = make_event(
        TaskExecuted(task_id="t1", execution_summary=TASK_TEXT, success=True),
        session_id="s-dup",
        event_id="task-repeated",
    )
    await _send_copies(event_log, workflow, range(3))
    await _send_copies(event_log, task, range(3))
    data_dir = tmp_path / "engine"
    async with running(settings, nc, data_dir) as engine:
        await settle(engine)
        live = await _observed(nc)
    assert live["metrics_runs"] == live["learning_runs"] == 1
    assert live["hits"] == ["task-repeated"]
    assert live["duplicates"] == dict.fromkeys(
        ["tables", "patterns", "vectors", "sessions", "recent", "cache"], 4
    )

    await _send_copies(event_log, workflow, range(3, 4))
    async with running(settings, nc, data_dir) as engine:
        await settle(engine)
        restarted = await _observed(nc)
    assert restarted["metrics_runs"] == restarted["learning_runs"] == 1
    assert restarted["hits"] == ["task-repeated"]
    assert restarted["duplicates"] == dict.fromkeys(live["duplicates"], 5)

    replayed = open_projections(settings.model_copy(update={"data_dir": tmp_path / "replay"}))
    try:
        await replay(event_log.js, settings.stream.name, replayed.persistent)
        cursor = replayed.store.reader()
        assert cursor.execute("SELECT count(*) FROM workflows").fetchone() == (1,)
        learned = replayed.learner.state.workflows[("default", "deployment")]
        assert [s.executions for s in learned.values()] == [1]
        hits = replayed.vectors.search(namespace="default", text=TASK_TEXT, top_k=10)
        assert [h["id"] for h in hits] == ["task-repeated"]
        # The replay also reads the memory.recalled events the searches above published.
        assert _counts(replayed) == dict.fromkeys(_counts(replayed), 5)
    finally:
        await asyncio.to_thread(replayed.close)
