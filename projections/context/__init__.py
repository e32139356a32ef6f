"""Context for agents: token counting, assembly under a budget, the operational tier."""

from projections.context.assembly import TIERS, Candidate, assemble
from projections.context.recent import RecentEvents
from projections.context.tokens import CallableTokenCounter, HeuristicTokenCounter, TokenCounter

__all__ = [
    "TIERS",
    "CallableTokenCounter",
    "Candidate",
    "HeuristicTokenCounter",
    "RecentEvents",
    "TokenCounter",
    "assemble",
]
