"""Vectors of recently embedded texts, so a request does not embed the same texts again."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from projections.embedders import Embedder
from projections.embedders.base import FloatMatrix

__all__ = ["TextVectorCache"]


class TextVectorCache:
    """``embedder.embed(texts)`` that embeds only the texts it has not seen lately.

    The operational tier describes the same recent events on every request; embedding them is
    most of an assembled context's cost. Embedders are deterministic per text (their contract),
    so a cached row is the row ``embed`` would return. Entries are keyed by embedder name, so a
    switch of embedder never mixes vectors; the least recently used go beyond ``capacity``.
    Thread-safe: requests are answered on worker threads.
    """

    def __init__(self, capacity: int = 4_096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._rows: OrderedDict[tuple[str, str], FloatMatrix] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> FloatMatrix:
        """One row per text, in order, shape ``(len(texts), embedder.dimension)``."""
        name = embedder.name
        rows: dict[str, FloatMatrix] = {}
        with self._lock:
            for text in texts:
                row = self._rows.get((name, text))
                if row is not None:
                    self._rows.move_to_end((name, text))
                    rows[text] = row
        missing = [text for text in dict.fromkeys(texts) if text not in rows]
        if missing:
            fresh = embedder.embed(missing)
            with self._lock:
                for text, row in zip(missing, fresh, strict=True):
                    rows[text] = self._rows[(name, text)] = row.copy()
                while len(self._rows) > self.capacity:
                    self._rows.popitem(last=False)
        if not texts:
            return np.zeros((0, embedder.dimension), dtype=np.float32)
        return np.vstack([rows[text] for text in texts])
