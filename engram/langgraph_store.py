"""LangGraph's ``BaseStore`` on engram: puts are events, reads come from the ``items`` projection.

::

    from engram.langgraph_store import EngramStore

    async with EngramStore.connect("nats://127.0.0.1:4222", namespace="alpha") as store:
        await store.aput(("users", "u1"), "prefs", {"theme": "dark"})
        item = await store.aget(("users", "u1"), "prefs")  # read-your-writes: found
        hits = await store.asearch(("users",), query="dark theme", filter={"theme": "dark"})
        graph = builder.compile(store=store)

How each operation maps:

- ``PutOp`` publishes ``item.put`` (``item.deleted`` when the value is None) on the store's engram
  namespace (the tenant: from configuration, never from the LangGraph namespace, which is the
  item's *path* inside that tenant). ``index`` (None: the store's ``index["fields"]``, else the
  whole value; False: not indexed; a list of field paths) says what a query is matched against;
  ``ttl`` is minutes until the item expires, counted from the put.
- ``GetOp``, ``SearchOp``, ``ListNamespacesOp`` ask the engine's item verbs (``items_get``,
  ``items_search``, ``items_namespaces``). A search's ``query`` ranks by engram's hybrid search
  (BM25 and the engine's embedder, fused); without one, newest write first.
- Read-your-writes: every read carries the stream sequence of this store's last acknowledged
  write as ``min_sequence``, so the engine answers once its tables projection holds it. If the
  engine cannot within ``read_timeout_s`` the read raises ``StaleReadError`` rather than answer
  without the write.
- Within one ``batch``, reads are answered before the batch's puts are applied (as LangGraph's
  InMemoryStore and PostgresStore do); of several puts to one key, the last one wins.

Async first: the store belongs to the event loop it was created on (``asyncio`` is how it talks
to NATS). The sync methods (``batch``, ``get``, ``put``, ...) run the async ones on that loop
from another thread (as LangGraph's own async stores do); called on the loop's own thread they
raise ``asyncio.InvalidStateError`` (they would deadlock): use ``aget``/``aput``/... there.

TTL (``supports_ttl``): an item expires ``ttl`` minutes after its last put and reads stop
returning it at once (``omit_expired`` always holds). Not honoured: ``refresh_ttl`` on reads
(refreshing would need an event per read; a put refreshes) and ``sweep_interval_minutes`` (an
expired item stays in the table, unseen, until it is put again, deleted or its tenant purged).

Index: ``index={"fields": [...]}`` sets the default fields; ``dims`` and ``embed`` are ignored
(engram embeds with the engine's own embedder, ``ENGRAM_EMBEDDER``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal

import structlog
from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)
from pydantic import ValidationError

from engine.client import MemoryClient
from engine.errors import QueryError, UsageError
from engine.events import Event, make_event
from engine.events.codec import explain_validation_error
from engine.events.items import ItemDeleted, ItemPut, check_label
from engine.settings import Settings
from engine.verbs.replies import ItemNamespacesReply, ItemsReply, StoredItem

__all__ = ["EngramStore", "StaleReadError"]

log = structlog.get_logger(__name__)

MAX_KEYS_PER_ASK = 1_000
"""The most keys one ``items_get`` takes (its request model's bound)."""
MAX_PAGE = 1_000
"""The most items or paths one ``items_search`` / ``items_namespaces`` answers: a larger
``limit`` is asked page by page."""


class StaleReadError(QueryError):
    """The engine did not apply this store's last write within ``read_timeout_s``: answering
    anyway could miss it, so the read fails instead (the engine is behind, or stalled)."""


class EngramStore(BaseStore):
    """A LangGraph store whose items are engram events (see the module)."""

    supports_ttl = True
    __slots__ = (
        "_last_written",
        "_loop",
        "client",
        "index_fields",
        "namespace",
        "read_timeout_s",
        "ttl_config",
    )

    def __init__(
        self,
        client: MemoryClient,
        *,
        namespace: str | None = None,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        read_timeout_s: float = 10.0,
    ) -> None:
        """A store over a connected ``client``, on its namespace unless ``namespace`` names
        another one the client may write (the tenant; never taken from LangGraph's paths).
        Must be created on the event loop it will run on."""
        self._loop = asyncio.get_running_loop()
        self.client = client
        self.namespace = namespace or client.namespace
        self.ttl_config = ttl
        self.read_timeout_s = read_timeout_s
        self._last_written = 0
        fields = (index or {}).get("fields")
        self.index_fields: list[str] | None = list(fields) if fields else None
        if index and ({"dims", "embed"} & set(index)):
            log.warning(
                "EngramStore ignores index dims and embed: items are ranked with the engine's "
                "embedder (ENGRAM_EMBEDDER)",
                given=sorted(index),
            )

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        url: str | None = None,
        *,
        namespace: str = "default",
        settings: Settings | None = None,
        agent_id: str | None = None,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        read_timeout_s: float = 10.0,
    ) -> AsyncIterator[EngramStore]:
        """Connect a ``MemoryClient`` (``url``, else the settings: ``ENGRAM_NATS_URL`` or the
        embedded server) on ``namespace`` and yield a store over it; closed on exit."""
        async with MemoryClient(
            url, settings=settings, namespace=namespace, agent_id=agent_id
        ) as client:
            yield cls(client, index=index, ttl=ttl, read_timeout_s=read_timeout_s)

    @property
    def last_written(self) -> int:
        """The stream sequence of this store's last acknowledged write (0: none yet)."""
        return self._last_written

    # -- the two entry points ---------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """``abatch`` run on the store's event loop from another thread (raises
        asyncio.InvalidStateError on the loop's own thread: await ``abatch`` there)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise asyncio.InvalidStateError(
                "synchronous calls to EngramStore on its own event loop would deadlock: use "
                "the async methods there (await store.aget(...), store.aput(...), ...)"
            )
        return asyncio.run_coroutine_threadsafe(self.abatch(ops), self._loop).result()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Every op's result, in order: reads first (each seeing this store's writes before
        the batch), then the batch's puts (the last per key wins), appended in order."""
        listed = list(ops)
        for op in listed:
            _check_labels(op)
            if isinstance(op, PutOp) and not op.namespace:
                raise InvalidNamespaceError("Namespace cannot be empty.")
            if not isinstance(op, GetOp | SearchOp | ListNamespacesOp | PutOp):
                raise ValueError(f"Unknown operation type: {type(op)}")  # noqa: TRY004 (LangGraph's)
        results: list[Result] = [None] * len(listed)
        reads = [
            (i, op) for i, op in enumerate(listed) if isinstance(op, SearchOp | ListNamespacesOp)
        ]
        gets = [(i, op) for i, op in enumerate(listed) if isinstance(op, GetOp)]
        found, answered = await asyncio.gather(
            self._gets(gets), asyncio.gather(*(self._read(op) for _, op in reads))
        )
        for i, item in found.items():
            results[i] = item
        for (i, _), value in zip(reads, answered, strict=True):
            results[i] = value
        puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
        for op in listed:
            if isinstance(op, PutOp):
                puts.pop((op.namespace, op.key), None)  # the last put of a key, in its place
                puts[(op.namespace, op.key)] = op
        if puts:
            await self._write(list(puts.values()))
        return results

    # -- writes ---------------------------------------------------------------------------------

    def _event(self, op: PutOp) -> Event:
        """The event of one put, validated (InvalidNamespaceError for a bad path, ValueError
        naming the field for anything else, as LangGraph's stores raise)."""
        try:
            if op.value is None:
                data: ItemPut | ItemDeleted = ItemDeleted(path=list(op.namespace), key=op.key)
            else:
                if not isinstance(op.value, Mapping):
                    raise ValueError(
                        f"an item's value must be a mapping, got {type(op.value).__name__}"
                    )
                index = op.index if op.index is not None else self.index_fields
                data = ItemPut(
                    path=list(op.namespace),
                    key=op.key,
                    value=dict(op.value),
                    index=index,
                    ttl=op.ttl,
                )
        except ValidationError as exc:
            problems = explain_validation_error(exc)
            if any(str(e["loc"][0]) == "path" for e in exc.errors() if e["loc"]):
                raise InvalidNamespaceError(
                    f"invalid namespace {op.namespace!r}: " + "; ".join(problems)
                ) from None
            raise ValueError("invalid item: " + "; ".join(problems)) from None
        return make_event(data, namespace=self.namespace, agent_id=self.client.agent_id)

    async def _write(self, ops: Sequence[PutOp]) -> None:
        events = [self._event(op) for op in ops]  # all validated before any is sent
        report = await self.client.publish_many(events)
        failures = [r for r in report.results if isinstance(r, Exception)]
        sequences = [s for s in report.sequences if s is not None]
        if sequences:
            self._last_written = max(self._last_written, *sequences)
        if failures:
            raise failures[0]

    # -- reads ----------------------------------------------------------------------------------

    async def _ask(self, verb: str, arguments: dict[str, Any]) -> Any:
        """The reply to ``verb``, once it holds this store's last write (see the module)."""
        deadline = time.monotonic() + self.read_timeout_s
        if self._last_written:
            arguments = {**arguments, "min_sequence": self._last_written}
        while True:
            try:
                answer = await self.client.ask(verb, arguments, namespace=self.namespace)
            except UsageError as exc:
                raise ValueError(str(exc)) from None
            if answer.consistency is None or not answer.consistency.stale:
                return answer.reply
            if time.monotonic() >= deadline:
                raise StaleReadError(
                    f"{verb}: the engine has applied the stream up to "
                    f"{answer.consistency.sequence}, not this store's last write "
                    f"{self._last_written}, after {self.read_timeout_s:g} s"
                )

    async def _gets(self, gets: Sequence[tuple[int, GetOp]]) -> dict[int, Item | None]:
        by_path: dict[tuple[str, ...], list[tuple[int, GetOp]]] = {}
        for i, op in gets:
            by_path.setdefault(op.namespace, []).append((i, op))
        found: dict[int, Item | None] = {i: None for i, _ in gets}
        for path, wanted in by_path.items():
            keys = list(dict.fromkeys(op.key for _, op in wanted))
            items: dict[str, StoredItem] = {}
            while keys:
                asked = keys[:MAX_KEYS_PER_ASK]
                reply = await self._ask("items_get", {"path": list(path), "keys": asked})
                assert isinstance(reply, ItemsReply)
                items.update((item.key, item) for item in reply.items)
                # A truncated reply answered a first part of the keys: ask the rest again.
                answered = len(asked) if not reply.truncated else _answered(asked, reply.items)
                keys = keys[answered:]
            for i, op in wanted:
                stored = items.get(op.key)
                found[i] = None if stored is None else _item(stored)
        return found

    async def _read(self, op: SearchOp | ListNamespacesOp) -> Result:
        if isinstance(op, SearchOp):
            return await self._search(op)
        return await self._namespaces(op)

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        _check_page(op.limit, op.offset)
        items: list[SearchItem] = []
        offset = op.offset
        while len(items) < op.limit:
            reply = await self._ask(
                "items_search",
                {
                    "prefix": list(op.namespace_prefix),
                    "filter": dict(op.filter) if op.filter else None,
                    "query": op.query,
                    "limit": min(op.limit - len(items), MAX_PAGE),
                    "offset": offset,
                },
            )
            assert isinstance(reply, ItemsReply)
            items.extend(_search_item(stored) for stored in reply.items)
            if not reply.items or (len(reply.items) < MAX_PAGE and not reply.truncated):
                break
            offset += len(reply.items)  # a page, or cut to fit one message: the rest next
        return items

    async def _namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        prefix = _merged(op.match_conditions, "prefix")
        suffix = _merged(op.match_conditions, "suffix")
        if prefix is False or suffix is False:
            return []  # two conditions no path can meet at once
        _check_page(op.limit, op.offset)
        found: list[tuple[str, ...]] = []
        offset = op.offset
        while len(found) < op.limit:
            reply = await self._ask(
                "items_namespaces",
                {
                    "prefix": prefix,
                    "suffix": suffix,
                    "max_depth": op.max_depth,
                    "limit": min(op.limit - len(found), MAX_PAGE),
                    "offset": offset,
                },
            )
            assert isinstance(reply, ItemNamespacesReply)
            found.extend(tuple(path) for path in reply.namespaces)
            if not reply.namespaces or (len(reply.namespaces) < MAX_PAGE and not reply.truncated):
                break
            offset += len(reply.namespaces)
        return found


