"""The Embedder contract (projections/embedders/base.py), run against every registered embedder.

Each embedder is built once for the module (the MiniLM ones load a model); one that needs an
extra that is not installed is skipped with the reason (CI installs them all). Checks that
only one implementation has (paraphrase quality, a fresh interpreter without torch, the
tokenizer, the weights check) stay in that implementation's test file.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import EmbedderUnavailableError
from projections.embedders import Embedder, get_embedder, known_embedders

pytestmark = pytest.mark.timeout(300)

TEXTS = [
    "Fixed the login timeout bug in the authentication service",
    "Fixed a login timeout bug in the auth service",
    "Deployed the quarterly churn dashboard to the analytics cluster",
    "Caroline: I went to a support group yesterday and it was so powerful!",
    "JIRA-4312: rename camelCaseHandler to snake_case_handler in v2.3.1 (2024-05-01T10:00Z)",
    "Déjà vu: naïve façade — 東京 データ 😀 ΣΊΣΥΦΟΣ İstanbul ﬁ",
    "fix the [MASK] token and [CLS] and [cls] handling",
    "tab\there\nnewline\x0bvt\xa0nbsp\u3000ideographic\u200bzero-width \ufffd \x00",
    "supercalifragilisticexpialidocious " + "x" * 150,
    "a " * 300,  # past the 256-token window of the MiniLM models: truncated
    "the incident review " * 2_000,  # 40,000 characters
    "",
    "   ",
]
NOTHING = frozenset({"", "   "})
"""Texts with nothing to embed for an embedder that reads words."""

EMPTY_IS_ZERO = frozenset({"hashing"})
"""Embedders whose vector for a text with nothing to embed is all zeros (similar to nothing);
the MiniLM ones embed [CLS] [SEP], a real unit vector."""

BIT_EXACT = frozenset({"hashing", "minilm-numpy", "minilm-onnx"})
"""Embedders whose vectors do not depend on the batch bit for bit; minilm (torch) pads a batch
to its longest text, which moves the last bits."""

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=known_embedders())
def embedder(request: pytest.FixtureRequest) -> Embedder:
    """Each registered embedder, built once for this module (skipped when its extra is not
    installed: the reason names it)."""
    try:
        return get_embedder(request.param)
    except EmbedderUnavailableError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def vectors(embedder: Embedder) -> np.ndarray:
    """TEXTS embedded in one call (shared by the checks that only read it)."""
    return embedder.embed(TEXTS)


def _same(embedder: Embedder, actual: np.ndarray, expected: np.ndarray) -> None:
    if embedder.name in BIT_EXACT:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, atol=TOLERANCE)


def test_name_is_its_registry_key_and_rebuilds_the_same_embedder(embedder: Embedder) -> None:
    """The vector index records ``name`` and ``dimension`` and reopens with
    ``get_embedder(name)``: the name is the registry key (any case or spacing asked for) and
    rebuilds an embedder of the same name and dimension."""
    assert embedder.name in known_embedders()
    again = get_embedder(f"  {embedder.name.upper()} ")
    assert (again.name, again.dimension) == (embedder.name, embedder.dimension)
    assert repr(embedder) == f"{type(embedder).__name__}(name={embedder.name!r}, dimension=384)"


def test_rows_are_float32_of_shape_n_by_dimension(embedder: Embedder, vectors: np.ndarray) -> None:
    """embed returns a C-contiguous float32 array of shape (len(texts), dimension), every value
    finite: long, unicode, control-character and empty texts included."""
    assert embedder.dimension == 384
    assert vectors.shape == (len(TEXTS), embedder.dimension)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    assert np.isfinite(vectors).all()


def test_rows_are_unit_norm_except_a_text_with_nothing_to_embed(
    embedder: Embedder, vectors: np.ndarray
) -> None:
    """Every text with words gives a unit vector; a text with nothing to embed gives all zeros
    for the embedders that say so (hashing) and a unit vector for the others."""
    norms = dict(zip(TEXTS, np.linalg.norm(vectors, axis=1).tolist(), strict=True))
    for text, norm in norms.items():
        zero = text in NOTHING and embedder.name in EMPTY_IS_ZERO
        assert norm == (0.0 if zero else pytest.approx(1.0, abs=TOLERANCE)), repr(text[:40])


def test_different_texts_give_different_vectors(embedder: Embedder, vectors: np.ndarray) -> None:
    """The vectors depend on the text: no two of the texts with words share a vector."""
    worded = vectors[[i for i, t in enumerate(TEXTS) if t not in NOTHING]]
    similarity = worded @ worded.T
    np.fill_diagonal(similarity, 0.0)
    assert similarity.max() < 0.999


def test_no_texts_give_zero_rows(embedder: Embedder) -> None:
    """An empty list gives a (0, dimension) float32 array, not an error."""
    empty = embedder.embed([])
    assert empty.shape == (0, embedder.dimension)
    assert empty.dtype == np.float32


def test_a_bare_string_is_refused(embedder: Embedder) -> None:
    """One str (a sequence of characters) is refused instead of embedding its letters."""
    with pytest.raises(TypeError, match="embed_one"):
        embedder.embed("hello")  # a str is a Sequence[str]: only a run-time check helps


def test_the_same_text_gives_the_same_vector_in_another_instance(
    embedder: Embedder, vectors: np.ndarray
) -> None:
    """Embedding again, and with a second instance built from the registry, gives the same
    vectors (no salting, no state carried between calls)."""
    _same(embedder, embedder.embed(TEXTS), vectors)
    _same(embedder, get_embedder(embedder.name).embed(TEXTS), vectors)


def test_a_vector_does_not_depend_on_its_batch(embedder: Embedder, vectors: np.ndarray) -> None:
    """A text's vector is the same embedded alone (embed_one), in batches of 2, and in the
    reversed list: bit for bit for the embedders that promise it, within 1e-5 otherwise."""
    alone = np.stack([embedder.embed_one(text) for text in TEXTS])
    assert alone.shape == (len(TEXTS), embedder.dimension)
    batch_size = embedder.batch_size
    embedder.batch_size = 2
    try:
        in_pairs = embedder.embed(TEXTS)
    finally:
        embedder.batch_size = batch_size
    _same(embedder, alone, vectors)
    _same(embedder, in_pairs, vectors)
    _same(embedder, embedder.embed(TEXTS[::-1])[::-1], vectors)
