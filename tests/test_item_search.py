"""Item reads over the ``items`` table, without a server: the filter's semantics (Hypothesis,
against LangGraph's own InMemoryStore where that one is defined), the query ranking (its BM25
is ``projections.lexical``'s), and the readers (get, search by prefix / filter / query /
offset, namespaces with prefix / suffix / max_depth, expiry at read time)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumers.queries.item_ranking import ItemTextCache, bm25_similarities, rank_texts
from consumers.queries.item_verbs import get_items, item_namespaces, search_items
from engine.events import EventData, make_event
from engine.events.items import ItemDeleted, ItemPut
from engine.item_filters import check_filter, matches
from projections.embedders import get_embedder
from projections.lexical import LexicalIndex, tokenise
from projections.records import SequencedEvent
from projections.tables import TablesProjection, TableStore

T0 = datetime(2026, 11, 20, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)

# -- the filter ---------------------------------------------------------------------------------

SCALARS = st.none() | st.integers(-3, 3) | st.sampled_from(["a", "b", "c"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner),
    max_leaves=6,
)
DOCS = st.dictionaries(st.sampled_from(["f", "g", "h"]), VALUES, max_size=3)
OPERATOR = st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"])
CONDITIONS = VALUES | st.dictionaries(OPERATOR, SCALARS, min_size=1, max_size=2)
FILTERS = st.dictionaries(st.sampled_from(["f", "g", "h"]), CONDITIONS, max_size=2)


@settings(max_examples=400, deadline=None)
@given(doc=DOCS, filter=FILTERS)
def test_the_filter_agrees_with_langgraphs_in_memory_store(
    doc: dict[str, Any], filter: dict[str, Any]
) -> None:
    """Wherever LangGraph's InMemoryStore answers (it raises comparing a missing field or a
    text with a number, where ours does not match), our filter answers the same."""
    memory = pytest.importorskip("langgraph.store.memory")
    try:
        theirs = all(memory._compare_values(doc.get(k), v) for k, v in filter.items())
    except (TypeError, ValueError):
        return
    assert matches(doc, check_filter(filter)) is theirs


@settings(max_examples=200, deadline=None)
@given(doc=DOCS, field=st.sampled_from(["f", "g", "h"]), operand=SCALARS)
def test_operators_are_consistent(doc: dict[str, Any], field: str, operand: Any) -> None:
    """A plain value is $eq; $ne is its negation; $gte is $gt or $eq and $lte is $lt or $eq on
    comparable values; a missing field equals only null."""
    eq = matches(doc, {field: {"$eq": operand}})
    assert matches(doc, {field: operand}) is eq
    assert matches(doc, {field: {"$ne": operand}}) is (not eq)
    gt, lt = matches(doc, {field: {"$gt": operand}}), matches(doc, {field: {"$lt": operand}})
    assert not (gt and lt)
    if gt or lt or (eq and operand is not None):
        assert matches(doc, {field: {"$gte": operand}}) is (gt or eq)
        assert matches(doc, {field: {"$lte": operand}}) is (lt or eq)
    if field not in doc:
        assert eq is (operand is None)


def test_json_equality_and_ordering() -> None:
    """true is not 1, 1 is 1.0, texts order by code point, a number never orders against a
    text, nested objects match field by field, lists item by item."""
    doc = {"flag": True, "n": 1, "s": "beta", "meta": {"a": 1, "b": 2}, "tags": ["x", "y"]}
    assert matches(doc, {"flag": True}) and not matches(doc, {"flag": 1})
    assert matches(doc, {"n": 1.0}) and not matches(doc, {"n": True})
    assert matches(doc, {"s": {"$gt": "alpha", "$lt": "gamma"}})
    assert not matches(doc, {"n": {"$gt": "0"}}) and not matches(doc, {"s": {"$gt": 0}})
    assert matches(doc, {"meta": {"a": 1}}) and not matches(doc, {"meta": {"a": 2}})
    assert matches(doc, {"tags": ["x", "y"]}) and not matches(doc, {"tags": ["x"]})
    assert matches(doc, {"missing": {"$ne": 3}}) and not matches(doc, {"missing": {"$gt": 0}})
    with pytest.raises(ValueError, match=r"filter\.n\.\$regex is not an operator"):
        check_filter({"n": {"$regex": "x"}})
    deep: dict[str, Any] = {"a": 1}
    for _ in range(20):
        deep = {"a": deep}
    with pytest.raises(ValueError, match="nests deeper"):
        check_filter(deep)


# -- the ranking --------------------------------------------------------------------------------

WORDS = st.sampled_from(["deploy", "release", "login", "crash", "cache", "user", "theme"])
DOCUMENTS = st.lists(st.lists(WORDS, min_size=1, max_size=8).map(" ".join), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(docs=DOCUMENTS, query=st.lists(WORDS, min_size=1, max_size=3).map(" ".join))
def test_bm25_over_candidates_is_the_lexical_index(docs: list[str], query: str) -> None:
    """The query-time BM25 similarity of each candidate is what a LexicalIndex of the same
    candidates gives (same tokeniser, same formula, same divisor)."""
    index = LexicalIndex()
    counts = []
    for label, text in enumerate(docs):
        terms = tokenise(text)
        index.add(label, terms)
        counts.append(dict(Counter(terms)))
    lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
    ours = bm25_similarities(tokenise(query), counts, lengths)
    scored = index.query(tokenise(query))
    assert ours.tolist() == pytest.approx([scored.similarity(i) for i in range(len(docs))])


def test_hybrid_ranking_puts_the_query_text_first_and_caches_vectors() -> None:
    """The candidate that is the query's text scores 1; a second search embeds nothing new."""
    embedder = get_embedder("hashing")
    cache = ItemTextCache()
    texts = ["user prefers a dark theme", "deploy the release on friday", "login crash on mobile"]
    scores = rank_texts("deploy the release on friday", texts, embedder, cache, 0.6)
    assert scores.argmax() == 1 and scores[1] == pytest.approx(1.0)
    assert cache.embedded == 3
    rank_texts("login crash", texts, embedder, cache, 0.6)
    assert cache.embedded == 3 and len(cache) == 3


