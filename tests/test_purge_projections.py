"""Every projection forgets a purged tenant (``namespace.purged``, ``projections.purging``).

The property: a history with a purge of namespace NS at point p ends, in every projection and
whatever the batching, in the state of the same history without NS's messages before p: the
state a replay builds from the stream once ``engram purge`` removed them. NS's events after p
are applied as usual, its repeats of ids it used before p included (it starts afresh). The
contract suite (tests/test_projection_contract.py) runs purges through batching, redelivery,
restarts and crashes; here is what a purge means, and that a purged tenant leaves nothing in the
files a projection saves.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.events import (
    DecisionLogged,
    Event,
    KnowledgeAdded,
    PatternFeedback,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    make_event,
)
from engine.settings import Settings
from projections.base import Announcer, Projection
from projections.context import RecentEvents
from projections.identity import SeenIds, event_key
from projections.learning.projection import LearnerProjection
from projections.learning.state import workflow_pattern_id
from projections.projection_set import open_projections
from projections.purging import belongs_to, body_namespace, subject_matches
from projections.records import SequencedEvent
from projections.sessions.projection import SessionCompactor
from projections.tables.schema import namespaced_tables
from projections.workflows import workflow_key
from tests.projection_adapters import ADAPTERS, ProjectionAdapter, fingerprint
from tests.strategies.events import BASE_TIME, NAMESPACES, purge_of, repeated, splits
from tests.test_projection_contract import Stream, batches, feed

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The recent tier keeps the last ``capacity`` events of every tenant together: a purge leaves
# fewer of the others' events than a rebuild would hold until new events fill it (its module
# says so). With room for every event the property is exact.
EVERY = [
    ProjectionAdapter("recent", lambda _: RecentEvents(1_000), a.state, persistent=False)
    if a.name == "recent"
    else a
    for a in ADAPTERS
]


def _separate(history: list[SequencedEvent], namespace: str) -> list[SequencedEvent]:
    """``history`` where no envelope id is shared by ``namespace`` and another namespace: the
    only coupling of tenants a purge cannot undo (a repeat is ignored whoever made it), which
    needs a publisher to reuse another tenant's id."""
    first: dict[str, str] = {}
    out = []
    for item in history:
        event = item.event
        owner = first.setdefault(event.id, event.namespace)
        if owner != event.namespace and namespace in (owner, event.namespace):
            event = event.model_copy(update={"id": f"{event.id}-{item.sequence}"})
            first[event.id] = event.namespace
        out.append(SequencedEvent(item.sequence, item.stored_at, event))
    return out


def _renumber(events: list[Event]) -> list[SequencedEvent]:
    return [SequencedEvent(s, e.occurred_at, e) for s, e in enumerate(events, 1)]


def _purge_event(namespace: str, when_s: float, event_id: str = "purge-1") -> Event:
    return make_event(
        purge_of(namespace),
        namespace=namespace,
        agent_id="engram-purge",
        occurred_at=BASE_TIME + timedelta(seconds=when_s),
        event_id=event_id,
    )


def _echoes(adapter: ProjectionAdapter, items: list[SequencedEvent]) -> list[Event]:
    """Half of what an announcer announces over ``items``, as the stream would carry it."""
    scratch: Projection = adapter.open(None)
    try:
        if not isinstance(scratch, Announcer) or not items:
            return []
        scratch.apply(items, [], items[-1].sequence)
        return scratch.take_pending()[::2]
    finally:
        scratch.close()


