"""Embedders by name: the one place that maps a configured name to a constructor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import UnknownEmbedderError
from projections.embedders.base import Embedder
from projections.embedders.hashing import HashingEmbedder

__all__ = ["DEFAULT_EMBEDDER", "get_embedder", "known_embedders"]

DEFAULT_EMBEDDER = "hashing"


def _minilm(**options: Any) -> Embedder:
    # Imported here so that asking for "hashing" never touches the semantic module's imports.
    from projections.embedders.minilm import MiniLMEmbedder

    return MiniLMEmbedder(**options)


def _minilm_numpy(**options: Any) -> Embedder:
    from projections.embedders.minilm_numpy import MiniLMNumpyEmbedder

    return MiniLMNumpyEmbedder(**options)


def _minilm_onnx(**options: Any) -> Embedder:
    from projections.embedders.minilm_onnx import MiniLMOnnxEmbedder

    return MiniLMOnnxEmbedder(**options)


_FACTORIES: dict[str, Callable[..., Embedder]] = {
    "hashing": HashingEmbedder,
    "minilm": _minilm,
    "minilm-numpy": _minilm_numpy,
    "minilm-onnx": _minilm_onnx,
}


def known_embedders() -> tuple[str, ...]:
    """Names ``get_embedder`` accepts, sorted."""
    return tuple(sorted(_FACTORIES))


def get_embedder(name: str, **options: Any) -> Embedder:
    """Build the embedder registered as ``name`` with its constructor ``options``.

    Raises UnknownEmbedderError listing the known names when ``name`` is not one of them, and
    EmbedderUnavailableError (from ``minilm``, ``minilm-numpy`` and ``minilm-onnx``) when the
    packages they need are not installed.
    Each call builds a new instance: callers that embed often should keep theirs.
    """
    key = name.strip().lower()
    factory = _FACTORIES.get(key)
    if factory is None:
        raise UnknownEmbedderError(
            f"unknown embedder {name!r}; known embedders: {', '.join(known_embedders())}"
        )
    return factory(**options)
