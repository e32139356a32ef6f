"""EngramStore, LangGraph's BaseStore on engram, against a real engine and nats-server: the
store behaviour LangGraph's own store tests check (put/get/overwrite/delete, batches, search by
prefix / filter / limit / offset / query, list_namespaces with prefix / suffix / wildcards /
max_depth, the errors LangGraph raises), plus what engram adds: tenants never see each other,
read-your-writes within one store, TTL, a LangGraph graph using it, and a fresh engine replaying
the stream ends with the same items table."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict, cast

import pytest

pytest.importorskip("langgraph.store.base")  # a safety net: CI installs the langgraph extra

from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchItem,
    SearchOp,
)
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine import MemoryClient
from engine.connection import connect
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine
from engram.langgraph_store import EngramStore
from projections.tables.digest import table_digests
from tests.engines import running, settle

STREAM = "T_langgraph_store"


@pytest.fixture(scope="module")
async def engine(
    nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Engine, Settings]]:
    """One engine on a stream of this module's own (each test uses its own tenants)."""
    base = tmp_path_factory.mktemp("langgraph-store")
    settings = Settings(
        data_dir=base / "data",
        nats=NatsSettings(url=nats_server.url),
        stream=StreamSettings(name=STREAM),
    )
    nc = await connect(NatsSettings(), nats_server.url)
    log = EventLog(nc, settings.stream)
    await log.ensure()
    try:
        async with running(settings, nc, settings.data_dir) as live:
            await _serving(live)
            yield live, settings
    finally:
        for stream in (STREAM, STREAM + "_DLQ"):
            with contextlib.suppress(NotFoundError):
                await log.js.delete_stream(stream)
        await nc.drain()


async def _serving(engine: Engine) -> None:
    async with asyncio.timeout(20):
        while engine.dispatcher is None:
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def store_on(
    settings: Settings, namespace: str, **options: Any
) -> AsyncIterator[EngramStore]:
    async with EngramStore.connect(settings=settings, namespace=namespace, **options) as store:
        yield store


def _keys(items: Iterable[Item]) -> list[str]:
    return [item.key for item in items]


async def test_put_get_overwrite_delete(engine: tuple[Engine, Settings]) -> None:
    """A put is found at once with its value and times; an overwrite keeps created_at and moves
    updated_at; a delete makes get answer None; a missing key is None."""
    _, settings = engine
    async with store_on(settings, "t-basic") as store:
        await store.aput(("users", "u1"), "prefs", {"theme": "dark", "n": 1})
        first = await store.aget(("users", "u1"), "prefs")
        assert first is not None and first.value == {"theme": "dark", "n": 1}
        assert first.namespace == ("users", "u1") and first.key == "prefs"
        assert abs(first.created_at - datetime.now(UTC)) < timedelta(seconds=30)
        await asyncio.sleep(0.01)
        await store.aput(("users", "u1"), "prefs", {"theme": "light"})
        second = await store.aget(("users", "u1"), "prefs")
        assert second is not None and second.value == {"theme": "light"}
        assert second.created_at == first.created_at and second.updated_at > first.updated_at
        await store.adelete(("users", "u1"), "prefs")
        assert await store.aget(("users", "u1"), "prefs") is None
        assert await store.aget(("users", "nobody"), "prefs") is None
        await store.aput(("users", "u1"), "prefs", {"theme": "blue"})
        again = await store.aget(("users", "u1"), "prefs")
        assert again is not None and again.created_at > first.created_at  # a new item


