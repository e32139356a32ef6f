"""Random but valid event histories: the raw material of the replay/idempotency properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    KnowledgeAdded,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    make_event,
)
from engine.events.cache import CacheEvicted, CachePut
from engine.events.derived import NamespacePurged
from engine.events.items import ItemDeleted, ItemPut
from projections.records import SequencedEvent

NAMESPACES = st.sampled_from(["default", "team-a", "team-b"])
SESSIONS = st.none() | st.sampled_from(["s1", "s2", "s3"])
IDS = st.sampled_from(["d1", "d2", "d3", "k1", "k2"])
STEPS = st.lists(
    st.sampled_from(["plan", "code", "test", "review", "deploy"]), min_size=1, max_size=4
)
REQUESTS = st.none() | st.sampled_from(
    [
        "Fix the crash in the parser",
        "Deploy the API to staging",
        "Write unit tests",
        "Analyze churn by plan",
        "hello",
    ]
)
TEXT = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=20)

PAYLOADS: st.SearchStrategy[EventData] = st.one_of(
    st.builds(
        WorkflowExecuted,
        task_type=st.none() | st.sampled_from(["testing", "debugging"]),
        request=REQUESTS,
        workflow_steps=STEPS,
        success=st.booleans(),
        duration=st.floats(0, 100),
        cost=st.none() | st.floats(0, 1),
    ),
    st.builds(
        TaskExecuted,
        task_id=IDS,
        execution_summary=TEXT,
        success=st.booleans(),
        error_patterns=st.lists(TEXT, max_size=2),
    ),
    st.builds(DecisionLogged, decision_id=IDS, actor=TEXT, decision=TEXT, rationale=TEXT),
    st.builds(DecisionOutcome, decision_id=IDS, success=st.booleans(), notes=TEXT),
    st.builds(
        PatternFeedback,
        pattern_id=IDS,
        helpful=st.booleans(),
        confidence_adjustment=st.floats(-1, 1),
    ),
    st.builds(SessionStarted, session_id=st.sampled_from(["s1", "s2", "s3"])),
    st.builds(
        SessionEnded,
        session_id=st.sampled_from(["s1", "s2", "s3"]),
        success=st.none() | st.booleans(),
    ),
    st.builds(
        KnowledgeAdded,
        kind=st.sampled_from(["procedure", "incident"]),
        title=TEXT,
        content=TEXT,
        knowledge_id=st.none() | IDS,
    ),
    st.builds(
        ItemPut,
        path=st.sampled_from([["a"], ["a", "b"], ["c"]]),
        key=st.sampled_from(["k1", "k2"]),
        value=st.fixed_dictionaries({"v": st.integers(0, 3), "text": TEXT}),
        index=st.none() | st.just(False) | st.just(["text"]),
        ttl=st.none() | st.sampled_from([1.0, 60.0]),
    ),
    st.builds(
        ItemDeleted,
        path=st.sampled_from([["a"], ["a", "b"], ["c"]]),
        key=st.sampled_from(["k1", "k2"]),
    ),
    st.builds(
        CachePut,
        prompt=st.sampled_from(["plan code", "abc", "xyz gh", "Plan  CODE"]),
        response=TEXT,
        ttl=st.sampled_from([1.0, 3.0, 60.0]),  # histories step 1 s: some entries expire
        model=st.none() | st.just("m1"),
    ),
    st.builds(CacheEvicted, prompt=st.sampled_from(["plan code", "abc"])),
)

BASE_TIME = datetime(2026, 11, 20, tzinfo=UTC)


def purge_of(namespace: str) -> NamespacePurged:
    """The payload of an operator's purge of ``namespace`` (what ``engram purge`` appends)."""
    return NamespacePurged(
        namespace=namespace,
        reason="erasure request",
        first_sequence=1,
        last_sequence=1,
        messages=1,
        subject_filter=f"memory.*.*.{namespace}",
        legacy_filter="memory.*.*",
    )


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40, purges: bool = False) -> list[SequencedEvent]:
    """A history of 0..max_size events with sequences 1..n and increasing times; with
    ``purges``, about one event in twelve is a purge of its namespace."""
    payloads = draw(st.lists(PAYLOADS, max_size=max_size))
    history = []
    for index, payload in enumerate(payloads, start=1):
        when = BASE_TIME + timedelta(seconds=index)
        namespace = draw(NAMESPACES)
        if purges and draw(st.integers(0, 11)) == 0:
            payload = purge_of(namespace)
        event = make_event(
            payload,
            namespace=namespace,
            session_id=draw(SESSIONS),
            agent_id="agent",
            occurred_at=when,
            event_id=f"evt-{index}",
        )
        history.append(SequencedEvent(index, when, event))
    return history


@st.composite
def splits(draw: st.DrawFn, size: int) -> list[int]:
    """Sorted cut points splitting ``size`` items into batches."""
    if size == 0:
        return []
    return sorted(set(draw(st.lists(st.integers(1, size), max_size=6))))


@st.composite
def repeated(
    draw: st.DrawFn, max_size: int = 25, purges: bool = False
) -> tuple[list[SequencedEvent], int]:
    """A history in which some envelope ids occur again later, anywhere after their first
    occurrence, either as the same envelope (a re-send) or with other content (a second
    publisher reusing the id). Returns the history (sequences 1..n) and how many repeats.
    With ``purges``, some events purge their namespace (``histories``)."""
    base = draw(histories(max_size=max_size, purges=purges))
    if not base:
        return [], 0
    n = len(base)
    spec = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.booleans(), PAYLOADS)
    placed: list[tuple[tuple[int, int, int], Event]] = [
        ((i, 0, 0), item.event) for i, item in enumerate(base)
    ]
    for r, (source, after, same, payload) in enumerate(draw(st.lists(spec, max_size=10))):
        after = max(after, source)  # a repeat comes after its first occurrence
        original = base[source].event
        event = original
        if not same:
            event = make_event(
                payload,
                namespace=draw(NAMESPACES),
                session_id=original.session_id,
                agent_id="agent",
                occurred_at=base[after].event.occurred_at,
                event_id=original.id,
            )
        placed.append(((after, 1, r), event))
    events = [event for _, event in sorted(placed, key=lambda p: p[0])]
    history = [SequencedEvent(s, e.occurred_at, e) for s, e in enumerate(events, 1)]
    return history, len(history) - n
