"""The lexical index (issue 13, point 1), pure: tokenisation of words, identifiers, ticket ids,
dates and numbers; BM25 scores and their 0..1 similarity; filters inside the walk; the same
documents give the same index and the same scores whatever the batching; saved bytes read back
to the same index, and a missing or damaged file is rebuilt from the records."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.lexical.bm25 import BM25Params, LexicalIndex
from projections.lexical.store import LEXICAL_DIR, LexicalSet, decode, encode
from projections.lexical.tokens import stem, tokenise

WORDS = ["deploy", "billing", "postgres", "crash", "login", "cache", "queue", "parser", "the"]
DOCS = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=8).map(" ".join), min_size=1, max_size=30
)


# -- tokenisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("JIRA-123", ["jira-123", "jira", "123"]),
        ("getUserName", ["getusername", "get", "user", "nam"]),
        ("HTTPServer", ["httpserver", "http", "server"]),
        ("user_id", ["user_id", "user", "id"]),
        ("2024-05-01", ["2024-05-01", "2024", "05", "01"]),
        ("v2.3", ["v2.3", "v", "2", "3"]),
        ("3.14 and 42", ["3.14", "3", "14", "42"]),
        ("Caroline's dog", ["carolin", "dog"]),
        ("The deployments were running.", ["deployment", "run"]),
        ("src/engine/cli.py:42", ["src/engine/cli.py:42", "src", "engin", "cli", "py", "42"]),
    ],
)
def test_tokens_keep_identifiers_whole_and_in_parts(text: str, expected: list[str]) -> None:
    """Identifiers, ticket ids, dates, numbers and paths give their whole lower-cased self and
    their parts; words are case-folded, stopwords dropped and lightly stemmed."""
    assert tokenise(text) == expected


def test_word_forms_share_a_stem() -> None:
    """Plural and verb forms of a word meet (only agreement between query and memory matters)."""
    assert {stem(w) for w in ["deploy", "deploys", "deployed", "deploying"]} == {"deploy"}
    assert {stem(w) for w in ["study", "studies", "studied"]} == {"study"}
    assert {stem(w) for w in ["run", "running"]} == {"run"}
    assert stem("bus") == "bus" and stem("class") == "class"


def test_a_ticket_id_matches_exactly_before_its_prefix() -> None:
    """A query for JIRA-123 ranks the memory naming JIRA-123 above one naming JIRA-124."""
    index = LexicalIndex()
    index.add(1, tokenise("fixed JIRA-124 in the parser"))
    index.add(2, tokenise("fixed JIRA-123 in the parser"))
    hits = index.search(tokenise("JIRA-123"), 2)
    assert [h.label for h in hits] == [2, 1]
    assert hits[0].score > hits[1].score


# -- scoring ------------------------------------------------------------------------------------


def _reference_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> list[float]:
    n = len(docs)
    avg = sum(map(len, docs)) / n
    out = []
    for doc in docs:
        counts = Counter(doc)
        score = 0.0
        for term in set(query):
            df = sum(1 for d in docs if term in d)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = counts[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(doc) / avg)) if tf else 0
        out.append(score)
    return out


@settings(max_examples=60, deadline=None)
@given(DOCS, st.lists(st.sampled_from(WORDS), min_size=1, max_size=4))
def test_scores_are_okapi_bm25_and_similarities_in_0_1(docs: list[str], query: list[str]) -> None:
    """Scores equal a direct Okapi BM25 (Lucene idf); similarities are in 0..1, ordered as the
    scores, and hits come best first (ties: lower label first)."""
    params = BM25Params(k1=1.2, b=0.75)
    index = LexicalIndex(params)
    terms = [tokenise(d) for d in docs]
    for label, doc_terms in enumerate(terms):
        index.add(label, doc_terms)
    query_terms = tokenise(" ".join(query))
    hits = index.search(query_terms, len(docs))
    if not query_terms or not any(terms):
        assert hits == [] or all(h.score > 0 for h in hits)
        return
    expected = _reference_bm25(terms, query_terms, params.k1, params.b)
    assert {h.label: h.score for h in hits} == pytest.approx(
        {label: s for label, s in enumerate(expected) if s > 0}
    )
    assert all(0.0 < h.similarity <= 1.0 for h in hits)
    assert [(-h.score, h.label) for h in hits] == sorted((-h.score, h.label) for h in hits)
    scored = index.query(query_terms)
    for hit in hits:
        assert scored.similarity(hit.label) == hit.similarity


def test_similarity_is_one_for_the_query_text_and_less_for_partial_matches() -> None:
    """The query's own text scores exactly 1; a memory holding every query term and more words
    scores less; one holding half the query less still; one holding none is not a hit."""
    index = LexicalIndex()
    index.add(1, tokenise("rotate postgres credentials"))
    index.add(2, tokenise("deploy the billing service"))
    index.add(3, tokenise("tune the kafka consumer"))
    index.add(4, tokenise("postgres credentials"))
    full = index.search(tokenise("postgres credentials"), 4)
    assert [h.label for h in full] == [4, 1]
    assert full[0].similarity == pytest.approx(1.0) and 0.5 < full[1].similarity < 1.0
    half = index.search(tokenise("postgres zebra"), 4)
    assert [h.label for h in half] == [4, 1] and all(h.similarity < 0.5 for h in half)


def test_the_filter_runs_inside_the_walk_so_k_is_filled() -> None:
    """With the 40 best matches rejected by the filter, k hits still come back from below."""
    index = LexicalIndex()
    for label in range(200):
        words = "deploy billing " * (3 if label < 40 else 1) + f"item{label}"
        index.add(label, tokenise(words))
    hits = index.search(tokenise("deploy billing"), 10, accept=lambda label: label >= 40)
    assert len(hits) == 10 and all(h.label >= 40 for h in hits)
    assert [h.label for h in hits] == list(range(40, 50))  # equal scores: lower label first


@settings(max_examples=40, deadline=None)
@given(DOCS, st.data())
def test_the_same_documents_give_the_same_index_whatever_the_batching(
    docs: list[str], data: st.DataObject
) -> None:
    """Adding documents one by one, in batches, or twice (a re-applied batch) builds the same
    index with bit-identical scores; a saved index reads back identical."""
    whole = LexicalSet()
    for label, text in enumerate(docs):
        whole.add("ns", label, text)
    split = LexicalSet()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(docs)), max_size=4)))
    start = 0
    for cut in [*cuts, len(docs)]:
        for label in range(start, max(start, cut)):
            split.add("ns", label, docs[label])
        for label in range(0, max(start, cut)):  # a crash re-applies what was applied
            split.add("ns", label, docs[label])
        start = max(start, cut)
    assert split == whole
    index = whole.get("ns")
    assert index is not None
    restored = decode(encode(index))
    assert restored == index and encode(restored) == encode(index)
    query = tokenise("deploy billing crash")
    assert restored.search(query, 50) == index.search(query, 50)


# -- saving -------------------------------------------------------------------------------------


def _documents() -> list[tuple[str, int, str]]:
    return [
        ("alpha", 1, "rotated the postgres credentials"),
        ("beta", 2, "tuned the kafka consumer lag"),
        ("alpha", 3, "deployed billing with JIRA-77"),
    ]


def test_a_save_reads_back_and_only_changed_namespaces_are_rewritten(tmp_path: Path) -> None:
    """Saved per namespace, loaded back equal; a later save rewrites only the namespace that
    changed, keeps the other's file, and the stale file goes."""
    lexical = LexicalSet.rebuild(_documents())
    first = lexical.save(tmp_path, 3)
    assert LexicalSet.load(tmp_path, first, []) == lexical
    lexical.add("alpha", 4, "the postgres role was dropped")
    second = lexical.save(tmp_path, 4)
    assert second["files"]["beta"] == first["files"]["beta"]
    assert second["files"]["alpha"] != first["files"]["alpha"]
    LexicalSet.remove_stale(tmp_path, second)
    assert sorted(p.name for p in (tmp_path / LEXICAL_DIR).iterdir()) == sorted(
        second["files"].values()
    )
    assert LexicalSet.load(tmp_path, second, []) == lexical


@pytest.mark.parametrize("damage", ["missing", "flipped", "no entry", "other tokeniser"])
def test_a_missing_or_damaged_save_is_rebuilt_from_the_records(tmp_path: Path, damage: str) -> None:
    """The index is a function of the memory records: whatever is wrong with its files, loading
    rebuilds the same index from the records saved beside them."""
    lexical = LexicalSet.rebuild(_documents())
    entry: dict[str, object] | None = lexical.save(tmp_path, 3)
    assert entry is not None
    path = tmp_path / LEXICAL_DIR / entry["files"]["alpha"]  # type: ignore[index]
    if damage == "missing":
        path.unlink()
    elif damage == "flipped":
        body = bytearray(path.read_bytes())
        body[len(body) // 2] ^= 0xFF
        path.write_bytes(bytes(body))
    elif damage == "no entry":
        entry = None
    else:
        entry = {**entry, "tokeniser": 0}
    assert LexicalSet.load(tmp_path, entry, _documents()) == lexical