async def test_batches_answer_reads_before_puts_and_the_last_put_wins(
    engine: tuple[Engine, Settings],
) -> None:
    """Results come in the order of the ops; within a batch the reads see the store as it was
    before the batch's puts; of two puts to one key the last wins; a later batch sees them."""
    _, settings = engine
    async with store_on(settings, "t-batch") as store:
        await store.aput(("test", "foo"), "key1", {"data": "value1"})
        await store.aput(("test", "bar"), "key2", {"data": "value2"})
        ops: list[Op] = [
            GetOp(("test", "foo"), "key1"),
            PutOp(("test", "bar"), "key2", {"data": "changed"}),
            SearchOp(("test",), filter={"data": "value1"}),
            ListNamespacesOp(max_depth=None, limit=10),
            GetOp(("test", "bar"), "key2"),
            GetOp(("test",), "key3"),
            PutOp(("test",), "key3", {"data": "first"}),
            PutOp(("test",), "key3", {"data": "last"}),
        ]
        results = await store.abatch(ops)
        assert len(results) == len(ops)
        assert isinstance(results[0], Item) and results[0].value == {"data": "value1"}
        assert results[1] is None and results[6] is None and results[7] is None
        assert _keys(cast(list[SearchItem], results[2])) == ["key1"]
        assert set(cast(list[tuple[str, ...]], results[3])) == {("test", "foo"), ("test", "bar")}
        assert isinstance(results[4], Item) and results[4].value == {"data": "value2"}
        assert results[5] is None
        after = await store.abatch([GetOp(("test", "bar"), "key2"), GetOp(("test",), "key3")])
        assert [cast(Item, r).value for r in after] == [{"data": "changed"}, {"data": "last"}]


