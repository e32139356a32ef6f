"""Embedders: texts to normalised vectors (``hashing`` by default, three all-MiniLM-L6-v2 ones)."""

from projections.embedders.base import Embedder, FloatMatrix, l2_normalise
from projections.embedders.hashing import HashingEmbedder
from projections.embedders.minilm import MiniLMEmbedder
from projections.embedders.registry import DEFAULT_EMBEDDER, get_embedder, known_embedders

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "FloatMatrix",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "get_embedder",
    "known_embedders",
    "l2_normalise",
]