def _purged_stream(
    adapter: ProjectionAdapter, data: st.DataObject
) -> tuple[Stream, Stream, str, int]:
    """(the stream with a purge of NS at p, the same without NS's messages before p, NS, p)."""
    namespace = data.draw(NAMESPACES, label="purged")
    history, _ = data.draw(repeated(max_size=30))
    history = _separate(history, namespace)
    at = data.draw(st.integers(0, len(history)), label="purge after")
    before = [e.event for e in history[:at]]
    before += _echoes(adapter, history[:at])  # read back before the purge
    purge = _purge_event(namespace, at + 0.5)
    events = [*before, purge, *(e.event for e in history[at:])]
    items = _renumber(events)
    items += _renumber([*events, *_echoes(adapter, items)])[len(items) :]
    sequences = st.integers(1, len(items))
    dead = frozenset(data.draw(st.sets(sequences, max_size=len(items) // 4), label="dead"))
    point = len(before) + 1
    dead -= {point}
    full = Stream(items, dead)
    # Dead letters carry the event's subject (memory.<type>.<namespace>): NS's belong to it.
    kept = [i for i in items if i.sequence >= point or i.event.namespace != namespace]
    return full, Stream(kept, frozenset(dead & {i.sequence for i in kept})), namespace, point


@pytest.mark.parametrize("adapter", EVERY, ids=lambda a: a.name)
@PROPERTY
@given(data=st.data())
def test_a_purge_leaves_the_state_of_the_history_without_the_tenant(
    adapter: ProjectionAdapter, data: st.DataObject
) -> None:
    """With namespace.purged of NS after any prefix, any batching ends in the state (and
    checkpoint, repeats counted, announcements pending) of the history without NS's messages
    before the purge, applied in one batch: a live engine and a replay of the purged stream
    agree."""
    full, reference, _, _ = _purged_stream(adapter, data)
    cuts = data.draw(splits(len(full.items)), label="cuts")
    purged = feed(adapter.open(None), full, batches(len(full.items), cuts))
    clean = feed(adapter.open(None), reference, [(0, len(reference.items))])
    try:
        assert fingerprint(adapter, purged) == fingerprint(adapter, clean)
        assert purged.checkpoint() == clean.checkpoint()
    finally:
        purged.close()
        clean.close()


# -- what each projection forgets --------------------------------------------------------------

T0 = BASE_TIME
SECRET = "zebra-quartz-beta-secret"


def _event(data: Any, namespace: str, second: int, session: str | None = None) -> Event:
    return make_event(
        data,
        namespace=namespace,
        agent_id="agent",
        session_id=session,
        occurred_at=T0 + timedelta(seconds=second),
    )


def _tenant(namespace: str, start: int) -> list[Event]:
    """Every kind of event of one tenant, its texts naming it."""
    words = f"{namespace} {SECRET}" if namespace == "beta" else namespace
    events = [_event(SessionStarted(session_id="s1", goal=f"goal of {words}"), namespace, start)]
    for i in range(4):
        events.append(
            _event(
                WorkflowExecuted(
                    task_type="testing",
                    request=f"request of {words}",
                    workflow_steps=["plan", "code"],
                    success=True,
                    duration=1.0,
                ),
                namespace,
                start + 1 + i,
                "s1",
            )
        )
        events.append(
            _event(
                TaskExecuted(
                    task_id=f"t{i}",
                    task_type="testing",
                    execution_summary=f"summary {i} of {words}",
                    success=i % 2 == 0,
                    error_patterns=[f"error of {words}"],
                ),
                namespace,
                start + 1 + i,
                "s1",
            )
        )
    pattern = workflow_pattern_id(namespace, "testing", workflow_key(["plan", "code"]))
    events += [
        _event(
            DecisionLogged(decision_id="d1", actor="planner", decision=f"decided {words}"),
            namespace,
            start + 6,
            "s1",
        ),
        _event(
            KnowledgeAdded(kind="procedure", title=f"doc of {words}", content=words),
            namespace,
            start + 7,
        ),
        _event(PatternFeedback(pattern_id=pattern, helpful=True), namespace, start + 8, "s1"),
    ]
    return events


def _files(directory: Path) -> Iterator[tuple[Path, bytes]]:
    """Every saved file under ``directory`` but the DuckDB database, decompressed."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path.name.startswith("engram.duckdb"):
            continue
        body = path.read_bytes()
        for opener in (gzip.decompress, zlib.decompress):
            try:
                body = opener(body)
                break
            except (OSError, zlib.error, EOFError):
                continue
        yield path, body


def test_a_purged_tenant_leaves_nothing_in_the_saved_files(tmp_path: Path) -> None:
    """Three tenants, every kind of event, saved; beta purged and saved again: no saved file
    (learner state, session records and state, memory records, id records, vector and
    lexical indexes) holds beta's text or names its directory, no table holds a beta row, the
    learner has no beta pattern, no beta session is open or compacted, a search of beta finds
    nothing; alpha and gamma are as before; beta's events after the purge start it afresh."""
    settings = Settings(data_dir=tmp_path / "data")
    tenants = [*_tenant("alpha", 0), *_tenant("beta", 100), *_tenant("gamma", 200)]
    items = _renumber(tenants)
    projections = open_projections(settings)
    try:
        for projection in projections.live:
            projection.apply(items, [], items[-1].sequence)
        projections.close()
        assert any(SECRET.encode() in body for _, body in _files(settings.data_dir))
        projections = open_projections(settings)
        searches = {
            ns: projections.vectors.search(namespace=ns, text=f"summary of {ns}", top_k=20)
            for ns in ("alpha", "gamma")
        }
        assert projections.vectors.search(namespace="beta", text=SECRET, top_k=5)
        purge = SequencedEvent(len(items) + 1, T0, _purge_event("beta", 300))
        for projection in projections.live:
            projection.apply([purge], [], purge.sequence)
        assert projections.vectors.search(namespace="beta", text=SECRET, top_k=5) == []
        assert projections.learner.read(lambda s: [k for k in s.workflows if k[0] == "beta"]) == []
        assert projections.sessions.compacted_sessions("beta") == []
        assert [e.event.type for e in projections.recent.recent("beta")] == ["namespace.purged"]
        for ns, hits in searches.items():
            now = projections.vectors.search(namespace=ns, text=f"summary of {ns}", top_k=20)
            assert now == hits
        projections.close()
        for path, body in _files(settings.data_dir):
            assert SECRET.encode() not in body, path
            assert "beta" not in str(path.relative_to(settings.data_dir)), path
        connection = duckdb.connect(str(settings.data_dir / "engram.duckdb"), read_only=True)
        try:
            for table in namespaced_tables():
                # The purge's own id is beta's (in event_ids), as it is in a replay.
                marker = f" AND sequence <> {purge.sequence}" if table == "event_ids" else ""
                rows = connection.execute(
                    f"SELECT count(*) FROM {table} WHERE namespace = 'beta'{marker}"
                ).fetchone()
                assert rows == (0,), table
            alpha = connection.execute(
                "SELECT count(*) FROM workflows WHERE namespace = 'alpha'"
            ).fetchone()
            assert alpha == (4,)
        finally:
            connection.close()
        # beta starts afresh: the same events again (same ids) are first occurrences.
        projections = open_projections(settings)
        again = [
            SequencedEvent(len(items) + 2 + i, e.stored_at, e.event)
            for i, e in enumerate(x for x in items if x.event.namespace == "beta")
        ]
        for projection in projections.live:
            projection.apply(again, [], again[-1].sequence)
        assert projections.vectors.search(namespace="beta", text=SECRET, top_k=5)
        assert projections.tables.duplicates_seen() == 0
        assert projections.learner.read(lambda s: ("beta", "testing") in s.workflows)
    finally:
        projections.close()


def test_a_states_holds_is_what_its_forget_removes() -> None:
    """The learner's and the session compactor's ``holds(ns)`` (what a purge's check of a
    snapshot asks them) are true for every tenant whose events they applied, false for one
    they never saw, and false for a tenant once ``forget`` took it out (the others still held)."""
    items = _renumber([*_tenant("alpha", 0), *_tenant("beta", 100)])
    learner, sessions = LearnerProjection(None), SessionCompactor(None)
    for projection in (learner, sessions):
        projection.apply(items, [], items[-1].sequence)
        assert projection.read(lambda s: (s.holds("alpha"), s.holds("beta"), s.holds("gamma"))) == (
            True,
            True,
            False,
        )
    learner.state.forget("beta")
    sessions.state.forget("beta")
    for projection in (learner, sessions):
        assert projection.read(lambda s: (s.holds("alpha"), s.holds("beta"))) == (True, False)


# -- the pieces ----------------------------------------------------------------------------------


def test_seen_ids_forget_one_owner_and_its_repeats() -> None:
    """SeenIds records which namespace used each id first; forgetting one takes its ids and
    its repeats out and leaves the others'."""
    seen = SeenIds()
    assert seen.first("a1", "alpha") and seen.first("b1", "beta") and seen.first("b2", "beta")
    assert not seen.first("a1", "beta") and not seen.first("b1", "alpha")
    assert (seen.duplicates, seen.duplicates_of("beta")) == (2, 1)
    assert seen.forget("beta") == 2
    assert event_key("a1") in seen and event_key("b1") not in seen
    assert (seen.duplicates, seen.owners()) == (1, ["alpha"])
    assert seen.first("b1", "beta")  # a first occurrence again
    assert np.array_equal(seen.owned("beta"), np.asarray([event_key("b1")], dtype=np.uint64))


@pytest.mark.parametrize(
    ("subject", "body", "belongs"),
    [
        ("memory.workflow.executed.beta", b"not json", True),
        ("memory.workflow.executed.alpha", b'{"namespace": "beta"}', False),
        ("memory.workflow.executed", b'{"namespace": "beta"}', True),
        ("memory.workflow.executed", b'{"namespace": "alpha"}', False),
        ("memory.workflow.executed", b"{", False),
        ("memory.namespace.purged.beta", b"{}", True),
        ("other.workflow.executed.beta", b"{}", False),
    ],
)
def test_which_messages_belong_to_the_purged_tenant(
    subject: str, body: bytes, belongs: bool
) -> None:
    """A message is the tenant's on one of its v2 subjects, or on a v1 subject with a body that
    names it; nothing else (another tenant's subject, a body that is no JSON object)."""
    assert belongs_to(purge_of("beta"), subject, body) is belongs


def test_subject_matching_and_body_namespaces() -> None:
    """NATS wildcards as the server reads them; a body without a namespace is the default's."""
    assert subject_matches("memory.*.*", "memory.a.b")
    assert not subject_matches("memory.*.*", "memory.a.b.c")
    assert subject_matches("memory.>", "memory.a.b.c")
    assert not subject_matches("memory.>", "memory")
    assert body_namespace(json.dumps({"type": "x"}).encode()) == "default"
    assert body_namespace(b"[1]") is None
