"""Hybrid search (issue 13, point 2) on the memory projection: each mode's scores are in 0..1
and ordered, hybrid never returns another namespace's memory, filters fill top_k inside both
retrievers, the threshold keeps its meaning, and words the vectors blur (a ticket id) are found."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from engine import MemoryClient
from engine.errors import EngramError, UsageError
from engine.events import DecisionLogged, KnowledgeAdded, TaskExecuted, make_event
from engine.settings import Settings
from engine.stream import EventLog
from projections.embedders import HashingEmbedder
from projections.records import SequencedEvent
from projections.vectors.projection import VectorProjection
from tests.cli_runs import engram
from tests.engines import running, settle

T0 = datetime(2026, 11, 20, tzinfo=UTC)
MODES = ("hybrid", "vector", "lexical")
WORDS = [
    "deploy",
    "billing",
    "postgres",
    "credentials",
    "crash",
    "login",
    "cache",
    "kafka",
    "lag",
    "parser",
    "JIRA-101",
    "JIRA-102",
    "getUserName",
    "2026-01-15",
]
TEXTS = st.lists(st.sampled_from(WORDS), min_size=1, max_size=7).map(" ".join)
QUERIES = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
_ids = itertools.count()


def _apply(projection: VectorProjection, events: Sequence[Any]) -> None:
    start = max(projection.memories, default=0) + 1
    items = [SequencedEvent(start + i, T0 + timedelta(seconds=i), e) for i, e in enumerate(events)]
    projection.apply(items, [], items[-1].sequence)


def _task(text: str, namespace: str = "default", success: bool = True, **extra: Any) -> Any:
    return make_event(
        TaskExecuted(task_id=f"t{next(_ids)}", execution_summary=text, success=success, **extra),
        namespace=namespace,
        event_id=f"e{next(_ids)}",
    )


def _projection(texts: Sequence[tuple[str, str]]) -> VectorProjection:
    projection = VectorProjection(None, HashingEmbedder())
    _apply(projection, [_task(text, ns, success=i % 2 == 0) for i, (ns, text) in enumerate(texts)])
    return projection


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), TEXTS), min_size=1, max_size=30), QUERIES)
def test_every_mode_scores_in_0_1_and_orders_by_them(
    memories: list[tuple[str, str]], query: str
) -> None:
    """In every mode, near-duplicates grouped or not, similarity_score is in 0..1 and hits come
    most similar first; a memory that is the query's own text scores (about) 1 in each."""
    projection = _projection([*memories, ("A", query)])
    for mode, grouped in itertools.product(MODES, (True, False)):
        hits = projection.search(
            namespace="A", text=query, top_k=50, mode=mode, group_duplicates=grouped
        )
        scores = [h["similarity_score"] for h in hits]
        assert all(0.0 <= s <= 1.0 for s in scores), (mode, scores)
        assert scores == sorted(scores, reverse=True), mode
        if not grouped:
            own = [h for h in hits if h["text"] == query]
            assert own and own[0]["similarity_score"] >= 0.9, (mode, own)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), TEXTS), min_size=1, max_size=30),
    QUERIES,
    st.sampled_from(MODES),
    st.booleans(),
    st.none() | st.sampled_from([["tasks"], ["decisions"], ["tasks", "knowledge"]]),
)
def test_no_search_in_a_returns_another_namespaces_memory(
    memories: list[tuple[str, str]],
    query: str,
    mode: str,
    success_only: bool,
    collections: list[str] | None,
) -> None:
    """Whatever is stored in A, B and C and however A is searched (every mode, filters,
    collections), only A's memories come back: B's exact words included."""
    projection = VectorProjection(None, HashingEmbedder())
    events = []
    for i, (ns, text) in enumerate(memories):
        if i % 3 == 2:
            events.append(
                make_event(
                    DecisionLogged(decision_id=f"d{i}", actor="a", decision=text),
                    namespace=ns,
                    event_id=f"d-{ns}-{i}",
                )
            )
        else:
            events.append(_task(text, ns, success=i % 2 == 0))
    _apply(projection, events)
    a_ids = {
        eid
        for m in projection.memories.values()
        if m.namespace == "A"
        for eid in [m.id, *m.merged_ids]
    }
    for text in {t for _, t in memories} | {query}:
        hits = projection.search(
            namespace="A",
            text=text,
            top_k=50,
            mode=mode,
            success_only=success_only,
            collections=collections,
        )
        assert all(h["namespace"] == "A" and h["id"] in a_ids for h in hits)
        assert all(i in a_ids for h in hits for i in h["duplicate_ids"])


