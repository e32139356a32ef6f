"""Context assembly under a token budget: rank candidate chunks, fill greedily.

Pure: the engine gathers candidates from the three tiers; this decides what fits. A chunk that
does not fit in the remaining budget is skipped, and smaller, less relevant ones may still fill
the rest. The total never exceeds ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_args

from engine.verbs.requests import Tier
from projections.context.tokens import TokenCounter

__all__ = ["TIERS", "Candidate", "assemble"]

TIERS: tuple[str, ...] = get_args(Tier)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A piece of memory that could go into the context."""

    tier: str
    source: str
    text: str
    relevance: float
    event_id: str | None = None
    sequence: int | None = None


def assemble(
    task_description: str,
    candidates: Iterable[Candidate],
    max_tokens: int,
    counter: TokenCounter,
) -> dict[str, Any]:
    """The AssembledContext (as a dict): chunks by relevance, total_tokens <= max_tokens.

    Ties in relevance keep the tier order (operational, working, longterm) and then sequence,
    so the result is deterministic. Duplicate texts are included once.
    """
    if max_tokens < 0:
        raise ValueError("max_tokens must be >= 0")
    order = {tier: i for i, tier in enumerate(TIERS)}
    ranked = sorted(
        candidates,
        key=lambda c: (-c.relevance, order.get(c.tier, len(TIERS)), c.sequence or 0, c.text),
    )
    chunks: list[dict[str, Any]] = []
    seen: set[str] = set()
    used = 0
    for candidate in ranked:
        if candidate.text in seen or not candidate.text.strip():
            continue
        tokens = counter.count(candidate.text)
        if used + tokens > max_tokens:
            continue
        seen.add(candidate.text)
        used += tokens
        chunks.append(
            {
                "tier": candidate.tier,
                "source": candidate.source,
                "event_id": candidate.event_id,
                "sequence": candidate.sequence,
                "text": candidate.text,
                "relevance": round(candidate.relevance, 6),
                "tokens": tokens,
            }
        )
    return {
        "task_description": task_description,
        "max_tokens": max_tokens,
        "total_tokens": used,
        "chunks": chunks,
        "token_counter": counter.name,
    }
