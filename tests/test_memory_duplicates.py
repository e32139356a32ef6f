"""Duplicate memories collapse (issue 13, point 4): the same text stored again is one memory
whose occurrences grow, identically whatever the batching, a restart or a re-applied batch;
near-duplicates are grouped in results under the best one, with how many it stands for."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    EventData,
    KnowledgeAdded,
    MemoryRecalled,
    TaskExecuted,
    make_event,
)
from projections.embedders import HashingEmbedder
from projections.lexical.store import LEXICAL_DIR
from projections.records import SequencedEvent
from projections.vectors.index_set import MANIFEST_NAME
from projections.vectors.projection import VectorProjection

T0 = datetime(2026, 11, 20, tzinfo=UTC)
TEXTS = [
    "restarted the billing worker",
    "Restarted the  billing worker",  # the same text: case and whitespace aside
    "rotated the postgres credentials",
    "restarted the billing worker.",  # a near-duplicate (punctuation)
    "tuned the kafka consumer lag alarm",
]
QUERIES = ["billing worker", "postgres credentials", "kafka lag"]


def _sequenced(payloads: list[tuple[str, EventData]]) -> list[SequencedEvent]:
    return [
        SequencedEvent(
            i + 1, T0 + timedelta(seconds=i), make_event(data, namespace=ns, event_id=f"e{i}")
        )
        for i, (ns, data) in enumerate(payloads)
    ]


def _apply(projection: VectorProjection, items: list[SequencedEvent]) -> None:
    if items:
        projection.apply(items, [], items[-1].sequence)


def _state(projection: VectorProjection) -> dict[str, Any]:
    return {
        "memories": {k: m.to_json() for k, m in projection.memories.items()},
        "lexical": projection.lexical,
        "answers": [
            projection.search(namespace=ns, text=q, top_k=5, mode=mode)
            for q in QUERIES
            for ns in ("default", "team-a")
            for mode in ("hybrid", "vector", "lexical")
        ],
    }


def test_a_repeated_text_is_one_memory_whose_occurrences_grow() -> None:
    """A retried task (new ids; case and spacing aside the same summary) is one memory: one hit,
    three occurrences, the latest outcome; either id finds it and counts its reuse."""
    projection = VectorProjection(None, HashingEmbedder())
    items = _sequenced(
        [
            ("default", TaskExecuted(task_id="t1", execution_summary=TEXTS[0], success=False)),
            ("default", TaskExecuted(task_id="t2", execution_summary=TEXTS[1], success=False)),
            ("default", TaskExecuted(task_id="t3", execution_summary=TEXTS[0], success=True)),
            ("team-a", TaskExecuted(task_id="t4", execution_summary=TEXTS[0], success=False)),
            ("default", MemoryRecalled(memory_ids=["e1"], query="billing")),
        ]
    )
    _apply(projection, items)
    assert len(projection.memories) == 2  # one per namespace
    memory = projection.memory("e2")
    assert memory is not None and memory is projection.memory("e0")
    assert (memory.id, memory.occurrences, memory.merged_ids) == ("e0", 3, ["e1", "e2"])
    assert memory.success is True and memory.reused_count == 1
    hits = projection.search(namespace="default", text="billing worker", top_k=5)
    assert [(h["id"], h["occurrences"]) for h in hits] == [("e2", 3)]  # the latest occurrence
    assert (
        len(
            projection.search(
                namespace="default", text="billing worker", top_k=5, success_only=True
            )
        )
        == 1
    )


def test_a_retry_that_succeeded_is_shown_with_its_own_id_and_task_id(tmp_path: Path) -> None:
    """A failed task retried with the same text under a new task_id is one memory whose hit
    shows the retry: its envelope id, its task_id and its success (not the first attempt's ids
    beside the retry's outcome); the same after a save and reopen and after a replay."""
    items = _sequenced(
        [
            ("default", TaskExecuted(task_id="T-1", execution_summary=TEXTS[0], success=False)),
            (
                "default",
                TaskExecuted(task_id="T-1-retry", execution_summary=TEXTS[0], success=True),
            ),
        ]
    )
    saved = VectorProjection(tmp_path, HashingEmbedder())
    _apply(saved, items)

    def shown(projection: VectorProjection) -> list[tuple[Any, ...]]:
        hits = projection.search(namespace="default", text="billing worker", top_k=5)
        return [(h["id"], h["task_id"], h["success"], h["occurrences"]) for h in hits]

    assert shown(saved) == [("e1", "T-1-retry", True, 2)]
    saved.close()
    reopened = VectorProjection(tmp_path, HashingEmbedder())
    assert shown(reopened) == [("e1", "T-1-retry", True, 2)]
    assert reopened.memory("e0") is reopened.memory("e1")
    replayed = VectorProjection(None, HashingEmbedder())
    for item in items:
        _apply(replayed, [item])
    assert shown(replayed) == [("e1", "T-1-retry", True, 2)]


def test_keyed_memories_merge_and_supersede_by_their_keys() -> None:
    """Two decisions with the same text are one memory answering to both ids (each outcome
    reaches it); a decision logged again with another text supersedes its old version."""
    projection = VectorProjection(None, HashingEmbedder())
    logged = "use a cache for the parser"
    items = _sequenced(
        [
            ("default", DecisionLogged(decision_id="d1", actor="a", decision=logged)),
            ("default", DecisionLogged(decision_id="d2", actor="a", decision=logged.upper())),
            ("default", DecisionOutcome(decision_id="d2", success=True)),
            ("default", DecisionLogged(decision_id="d1", actor="a", decision="drop the cache")),
            ("default", DecisionOutcome(decision_id="d1", success=False)),
        ]
    )
    _apply(projection, items)
    merged, replaced = projection.memories[1], projection.memories[4]
    assert (merged.occurrences, merged.keys, merged.success) == (2, ["d2"], True)
    assert not merged.superseded  # d2 still names it
    assert (replaced.keys, replaced.success) == (["d1"], False)
    texts = [h["text"] for h in projection.search(namespace="default", text="cache", top_k=5)]
    assert sorted(texts) == sorted([logged, "drop the cache"])


def test_near_duplicates_are_grouped_under_the_best_and_top_k_still_fills() -> None:
    """Five near-identical summaries are one group (the best shown, standing for four more), and
    the other memories still fill top_k; ungrouped, every one is listed; at a stricter
    similarity only texts with the same terms are grouped."""
    projection = VectorProjection(None, HashingEmbedder())
    near = [
        "the billing worker crashed on start after the deploy",
        "the billing worker crashed on start after the deploy!",
        "The billing worker crashed, on start, after the deploy.",
        "the billing worker crashed on start after the deploy twice",
        "billing worker crashed on start after deploy",
    ]
    others = [f"billing report {n} sent to finance" for n in range(6)]
    _apply(
        projection,
        _sequenced(
            [
                ("default", TaskExecuted(task_id=f"t{i}", execution_summary=t, success=True))
                for i, t in enumerate(near + others)
            ]
        ),
    )
    hits = projection.search(namespace="default", text="billing worker crashed", top_k=4)
    assert len(hits) == 4
    assert hits[0]["text"] in near and hits[0]["duplicates"] == 4
    assert {hits[0]["id"], *hits[0]["duplicate_ids"]} == {f"e{i}" for i in range(5)}
    assert all(h["text"] in others and h["duplicates"] == 0 for h in hits[1:])
    flat = projection.search(
        namespace="default", text="billing worker crashed", top_k=4, group_duplicates=False
    )
    assert [h["text"] in near for h in flat] == [True] * 4
    strict = projection.search(
        namespace="default", text="billing worker crashed", top_k=4, duplicate_similarity=1.0
    )
    assert strict[0]["duplicates"] == 3  # "twice" adds a term: not the same terms


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["default", "team-a"]),
        st.one_of(
            st.builds(
                TaskExecuted,
                task_id=st.sampled_from(["t1", "t2"]),
                execution_summary=st.sampled_from(TEXTS),
                success=st.booleans(),
            ),
            st.builds(
                DecisionLogged,
                decision_id=st.sampled_from(["d1", "d2", "d3"]),
                actor=st.just("planner"),
                decision=st.sampled_from(TEXTS),
            ),
            st.builds(
                DecisionOutcome, decision_id=st.sampled_from(["d1", "d2"]), success=st.booleans()
            ),
            st.builds(
                KnowledgeAdded,
                kind=st.just("procedure"),
                title=st.just("runbook"),
                content=st.sampled_from(TEXTS),
                knowledge_id=st.none() | st.sampled_from(["k1", "k2"]),
            ),
            st.builds(
                MemoryRecalled,
                memory_ids=st.lists(
                    st.sampled_from([f"e{i}" for i in range(12)]), min_size=1, max_size=3
                ),
                query=st.just("q"),
            ),
        ),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.data())