def _check_labels(op: Op) -> None:
    """Raise InvalidNamespaceError for a label LangGraph refuses (not a string, empty, a period,
    a NUL; ``*`` is a label too, a wildcard only in a namespace listing's conditions): what
    ``BaseStore``'s methods check before they batch, checked here for ops batched directly."""
    if isinstance(op, GetOp | PutOp):
        paths: list[tuple[Any, ...]] = [op.namespace]
    elif isinstance(op, SearchOp):
        paths = [op.namespace_prefix]
    elif isinstance(op, ListNamespacesOp):
        paths = [condition.path for condition in op.match_conditions or ()]
    else:
        return
    for path in paths:
        for label in path:
            if not isinstance(label, str):
                raise InvalidNamespaceError(
                    f"Invalid namespace label {label!r} found in {path}: labels must be strings"
                )
            try:
                check_label(label)
            except ValueError as exc:
                raise InvalidNamespaceError(f"Invalid namespace {path}: {exc}") from None


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative, got {limit} and {offset}")


def _answered(asked: Sequence[str], items: Sequence[StoredItem]) -> int:
    """How many of ``asked`` a truncated reply covered: up to its last item's key (at least
    one, so the loop ends)."""
    if not items:
        return 1
    return asked.index(items[-1].key) + 1


def _merged(
    conditions: Sequence[MatchCondition] | None, kind: Literal["prefix", "suffix"]
) -> list[str] | Literal[False] | None:
    """The one pattern every ``kind`` condition folds into (None: no such condition; False:
    two of them that no path meets, such as prefixes ("a",) and ("b",))."""
    patterns = [list(c.path) for c in conditions or () if c.match_type == kind]
    if not patterns:
        return None
    width = max(len(p) for p in patterns)
    if kind == "suffix":  # align from the end
        patterns = [["*"] * (width - len(p)) + p for p in patterns]
    else:
        patterns = [p + ["*"] * (width - len(p)) for p in patterns]
    merged: list[str] = []
    for labels in zip(*patterns, strict=True):
        fixed = {label for label in labels if label != "*"}
        if len(fixed) > 1:
            return False
        merged.append(fixed.pop() if fixed else "*")
    return merged


def _item(stored: StoredItem) -> Item:
    return Item(
        value=stored.value,
        key=stored.key,
        namespace=tuple(stored.path),
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def _search_item(stored: StoredItem) -> SearchItem:
    return SearchItem(
        namespace=tuple(stored.path),
        key=stored.key,
        value=stored.value,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        score=stored.score,
    )