@pytest.mark.parametrize("mode", MODES)
def test_filters_fill_top_k_when_enough_memories_match(mode: str) -> None:
    """The best matches fail the filters (failed tasks, another task type, another collection);
    top_k is still filled from the memories that pass, in every mode."""
    projection = VectorProjection(None, HashingEmbedder())
    close = "rotated the postgres credentials for the billing service"
    events = [_task(f"{close} attempt {i}", success=False) for i in range(60)]
    events += [
        _task(f"postgres credentials note {i} for service {i}", task_type="ops") for i in range(12)
    ]
    events += [
        make_event(
            KnowledgeAdded(kind="procedure", title=f"postgres {i}", content=close),
            event_id=f"k{i}",
        )
        for i in range(30)
    ]
    _apply(projection, events)
    for filters in (
        {"success_only": True},
        {"task_type": "ops"},
        {"collections": ["tasks"], "success_only": True},
    ):
        hits = projection.search(text=close, namespace="default", top_k=10, mode=mode, **filters)
        assert len(hits) == 10, (mode, filters)
        assert all(h["success"] is True and h["collection"] == "tasks" for h in hits)
    ops = projection.search(text=close, namespace="default", top_k=10, mode=mode, task_type="ops")
    assert {h["task_type"] for h in ops} == {"ops"}
    knowledge = projection.search(
        text=close, namespace="default", top_k=25, mode=mode, collections=["knowledge"]
    )
    assert len(knowledge) == 25 and {h["collection"] for h in knowledge} == {"knowledge"}


def test_the_threshold_applies_to_the_score_shown_in_every_mode() -> None:
    """similarity_threshold drops exactly the hits scoring below it, in every mode."""
    projection = _projection(
        [("default", t) for t in ["postgres credentials rotated", "kafka lag alarm", "login"]]
    )
    for mode in MODES:
        every = projection.search(
            namespace="default", text="postgres credentials", top_k=10, mode=mode
        )
        cut = every[0]["similarity_score"] - 1e-6
        above = projection.search(
            namespace="default",
            text="postgres credentials",
            top_k=10,
            mode=mode,
            similarity_threshold=cut,
        )
        assert above == [h for h in every if h["similarity_score"] >= cut]
        assert 1 <= len(above) < len(every) or len(every) == 1


def test_hybrid_finds_the_exact_ticket_the_vectors_blur() -> None:
    """Among near-identical summaries, the one naming the asked ticket id comes first in hybrid
    and lexical mode (the words decide), and hybrid scores it above the vector mode does."""
    projection = _projection(
        [("default", f"fixed the flaky parser test in JIRA-{n}") for n in range(100, 140)]
    )
    for mode in ("hybrid", "lexical"):
        hits = projection.search(namespace="default", text="JIRA-117", top_k=3, mode=mode)
        assert hits[0]["text"].endswith("JIRA-117"), mode


def test_modes_are_checked() -> None:
    """An unknown mode, a lexical search without text or a bad threshold is a UsageError."""
    projection = _projection([("default", "postgres credentials")])
    with pytest.raises(UsageError, match="mode"):
        projection.search(namespace="default", text="x", mode="semantic")
    with pytest.raises(UsageError, match="lexical"):
        projection.search(namespace="default", vector=[0.0] * 384, mode="lexical")
    with pytest.raises(UsageError, match="threshold"):
        projection.search(namespace="default", text="x", similarity_threshold=1.5)


def test_a_vector_only_hybrid_search_is_a_vector_search() -> None:
    """Without text, hybrid has no words to match: it answers as the vector mode does; with
    both text and vector, the vector is used for the vector half (not embedded again)."""
    projection = _projection([("default", t) for t in ["postgres credentials", "kafka lag"]])
    vector = HashingEmbedder().embed(["postgres credentials"])[0].tolist()
    assert projection.search(namespace="default", vector=vector) == projection.search(
        namespace="default", vector=vector, mode="vector"
    )
    both = projection.search(namespace="default", text="postgres credentials", vector=vector)
    assert both == projection.search(namespace="default", text="postgres credentials")


