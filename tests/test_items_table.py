"""Items in the tables projection: ``item.put`` / ``item.deleted`` fold into the ``items`` table
(the newest value per namespace, path and key; a delete removes the row; times from the events),
whatever the batching; the search text comes from the put's ``index``; a purge forgets a
tenant's items. Pure fold and an in-memory DuckDB store: no server."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import InvalidEventError
from engine.events import EventData, make_event, validate_event
from engine.events.items import ItemDeleted, ItemPut
from projections.records import SequencedEvent
from projections.tables import TablesProjection, TableStore
from projections.tables.items import MAX_SEARCH_TEXT, search_text, split_path, text_at_path
from tests.strategies.events import purge_of

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _history(payloads: list[tuple[str, EventData]]) -> list[SequencedEvent]:
    """Events at sequences 1..n, one second apart, on the namespaces given."""
    out = []
    for i, (namespace, data) in enumerate(payloads, start=1):
        when = T0 + timedelta(seconds=i)
        event = make_event(data, namespace=namespace, occurred_at=when, event_id=f"e{i}")
        out.append(SequencedEvent(i, when, event))
    return out


def _apply(history: list[SequencedEvent], cuts: Sequence[int] = ()) -> TableStore:
    store = TableStore.in_memory()
    projection = TablesProjection(store)
    bounds = [0, *sorted(set(cuts)), len(history)]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            projection.apply(history[a:b], [], history[b - 1].sequence)
    return store


def _items(store: TableStore) -> list[dict[str, Any]]:
    cursor = store.reader()
    try:
        table = cursor.sql(
            "SELECT namespace, path, key, value, text, created_at, updated_at, expires_at, "
            "sequence FROM items ORDER BY namespace, path, key"
        ).to_arrow_table()
    finally:
        cursor.close()
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def put(path: list[str], key: str, value: dict[str, Any], **more: Any) -> ItemPut:
    return ItemPut(path=path, key=key, value=value, **more)


def test_put_overwrite_delete_and_put_again() -> None:
    """An overwrite keeps created_at and takes the new value, updated_at and sequence; a
    delete removes the row; a put after the delete is a new item (created_at anew)."""
    history = _history(
        [
            ("alpha", put(["users", "u1"], "prefs", {"theme": "dark"})),
            ("alpha", put(["users", "u1"], "prefs", {"theme": "light"})),
            ("alpha", put(["users", "u2"], "prefs", {"theme": "blue"})),
            ("alpha", ItemDeleted(path=["users", "u2"], key="prefs")),
            ("alpha", ItemDeleted(path=["users", "u9"], key="none")),  # nothing to delete
            ("alpha", put(["users", "u2"], "prefs", {"theme": "red"})),
        ]
    )
    for cuts in ([], [1], [2, 3], [4], [1, 2, 3, 4, 5]):
        rows = _items(_apply(history, cuts))
        assert [(r["path"], r["key"], json.loads(r["value"])) for r in rows] == [
            ("users.u1", "prefs", {"theme": "light"}),
            ("users.u2", "prefs", {"theme": "red"}),
        ], cuts
        u1, u2 = rows
        assert u1["created_at"] == T0 + timedelta(seconds=1)
        assert u1["updated_at"] == T0 + timedelta(seconds=2) and u1["sequence"] == 2
        assert u2["created_at"] == u2["updated_at"] == T0 + timedelta(seconds=6)


def test_ttl_expires_from_the_newest_put() -> None:
    """expires_at is the newest put's time plus its ttl in minutes; a put without ttl clears
    it."""
    history = _history(
        [
            ("alpha", put(["a"], "k", {"v": 1}, ttl=10)),
            ("alpha", put(["a"], "k", {"v": 2}, ttl=0.5)),
            ("alpha", put(["b"], "k", {"v": 1}, ttl=5)),
            ("alpha", put(["b"], "k", {"v": 2})),
        ]
    )
    a, b = _items(_apply(history))
    assert a["expires_at"] == T0 + timedelta(seconds=2, minutes=0.5)
    assert b["expires_at"] is None


def test_tenants_keep_their_own_items_and_a_purge_forgets_one() -> None:
    """The same path and key in two namespaces are two items; a namespace.purged removes every
    item of its tenant and none of the other's."""
    history = _history(
        [
            ("alpha", put(["shared"], "k", {"owner": "alpha"})),
            ("beta", put(["shared"], "k", {"owner": "beta"})),
            ("beta", purge_of("beta")),
            ("beta", put(["later"], "k", {"owner": "beta again"})),
        ]
    )
    for cuts in ([], [2], [3]):
        rows = _items(_apply(history, cuts))
        assert [(r["namespace"], r["path"], json.loads(r["value"])["owner"]) for r in rows] == [
            ("alpha", "shared", "alpha"),
            ("beta", "later", "beta again"),
        ]