# -- the readers --------------------------------------------------------------------------------


def _store(payloads: list[tuple[EventData, timedelta]]) -> TableStore:
    store = TableStore.in_memory()
    history = []
    for i, (data, at) in enumerate(payloads, start=1):
        event = make_event(data, namespace="alpha", occurred_at=T0 + at, event_id=f"e{i}")
        history.append(SequencedEvent(i, T0 + at, event))
    other = make_event(
        ItemPut(path=["docs"], key="d1", value={"kind": "beta's"}),
        namespace="beta",
        occurred_at=T0,
        event_id="b1",
    )
    history.append(SequencedEvent(len(history) + 1, T0, other))
    TablesProjection(store).apply(history, [], len(history))
    return store


def _keys(items: list[dict[str, Any]]) -> list[str]:
    return [i["key"] for i in items]


@pytest.fixture
def store() -> TableStore:
    s = timedelta(seconds=1)
    return _store(
        [
            (ItemPut(path=["docs"], key="d1", value={"kind": "note", "n": 1, "t": "deploy"}), s),
            (ItemPut(path=["docs", "a"], key="d2", value={"kind": "note", "n": 5}), 2 * s),
            (ItemPut(path=["docs", "a", "x"], key="d3", value={"kind": "todo", "n": 3}), 3 * s),
            (ItemPut(path=["docsextra"], key="d4", value={"kind": "note", "n": 2}), 4 * s),
            (ItemPut(path=["docs"], key="gone", value={"kind": "note"}, ttl=1.0), 5 * s),
            (ItemPut(path=["docs"], key="d5", value={"t": "release notes"}, index=["t"]), 6 * s),
            (ItemPut(path=["docs"], key="d6", value={"t": "deploy"}, index=False), 7 * s),
            (ItemPut(path=["docs"], key="d7", value={"kind": "x"}), 8 * s),
            (ItemDeleted(path=["docs"], key="d7"), 9 * s),
        ]
    )


def test_get_reads_one_path_and_skips_missing_and_expired(store: TableStore) -> None:
    """Found keys in the order asked, with value and the events' times; an expired item and
    another tenant's are not found."""
    cursor = store.reader()
    items = get_items(cursor, "alpha", ["docs"], ["d5", "d1", "nope", "gone", "d7"], NOW)
    assert _keys(items) == ["d5", "d1"]
    assert items[1]["value"] == {"kind": "note", "n": 1, "t": "deploy"}
    assert items[1]["created_at"] == (T0 + timedelta(seconds=1)).isoformat()
    assert items[1]["path"] == ["docs"]
    assert _keys(get_items(cursor, "alpha", ["docs"], ["gone"], T0)) == ["gone"]  # not yet
    assert get_items(cursor, "gamma", ["docs"], ["d1"], NOW) == []