def test_grouped_search_deepens_only_to_its_bound() -> None:
    """When near-duplicates cannot fill top_k, a grouped search asks each retriever for at most
    max(4 * top_k, 2000) candidates and returns the groups found, instead of deepening (x4)
    until the retrievers run out (every memory of the namespace)."""
    import random

    from projections.lexical.bm25 import ScoredQuery
    from projections.vectors.retrieval import MAX_DEPTH_FLOOR

    rng = random.Random(5)
    words = WORDS[:10]
    texts = {" ".join(rng.sample(words, 5)) for _ in range(6000)}  # 252 bags of 5 words
    assert len(texts) > 2 * MAX_DEPTH_FLOOR
    projection = VectorProjection(None, HashingEmbedder())
    _apply(projection, [_task(text) for text in sorted(texts)])
    asked: list[int] = []
    vector_search, lexical_top = projection.indexes.search, ScoredQuery.top

    def spy_vector(*args: Any, **kwargs: Any) -> Any:
        asked.append(args[1])
        return vector_search(*args, **kwargs)

    def spy_lexical(self: ScoredQuery, k: int, *args: Any) -> Any:
        asked.append(k)
        return lexical_top(self, k, *args)

    projection.indexes.search = spy_vector  # type: ignore[method-assign]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ScoredQuery, "top", spy_lexical)
        for mode in MODES:
            asked.clear()
            hits = projection.search(
                namespace="default", text="billing deploy", top_k=300, mode=mode
            )
            assert 0 < len(hits) < 300, mode
            assert asked and max(asked) == max(4 * 300, MAX_DEPTH_FLOOR), (mode, asked)


def test_a_query_without_lexical_terms_is_ranked_by_the_vectors_alone() -> None:
    """A query of stopwords only has no lexical similarity: hybrid scores by the vector one
    alone (the query's own text scores exactly 1, as in vector mode) and lexical finds nothing."""
    projection = _projection(
        [("default", t) for t in ["the of and", "postgres credentials rotated", "kafka lag"]]
    )
    hybrid = projection.search(namespace="default", text="the of and", top_k=5)
    vector = projection.search(namespace="default", text="the of and", top_k=5, mode="vector")
    assert hybrid[0]["text"] == "the of and" and hybrid[0]["similarity_score"] == 1.0
    assert hybrid == vector
    assert projection.search(namespace="default", text="the of and", mode="lexical") == []


def test_a_hit_with_nothing_in_common_is_never_returned() -> None:
    """A memory scoring 0 (no word, no vector direction shared with the query) is not a hit in
    any mode, even at similarity_threshold 0, grouped or not."""
    projection = _projection([("default", "unrelated billing work")])
    for mode, grouped in itertools.product(MODES, (True, False)):
        hits = projection.search(
            namespace="default",
            text="zookeeper",
            mode=mode,
            similarity_threshold=0.0,
            group_duplicates=grouped,
        )
        assert hits == [], (mode, grouped)


@pytest.mark.slow
async def test_the_mode_reaches_the_engine_from_the_sdk_the_cli_and_the_verb(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Over NATS: search_similar, find_similar_decisions and get_task_context take ``mode``; the
    working tier of assemble_context is hybrid (the asked ticket first); ``engram search
    --mode`` asks the engine; a bad mode is an error reply, not a crash."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        for n in range(100, 130):
            await memory.store_execution(
                task_id=f"t{n}",
                execution_summary=f"fixed the flaky parser test in JIRA-{n}",
                success=True,
            )
        await memory.log_decision(
            decision_id="d1", actor="planner", decision="cache the parser tables in JIRA-117"
        )
        await settle(engine)
        for mode in ("hybrid", "lexical"):
            hits = await memory.search_similar("JIRA-117", top_k=3, mode=mode)
            assert hits[0].text.endswith("JIRA-117"), mode
            assert all(0.0 <= h.similarity_score <= 1.0 for h in hits)
        vector = await memory.search_similar("JIRA-117", top_k=3, mode="vector")
        assert len(vector) == 3 and {h.collection for h in vector} <= {"tasks", "decisions"}
        decisions = await memory.find_similar_decisions("parser tables", mode="lexical")
        assert [d.text for d in decisions] == ["cache the parser tables in JIRA-117"]
        context = await memory.get_task_context("the parser test of JIRA-121", mode="lexical")
        assert context.similar_tasks[0].text.endswith("JIRA-121")
        assembled = await memory.assemble_context("JIRA-123", tiers=["working", "longterm"])
        assert assembled.chunks[0].text.endswith("JIRA-123")
        with pytest.raises(EngramError, match="mode"):
            await memory.search_similar("x", mode="semantic")  # type: ignore[arg-type]
        conn = ["--nats-url", str(settings.nats.url), "--stream", settings.stream.name]
        run = await engram(
            "search",
            "JIRA-111",
            "--mode",
            "lexical",
            "--top-k",
            "2",
            "--json",
            *conn,
            cwd=tmp_path,
        )
        assert run.code == 0, run.err
        assert run.json()["hits"][0]["text"].endswith("JIRA-111")