def test_duplicates_collapse_identically_whatever_the_batching(
    tmp_path_factory: pytest.TempPathFactory,
    payloads: list[tuple[str, EventData]],
    data: st.DataObject,
) -> None:
    """The same events give the same records (occurrences, merged ids, keys, outcomes), the same
    lexical index and the same answers in every mode, applied in one batch or in random batches
    with restarts from the saved state between them and a batch re-applied after a restart."""
    items = _sequenced(payloads)
    whole = VectorProjection(None, HashingEmbedder())
    _apply(whole, items)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(items)), max_size=3))))
    directory = tmp_path_factory.mktemp("duplicates")
    split = VectorProjection(directory, HashingEmbedder(), save_every=1)
    start = 0
    for cut in [*cuts, len(items)]:
        _apply(split, items[start:cut])
        split.close()  # saved; a restart reopens it
        split = VectorProjection(directory, HashingEmbedder(), save_every=1)
        _apply(split, items[max(0, start - 2) : cut])  # re-applied: nothing changes
        start = cut
    assert _state(split) == _state(whole)
    split.close()


def test_a_save_from_before_collapsing_opens_with_keys_and_a_rebuilt_lexical_index(
    tmp_path: Path,
) -> None:
    """Records saved before duplicates collapsed (no occurrences, merged ids or keys) and a
    manifest naming no lexical files open as they were: live keys from ``key``, the lexical
    index rebuilt from the records, the same answers; a later repeat then merges."""
    items = _sequenced(
        [
            ("default", DecisionLogged(decision_id="d1", actor="a", decision="use a cache")),
            ("default", DecisionLogged(decision_id="d1", actor="a", decision="drop the cache")),
            ("default", TaskExecuted(task_id="t1", execution_summary=TEXTS[0], success=True)),
        ]
    )
    saved = VectorProjection(tmp_path, HashingEmbedder())
    _apply(saved, items)
    expected = _state(saved)
    saved.close()
    records = next(tmp_path.glob("memories-*.json.gz"))
    old = [
        {k: v for k, v in m.items() if k not in ("occurrences", "merged_ids", "keys")}
        for m in json.loads(gzip.decompress(records.read_bytes()))
    ]
    records.write_bytes(gzip.compress(json.dumps(old).encode()))
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    del manifest["extra"]["lexical"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    shutil.rmtree(tmp_path / LEXICAL_DIR)

    reopened = VectorProjection(tmp_path, HashingEmbedder())
    assert _state(reopened) == expected
    assert reopened.memories[2].keys == ["d1"] and reopened.memories[1].keys == []
    _apply(
        reopened,
        [
            SequencedEvent(
                4,
                T0,
                make_event(DecisionOutcome(decision_id="d1", success=True), event_id="outcome"),
            ),
            SequencedEvent(
                5,
                T0,
                make_event(
                    TaskExecuted(task_id="t2", execution_summary=TEXTS[1], success=False),
                    event_id="again",
                ),
            ),
        ],
    )
    assert reopened.memories[2].success is True
    assert reopened.memories[3].occurrences == 2 and reopened.memory("again") is not None