async def test_search_prefix_filter_paging_and_query(engine: tuple[Engine, Settings]) -> None:
    """A prefix holds itself and what is below it, at label boundaries (foo is not foobar),
    literally (no wildcard characters), case-sensitively; () holds everything. Filters:
    equality and operators. Without a query: newest first, paged by limit and offset. With one:
    most similar first, each with a score, unindexed items last without one."""
    _, settings = engine
    async with store_on(settings, "t-search") as store:
        for path in [("foo",), ("foo", "child"), ("foo", "child", "deep"), ("foobar",)]:
            await store.aput(path, "k", {"v": 1})
        for path in [("a%b",), ("axxb",), ("Foo",), ("user_1",), ("userX1",)]:
            await store.aput(path, "k", {"v": 2})

        async def under(prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
            return {item.namespace for item in await store.asearch(prefix, limit=100)}

        assert await under(("foo",)) == {("foo",), ("foo", "child"), ("foo", "child", "deep")}
        assert await under(("foobar",)) == {("foobar",)}
        assert await under(("fo",)) == set()
        assert await under(("a%b",)) == {("a%b",)}
        assert await under(("user_1",)) == {("user_1",)}
        assert await under(("Foo",)) == {("Foo",)}
        assert len(await under(())) == 9

        docs = [
            ("d1", {"kind": "note", "score": 3, "text": "user prefers dark theme"}),
            ("d2", {"kind": "note", "score": 7, "text": "deploy the release on friday"}),
            ("d3", {"kind": "todo", "score": 5, "text": "fix the login crash"}),
            ("d4", {"kind": "note", "score": 9, "text": "the team meets on monday"}),
        ]
        for key, value in docs:
            await store.aput(("docs",), key, value)
        await store.aput(("docs",), "hidden", {"text": "deploy release friday"}, index=False)
        assert _keys(await store.asearch(("docs",))) == ["hidden", "d4", "d3", "d2", "d1"]
        assert _keys(await store.asearch(("docs",), filter={"kind": "note"})) == ["d4", "d2", "d1"]
        assert _keys(await store.asearch(("docs",), filter={"score": {"$gt": 4, "$lte": 7}})) == [
            "d3",
            "d2",
        ]
        assert _keys(await store.asearch(("docs",), filter={"kind": {"$ne": "note"}})) == [
            "hidden",
            "d3",
        ]
        assert _keys(await store.asearch(("docs",), limit=2, offset=1)) == ["d4", "d3"]
        ranked = await store.asearch(("docs",), query="deploy the release friday")
        assert ranked[0].key == "d2" and ranked[-1].key == "hidden"
        assert ranked[-1].score is None
        scores = [r.score for r in ranked[:-1]]
        assert all(s is not None for s in scores)
        assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
        paged = await store.asearch(("docs",), query="deploy the release friday", offset=1, limit=2)
        assert _keys(paged) == _keys(ranked[1:3])
        with_filter = await store.asearch(("docs",), query="login crash", filter={"kind": "todo"})
        assert _keys(with_filter) == ["d3"]


async def test_index_fields_decide_what_a_query_matches(engine: tuple[Engine, Settings]) -> None:
    """index=[paths] (or the store's index fields) ranks by those fields only."""
    _, settings = engine
    async with store_on(settings, "t-index", index={"fields": ["title"]}) as store:
        await store.aput(("k",), "a", {"title": "kubernetes upgrade", "body": "postgres vacuum"})
        await store.aput(("k",), "b", {"title": "postgres vacuum", "body": "kubernetes upgrade"})
        await store.aput(("k",), "c", {"title": "x", "body": "postgres vacuum"}, index=["body"])
        ranked = await store.asearch(("k",), query="postgres vacuum")
        assert {r.key for r in ranked[:2]} == {"b", "c"} and ranked[2].key == "a"


async def test_list_namespaces(engine: tuple[Engine, Settings]) -> None:
    """Prefix and suffix at label boundaries, * for one label, max_depth cutting and
    deduplicating, sorted, paged; a deleted item's path goes once empty."""
    _, settings = engine
    async with store_on(settings, "t-list") as store:
        paths = [
            ("a", "b", "c"),
            ("a", "b", "d", "e"),
            ("a", "b", "d", "i"),
            ("a", "b", "f"),
            ("a", "c", "f"),
            ("foo",),
            ("foobar", "baz"),
            ("uid", "users", "alice"),
            ("uid", "users", "malice"),
        ]
        for path in paths:
            await store.aput(path, "k", {"v": 1})
        assert await store.alist_namespaces(prefix=("a", "b"), max_depth=3) == [
            ("a", "b", "c"),
            ("a", "b", "d"),
            ("a", "b", "f"),
        ]
        assert await store.alist_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
        assert await store.alist_namespaces(prefix=("a", "*", "f")) == [
            ("a", "b", "f"),
            ("a", "c", "f"),
        ]
        assert await store.alist_namespaces(prefix=("foo",)) == [("foo",)]
        assert await store.alist_namespaces(suffix=("alice",)) == [("uid", "users", "alice")]
        assert await store.alist_namespaces(max_depth=1) == [
            ("a",),
            ("foo",),
            ("foobar",),
            ("uid",),
        ]
        assert await store.alist_namespaces(limit=2, offset=1) == [
            ("a", "b", "d", "e"),
            ("a", "b", "d", "i"),
        ]
        both = ListNamespacesOp(
            match_conditions=(
                MatchCondition("prefix", ("a",)),
                MatchCondition("suffix", ("d", "*")),
            )
        )
        [listed] = await store.abatch([both])
        assert listed == [("a", "b", "d", "e"), ("a", "b", "d", "i")]
        await store.adelete(("foo",), "k")
        assert ("foo",) not in await store.alist_namespaces()


async def test_bad_input_raises_as_langgraph_does(engine: tuple[Engine, Settings]) -> None:
    """InvalidNamespaceError for an empty namespace, an empty label, a label with a period,
    the reserved root, a NUL; ValueError naming the field for a value too large, an unknown
    filter operator, a negative limit; nothing is written."""
    _, settings = engine
    async with store_on(settings, "t-bad") as store:
        for namespace in [(), ("",), ("a.b",), ("langgraph", "x"), ("a", "b\x00")]:
            with pytest.raises(InvalidNamespaceError):
                await store.aput(namespace, "k", {"v": 1})
        with pytest.raises(InvalidNamespaceError):
            await store.abatch([PutOp((), "k", {"v": 1})])
        with pytest.raises(InvalidNamespaceError):
            await store.aget(("a.b",), "k")
        with pytest.raises(InvalidNamespaceError):
            await store.asearch(("a", ""))
        with pytest.raises(InvalidNamespaceError):
            await store.alist_namespaces(prefix=("a.b",))
        with pytest.raises(ValueError, match="value"):
            await store.aput(("a",), "k", {"x": "y" * 300_000})
        with pytest.raises(ValueError, match=r"filter\.score\.\$regex"):
            await store.asearch(("a",), filter={"score": {"$regex": "x"}})
        with pytest.raises(ValueError, match="limit"):
            await store.asearch(("a",), limit=-1)
        assert await store.asearch(("a",), limit=0) == []
        assert store.last_written == 0


async def test_tenants_never_see_each_others_items(engine: tuple[Engine, Settings]) -> None:
    """Two stores on two engram namespaces with the same paths and keys: each reads, searches
    and lists only its own; a delete in one leaves the other's item."""
    _, settings = engine
    async with store_on(settings, "t-alpha") as alpha, store_on(settings, "t-beta") as beta:
        await alpha.aput(("shared",), "k", {"owner": "alpha"})
        await beta.aput(("shared",), "k", {"owner": "beta"})
        await alpha.aput(("alpha-only",), "k", {"owner": "alpha"})
        a, b = await alpha.aget(("shared",), "k"), await beta.aget(("shared",), "k")
        assert a is not None and a.value == {"owner": "alpha"}
        assert b is not None and b.value == {"owner": "beta"}
        assert await beta.aget(("alpha-only",), "k") is None
        assert [i.value["owner"] for i in await beta.asearch((), query="alpha")] == ["beta"]
        assert await beta.alist_namespaces() == [("shared",)]
        await beta.adelete(("shared",), "k")
        assert await beta.aget(("shared",), "k") is None
        assert await alpha.aget(("shared",), "k") is not None


async def test_read_your_writes_100_times(engine: tuple[Engine, Settings]) -> None:
    """A put then a get (and a search) at once, 100 times: always found, because each read
    carries the store's last written sequence as min_sequence."""
    _, settings = engine
    async with store_on(settings, "t-ryw") as store:
        for i in range(100):
            await store.aput(("ryw",), f"k{i}", {"i": i})
            item = await store.aget(("ryw",), f"k{i}")
            assert item is not None and item.value == {"i": i}, i
            if i % 10 == 0:
                found = await store.asearch(("ryw",), filter={"i": i})
                assert _keys(found) == [f"k{i}"], i
        assert store.last_written > 0


async def test_ttl_hides_expired_items(engine: tuple[Engine, Settings]) -> None:
    """An item put with a ttl (minutes) is found until it expires, then not by get, search or
    list_namespaces; a default ttl from the store's TTLConfig applies to puts without one."""
    _, settings = engine
    async with store_on(settings, "t-ttl", ttl={"default_ttl": 0.02}) as store:
        assert store.supports_ttl
        await store.aput(("t",), "short", {"v": 1})  # default: 1.2 s
        await store.aput(("t",), "long", {"v": 2}, ttl=60)
        await store.aput(("u",), "short", {"v": 3}, ttl=0.02)
        assert await store.aget(("t",), "short") is not None
        await asyncio.sleep(1.5)
        assert await store.aget(("t",), "short") is None
        assert _keys(await store.asearch(("t",))) == ["long"]
        assert await store.alist_namespaces() == [("t",)]
        long = await store.aget(("t",), "long")
        assert long is not None


async def test_sync_methods_run_on_the_stores_loop(engine: tuple[Engine, Settings]) -> None:
    """From another thread the sync API works (put, get, search, list, delete); on the store's
    own loop it refuses at once instead of deadlocking."""
    _, settings = engine
    async with store_on(settings, "t-sync") as store:

        def in_thread() -> tuple[Item | None, list[SearchItem], list[tuple[str, ...]]]:
            store.put(("s",), "k", {"v": 1})
            got = store.get(("s",), "k")
            found = store.search(("s",))
            listed = store.list_namespaces()
            store.delete(("s",), "k")
            return got, found, listed

        got, found, listed = await asyncio.to_thread(in_thread)
        assert got is not None and got.value == {"v": 1}
        assert _keys(found) == ["k"] and listed == [("s",)]
        assert await store.aget(("s",), "k") is None
        with pytest.raises(asyncio.InvalidStateError):
            store.get(("s",), "k")


async def test_a_langgraph_graph_remembers_through_the_store(
    engine: tuple[Engine, Settings],
) -> None:
    """A compiled StateGraph given the store: one run writes a memory, the next finds it."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.store.base import BaseStore

    class State(TypedDict):
        user: str
        said: str
        recalled: list[str]

    async def remember(state: State, *, store: BaseStore) -> dict[str, Any]:
        memories = await store.asearch(("memories", state["user"]), query=state["said"])
        await store.aput(("memories", state["user"]), f"m{len(memories)}", {"text": state["said"]})
        return {"recalled": [m.value["text"] for m in memories]}

    builder = StateGraph(State)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    _, settings = engine
    async with store_on(settings, "t-graph") as store:
        graph = builder.compile(store=store)
        first = await graph.ainvoke({"user": "ada", "said": "I like green tea", "recalled": []})
        second = await graph.ainvoke({"user": "ada", "said": "what tea?", "recalled": []})
        assert first["recalled"] == [] and second["recalled"] == ["I like green tea"]


async def test_a_fresh_engine_replaying_the_stream_has_the_same_items(
    engine: tuple[Engine, Settings], nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    """Puts, overwrites, deletes and TTLs of several tenants; then an engine on an empty data
    directory replays the stream: its items table is the live one's, row for row (digest)."""
    live, settings = engine
    async with store_on(settings, "t-replay") as store:
        for i in range(30):
            await store.aput(("r", f"p{i % 4}"), f"k{i % 7}", {"i": i}, ttl=60 if i % 5 else None)
            if i % 6 == 0:
                await store.adelete(("r", f"p{i % 4}"), f"k{(i + 3) % 7}")
    await settle(live)
    nc: NatsClient = await connect(NatsSettings(), nats_server.url)
    try:
        async with running(settings, nc, tmp_path / "fresh") as fresh:
            await settle(fresh)
            await settle(live)
            digests = []
            for one in (live, fresh):
                cursor = one.set.store.reader()
                try:
                    digests.append(table_digests(cursor)["items"])
                    rows = cursor.execute("SELECT count(*) FROM items").fetchone()
                finally:
                    cursor.close()
                assert rows is not None and rows[0] > 20
            assert digests[0] == digests[1]
    finally:
        await nc.drain()


async def test_memory_client_writes_items_a_store_reads(engine: tuple[Engine, Settings]) -> None:
    """put_item / delete_item of the SDK and the store share the items: same tenant, same path."""
    _, settings = engine
    async with MemoryClient(settings=settings, namespace="t-sdk") as memory:
        sequence = await memory.put_item(["notes"], "n1", {"text": "from the SDK"}, ttl=5)
        items = await memory.get_items(["notes"], ["n1"], min_sequence=sequence)
        assert [i.value for i in items] == [{"text": "from the SDK"}]
        assert items[0].expires_at is not None
        async with store_on(settings, "t-sdk") as store:
            store_item = await store.aget(("notes",), "n1")
            assert store_item is not None and store_item.value == {"text": "from the SDK"}
        gone = await memory.delete_item(["notes"], "n1")
        assert await memory.get_items(["notes"], ["n1"], min_sequence=gone) == []
        assert json.dumps(await memory.list_item_namespaces(min_sequence=gone)) == "[]"


async def test_items_larger_than_one_reply_come_back_whole(engine: tuple[Engine, Settings]) -> None:
    """Six items of 200 KB cannot share one NATS message (1 MB): the engine cuts its replies
    (truncated) and the store asks again for the rest, so get, batch and search return all."""
    _, settings = engine
    async with store_on(settings, "t-large") as store:
        blob = "x" * 200_000
        await store.abatch([PutOp(("big",), f"k{i}", {"i": i, "blob": blob}) for i in range(6)])
        got = await store.abatch([GetOp(("big",), f"k{i}") for i in range(6)])
        assert [cast(Item, g).value["i"] for g in got] == list(range(6))
        found = await store.asearch(("big",), limit=10)
        assert sorted(item.value["i"] for item in found) == list(range(6))
        assert {len(item.value["blob"]) for item in found} == {200_000}


async def test_items_stay_out_of_the_operational_context(engine: tuple[Engine, Settings]) -> None:
    """An agent's many item puts do not crowd what it did out of assemble_context's operational
    tier (items are read with items_search, not recalled as events)."""
    _, settings = engine
    async with MemoryClient(settings=settings, namespace="t-context") as memory:
        await memory.store_workflow(
            task_type="deployment", workflow_steps=["plan", "ship"], success=True, duration=2.0
        )
        async with store_on(settings, "t-context") as store:
            await store.abatch([PutOp(("notes",), f"n{i}", {"v": i}) for i in range(60)])
            context = await memory.assemble_context(
                "ship the deployment", tiers=["operational"], min_sequence=store.last_written
            )
    texts = [chunk.text for chunk in context.chunks]
    assert any("plan -> ship" in text for text in texts), texts
    assert not any("item." in text for text in texts), texts
