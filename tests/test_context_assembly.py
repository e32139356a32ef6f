"""Context assembly never exceeds its budget, prefers relevance, and labels every chunk."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from projections.context import TIERS, Candidate, HeuristicTokenCounter, assemble

COUNTER = HeuristicTokenCounter()

candidates = st.lists(
    st.builds(
        Candidate,
        tier=st.sampled_from(TIERS),
        source=st.sampled_from(["task_executions", "knowledge", "patterns", "recent_events"]),
        text=st.text(min_size=1, max_size=300),
        relevance=st.floats(0, 1),
        event_id=st.none() | st.uuids().map(str),
        sequence=st.none() | st.integers(1, 10_000),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(candidates, st.integers(0, 2_000))
def test_never_exceeds_the_budget(items: list[Candidate], budget: int) -> None:
    """For any memories and any budget, total_tokens <= max_tokens and equals the chunk sum."""
    result = assemble("task", items, budget, COUNTER)
    assert result["total_tokens"] <= budget
    assert result["total_tokens"] == sum(c["tokens"] for c in result["chunks"])
    assert all(c["tokens"] == COUNTER.count(c["text"]) for c in result["chunks"])


@settings(max_examples=300, deadline=None)
@given(candidates, st.integers(0, 2_000))
def test_a_skipped_chunk_did_not_fit_or_was_a_duplicate(
    items: list[Candidate], budget: int
) -> None:
    """Relevance first: any candidate left out was a duplicate, blank, or too big for what the
    more relevant chunks left; chunks come out in non-increasing relevance."""
    result = assemble("task", items, budget, COUNTER)
    chosen_texts = {c["text"] for c in result["chunks"]}
    relevances = [c["relevance"] for c in result["chunks"]]
    assert relevances == sorted(relevances, reverse=True)
    for item in items:
        if item.text in chosen_texts or not item.text.strip():
            continue
        more_relevant = sum(
            c["tokens"] for c in result["chunks"] if c["relevance"] >= round(item.relevance, 6)
        )
        assert more_relevant + COUNTER.count(item.text) > budget


@given(candidates)
def test_every_chunk_says_its_tier_and_source(items: list[Candidate]) -> None:
    """Each chunk names its tier (one of the three), its source and the event it came from."""
    for chunk in assemble("task", items, 10_000, COUNTER)["chunks"]:
        assert chunk["tier"] in TIERS
        origins = {
            (i.tier, i.source, i.event_id, i.sequence) for i in items if i.text == chunk["text"]
        }
        assert (chunk["tier"], chunk["source"], chunk["event_id"], chunk["sequence"]) in origins


def test_more_relevant_chunk_wins_when_only_one_fits() -> None:
    """With room for one of two equal-sized chunks, the more relevant one is chosen."""
    low = Candidate("longterm", "knowledge", "a" * 40, 0.2, "e1", 1)
    high = Candidate("working", "task_executions", "b" * 40, 0.9, "e2", 2)
    result = assemble("task", [low, high], 10, COUNTER)
    assert [c["event_id"] for c in result["chunks"]] == ["e2"]
    assert result["total_tokens"] == 10


def test_token_counter_is_conservative() -> None:
    """The heuristic counts at least one token per word and per punctuation mark."""
    assert COUNTER.count("") == 0
    assert COUNTER.count("a b c d e f") == 6
    assert COUNTER.count("x" * 400) == 100
