"""Terms of execution summaries, for success and failure indicators (pure, deterministic)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["summary_terms"]

_WORD = re.compile(r"[a-z][a-z0-9_\-]{2,}")
_STOP: Final = frozenset(
    (
        "the and for with that this from into onto was were has have had not but are our you "
        "your its all any can could should would will may might been being than then them they "
        "their there here when what which who whom how why while after before over under again "
        "once only also very just more most some such each other same both few own too did does "
        "doing done about above below between during through against off out task tasks using "
        "used use via per"
    ).split()
)


def summary_terms(text: str) -> frozenset[str]:
    """The distinct content words of ``text`` (lowercase, 3+ chars, no stop words)."""
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)
