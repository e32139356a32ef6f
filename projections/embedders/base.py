"""The embedder port: turn texts into L2-normalised float32 vectors of a fixed dimension."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Embedder", "FloatMatrix", "batched", "l2_normalise"]

FloatMatrix = npt.NDArray[np.float32]
"""A ``(n, dimension)`` float32 array, one row per text."""


class Embedder(ABC):
    """Maps texts to vectors; the index records ``name`` and ``dimension`` of what built it.

    Contract for every implementation:

    - ``embed(texts)`` returns a C-contiguous float32 array of shape ``(len(texts), dimension)``;
      an empty ``texts`` gives shape ``(0, dimension)``.
    - Every row has L2 norm 1, except the row of a text with nothing to embed (for instance the
      empty string for the hashing embedder), which is all zeros: it is similar to nothing.
    - The same text gives the same vector on every call and in every process (no salting).
    - Texts are processed in batches of ``batch_size``; callers may pass any number at once.
    """

    batch_size: int = 64

    @property
    @abstractmethod
    def name(self) -> str:
        """Stable identifier recorded in the index metadata (changing it forces a reindex)."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of every vector this embedder returns."""

    @abstractmethod
    def _embed_batch(self, texts: Sequence[str]) -> FloatMatrix:
        """Embed one batch (at most ``batch_size`` texts); rows need not be normalised yet."""

    def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """Embed ``texts`` batch by batch; returns L2-normalised float32 rows (see the class)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one str: use embed_one()")
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [self._embed_batch(batch) for batch in batched(texts, self.batch_size)]
        matrix = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return l2_normalise(matrix)

    def embed_one(self, text: str) -> FloatMatrix:
        """Embed a single text; returns a 1-D float32 vector of length ``dimension``."""
        row: FloatMatrix = self.embed([text])[0]
        return row

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dimension={self.dimension})"


def batched(texts: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Yield consecutive slices of ``texts`` of at most ``size`` items (``size`` >= 1)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(texts), size):
        yield texts[start : start + size]


def l2_normalise(matrix: npt.ArrayLike) -> FloatMatrix:
    """Return ``matrix`` as C-contiguous float32 with unit-norm rows; all-zero rows stay zero."""
    out = np.array(matrix, dtype=np.float32, order="C", copy=True)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out