def test_search_by_prefix_filter_offset_and_query(store: TableStore) -> None:
    """A prefix holds itself and its descendants, never a sibling that merely starts with the
    same letters; newest first; filters and paging apply; a query ranks the indexed items
    first, best first, and the unindexed last without a score."""
    c = store.reader()

    def search(prefix: list[str], **more: Any) -> list[str]:
        args: dict[str, Any] = {"filter": None, "query": None, "limit": 10, "offset": 0}
        args.update(more)
        return _keys(search_items(c, "alpha", prefix, now=NOW, rank=_rank, **args))

    assert search(["docs"]) == ["d6", "d5", "d3", "d2", "d1"]
    assert search([]) == ["d6", "d5", "d4", "d3", "d2", "d1"]
    assert search(["docs", "a"]) == ["d3", "d2"]
    assert search(["docs"], filter={"kind": "note"}) == ["d2", "d1"]
    assert search(["docs"], filter={"n": {"$gte": 3}}) == ["d3", "d2"]
    assert search(["docs"], limit=2, offset=1) == ["d5", "d3"]
    assert search(["docs"], filter={"kind": "note"}, limit=1, offset=1) == ["d1"]
    ranked = search_items(c, "alpha", ["docs"], None, "release", 10, 0, NOW, _rank)
    assert _keys(ranked)[0] == "d5" and _keys(ranked)[-1] == "d6"
    assert ranked[0]["score"] > ranked[1]["score"] and "score" not in ranked[-1]
    assert _keys(search_items(c, "beta", ["docs"], None, None, 10, 0, NOW, _rank)) == ["d1"]


def test_namespaces_prefix_suffix_wildcards_and_depth(store: TableStore) -> None:
    """Distinct live paths, sorted; prefix and suffix match label by label with * for any one;
    max_depth cuts and dedupes; paging last."""
    c = store.reader()

    def listed(**more: Any) -> list[list[str]]:
        args: dict[str, Any] = {"prefix": None, "suffix": None, "max_depth": None}
        args.update(more)
        return item_namespaces(c, "alpha", limit=100, offset=0, now=NOW, **args)

    assert listed() == [["docs"], ["docs", "a"], ["docs", "a", "x"], ["docsextra"]]
    assert listed(prefix=["docs", "*"]) == [["docs", "a"], ["docs", "a", "x"]]
    assert listed(suffix=["a"]) == [["docs", "a"]]
    assert listed(suffix=["*", "x"]) == [["docs", "a", "x"]]
    assert listed(max_depth=1) == [["docs"], ["docsextra"]]
    assert listed(prefix=["docs"], max_depth=2) == [["docs"], ["docs", "a"]]
    assert item_namespaces(c, "alpha", None, None, None, 2, 1, NOW) == [
        ["docs", "a"],
        ["docs", "a", "x"],
    ]


def _rank(query: str, texts: Sequence[str], sequences: Sequence[int]) -> Sequence[float]:
    scores = rank_texts(query, texts, get_embedder("hashing"), ItemTextCache(), 0.6, sequences)
    return [float(s) for s in scores]


def test_values_keep_their_order_and_unicode() -> None:
    """A value comes back as it was put: key order, unicode, nesting."""
    value = {"z": 1, "a": {"ü": ["ß", None, 2.5]}, "m": True}
    store = _store([(ItemPut(path=["p"], key="k", value=value), timedelta(0))])
    [item] = get_items(store.reader(), "alpha", ["p"], ["k"], NOW)
    assert json.dumps(item["value"]) == json.dumps(value)


FIELD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.sampled_from(["a", "b", "é", "\u00e9\u0301", 'a"b', "5", ""])
)
ROWS = st.lists(st.dictionaries(st.sampled_from(["f", "g", "h-1"]), FIELD_VALUES), max_size=12)
PUSHED = st.dictionaries(
    st.sampled_from(["f", "g", "h-1"]),
    FIELD_VALUES
    | st.dictionaries(
        st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), FIELD_VALUES, min_size=1
    ),
    max_size=2,
)


@settings(max_examples=80, deadline=None)
@given(rows=ROWS, filter=PUSHED)
@example(rows=[{"f": 2**53 + 1}], filter={"f": {"$gt": 2**53}})  # equal as doubles
@example(rows=[{"f": "\u00e9"}, {"f": "e\u0301"}], filter={"f": "\u00e9"})
def test_a_search_with_a_filter_finds_exactly_what_the_filter_matches(
    rows: list[dict[str, Any]], filter: dict[str, Any]
) -> None:
    """The SQL pre-filter only narrows: a search returns every stored value the filter matches
    and no other (big integers, floats, unicode, quotes, texts that look like numbers)."""
    store = _store(
        [(ItemPut(path=["p"], key=f"k{i}", value=row), timedelta(0)) for i, row in enumerate(rows)]
    )
    found = search_items(store.reader(), "alpha", ["p"], filter, None, 1000, 0, NOW)
    assert sorted(_keys(found)) == sorted(
        f"k{i}" for i, row in enumerate(rows) if matches(row, filter)
    )


def test_a_number_too_large_for_a_double_in_a_filter_is_decided_exactly_not_a_failure() -> None:
    """JSON allows integers beyond a double (10**400): the SQL pre-filter leaves such a bound
    out (it once raised OverflowError, answered as a failure with the engine's text) and the
    exact check decides."""
    from consumers.queries.item_verbs import prefilter

    clause, params = prefilter({"n": {"$gt": 10**400}, "m": {"$lt": 2}})
    assert params == ["$.m", 2.0] or params[-1] == 2.0
    assert 10**400 not in params and clause.count("?") == len(params) == 2
