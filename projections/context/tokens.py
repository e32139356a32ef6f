"""Token counting for context budgets: pluggable and offline (nothing is downloaded).

The default estimates tokens the way BPE tokenizers of English text tend to come out: about one
token per four characters, and never fewer than the number of words and punctuation marks. It
errs on the high side, so a budget it respects holds for real tokenizers within a few percent.
Plug in an exact counter (any callable ``str -> int`` wrapped in ``CallableTokenCounter``) when
the model's tokenizer is installed locally.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Protocol

__all__ = ["CallableTokenCounter", "HeuristicTokenCounter", "TokenCounter"]

_PIECES = re.compile(r"\w+|[^\w\s]")


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class HeuristicTokenCounter:
    """max(ceil(chars / 4), words + punctuation marks): a conservative offline estimate."""

    name = "heuristic-chars4"

    def count(self, text: str) -> int:
        if not text:
            return 0
        return max(math.ceil(len(text) / 4), len(_PIECES.findall(text)))


class CallableTokenCounter:
    """Wraps an exact tokenizer's counting function."""

    def __init__(self, name: str, count: Callable[[str], int]) -> None:
        self.name = name
        self._count = count

    def count(self, text: str) -> int:
        return self._count(text)