def test_the_search_text_follows_the_index() -> None:
    """null indexes the whole value (JSON, sorted keys); a list of paths their texts, one per
    line; false nothing; paths selecting nothing give no text."""
    value = {"title": "Deploy", "steps": [{"do": "build"}, {"do": "ship"}], "n": 3}
    assert search_text(value, None) == json.dumps(value, sort_keys=True, ensure_ascii=False)
    assert search_text(value, ["title", "steps[*].do"]) == "Deploy\nbuild\nship"
    assert search_text(value, ["steps[-1].do", "n"]) == "ship\n3"
    assert search_text(value, False) is None
    assert search_text(value, ["missing"]) is None
    assert text_at_path(value, "{title,n}") == ["Deploy", "3"]
    assert split_path("users.u1") == ("users", "u1") and split_path("") == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"path": [], "key": "k", "value": {}}, "data.path"),
        ({"path": ["a.b"], "key": "k", "value": {}}, "contains a period"),
        ({"path": [""], "key": "k", "value": {}}, "must not be empty"),
        ({"path": ["a\x00"], "key": "k", "value": {}}, "NUL"),
        ({"path": [1], "key": "k", "value": {}}, "data.path.0"),
        ({"path": ["a"] * 33, "key": "k", "value": {}}, "data.path"),
        ({"path": ["a"], "key": "", "value": {}}, "key must not be empty"),
        ({"path": ["a"], "key": "k", "value": [1]}, "data.value"),
        ({"path": ["a"], "key": "k", "value": {"x": "y" * 300_000}}, "one NATS message"),
        ({"path": ["a"], "key": "k", "value": {}, "index": True}, "not true"),
        ({"path": ["a"], "key": "k", "value": {}, "index": 0}, "data.index"),
        ({"path": ["a"], "key": "k", "value": {}, "ttl": 0}, "data.ttl"),
        ({"path": ["a"], "key": "k", "value": {}, "ttl": 1e12}, "data.ttl"),
        ({"path": ["a"], "key": "k", "value": {}, "extra": 1}, "unknown field"),
    ],
)
def test_a_bad_item_is_refused_naming_the_field(data: dict[str, Any], message: str) -> None:
    """item.put validates like every event: the field is named, the rule said."""
    envelope = {
        "id": "x",
        "type": "item.put",
        "schema_version": 1,
        "namespace": "alpha",
        "occurred_at": "2026-11-20T12:00:00Z",
        "data": data,
    }
    with pytest.raises(InvalidEventError) as info:
        validate_event(envelope)
    assert message in str(info.value)


# -- the fold against a plain dictionary --------------------------------------------------------

PATHS = st.sampled_from([["a"], ["a", "b"], ["c"]])
KEYS = st.sampled_from(["k1", "k2"])
OPS = st.lists(
    st.tuples(
        st.sampled_from(["alpha", "beta"]),
        st.booleans(),  # put (True) or delete
        PATHS,
        KEYS,
        st.integers(0, 3),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, cuts=st.lists(st.integers(1, 25), max_size=5))
def test_the_table_is_the_fold_of_puts_and_deletes(
    ops: list[tuple[str, bool, list[str], str, int]], cuts: list[int]
) -> None:
    """Any history of puts and deletes, in any batching, leaves the table a dictionary fold
    gives: the last put's value per (namespace, path, key) unless deleted after it, created
    at the first put since the last delete."""
    payloads: list[tuple[str, EventData]] = [
        (ns, put(path, key, {"v": v}) if is_put else ItemDeleted(path=path, key=key))
        for ns, is_put, path, key, v in ops
    ]
    history = _history(payloads)
    model: dict[tuple[str, str, str], tuple[int, datetime, datetime]] = {}
    for item in history:
        data = item.event.data
        assert isinstance(data, ItemPut | ItemDeleted)
        where = (item.event.namespace, ".".join(data.path), data.key)
        if isinstance(data, ItemDeleted):
            model.pop(where, None)
            continue
        created = model[where][1] if where in model else item.event.occurred_at
        model[where] = (data.value["v"], created, item.event.occurred_at)
    rows = _items(_apply(history, [c for c in cuts if c < len(history)]))
    assert {
        (r["namespace"], r["path"], r["key"]): (
            json.loads(r["value"])["v"],
            r["created_at"],
            r["updated_at"],
        )
        for r in rows
    } == model


def test_an_items_search_text_is_bounded_whatever_its_index_selects() -> None:
    """Wildcards and {a,b} groups can select the value many times over: 32 index paths of 127
    stars over a 250 KB value once made about a gigabyte of search text per event. The text is
    cut at MAX_SEARCH_TEXT, a repeated path or group member counts once, and a plain index
    still selects what it names."""
    value = {"a": "x" * 250_000, "b": {"c": "hello"}, "d": ["p", "q"]}
    hostile = ["{" + ",".join(["*"] * 127) + "}"] * 32 + ["*.*"] * 32
    text = search_text(value, hostile)
    assert text is not None and len(text) <= MAX_SEARCH_TEXT
    assert search_text(value, ["b.c", "d[*]", "b.c"]) == "hello\np\nq"
