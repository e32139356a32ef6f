"""Item search latency (issue 14, the LangGraph store): ``items_search`` answered in process over
the ``items`` table, for N items under one path prefix.

Usage::

    .venv/bin/python bench/bench_item_search.py                     # 1,000 and 10,000 items
    .venv/bin/python bench/bench_item_search.py --items 10000 --embedder minilm-onnx

For each size it folds N ``item.put`` events (values ``{"text": 8-30 Zipf words, "kind": one of
five, "n": 0..99}``, under ``("users", "u<i % 50>")``) into a fresh on-disk tables database
through ``TablesProjection``, then times the handler's reader (``search_items``, a fresh DuckDB
cursor per call, as the engine answers it) over the prefix ``("users",)`` (every item a
candidate):

- plain: newest first, limit 10 (SQL does the paging);
- filter: ``{"kind": "note", "n": {"$gte": 50}}`` (every value decoded and tested in Python);
- query, cold: the first query over a fresh text cache (every candidate embedded);
- query, warm: further queries (cached vectors and term counts; BM25 and cosine over all);
- query + filter, warm.

p50 and p99 in milliseconds over ``--calls`` calls each (cold: one call per size).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.queries.item_ranking import ItemTextCache, rank_texts
from consumers.queries.item_verbs import search_items
from engine.events import make_event
from engine.events.items import ItemPut
from projections.embedders import get_embedder
from projections.records import SequencedEvent
from projections.tables import TablesProjection, TableStore

WORDS = [f"w{i}" for i in range(2_000)] + [
    "deploy",
    "release",
    "login",
    "crash",
    "theme",
    "dark",
    "user",
    "prefers",
    "meeting",
    "friday",
]
KINDS = ["note", "todo", "fact", "preference", "event"]
QUERIES = ["user prefers dark theme", "deploy the release friday", "login crash", "w12 w7 w300"]


def _text(rng: random.Random) -> str:
    n = rng.randint(8, 30)
    return " ".join(WORDS[min(int(rng.paretovariate(1.1)) - 1, len(WORDS) - 1)] for _ in range(n))


def _fill(store: TableStore, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    projection = TablesProjection(store)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    batch: list[SequencedEvent] = []
    for i in range(1, count + 1):
        when = start + timedelta(milliseconds=i)
        value = {"text": _text(rng), "kind": rng.choice(KINDS), "n": rng.randrange(100)}
        data = ItemPut(path=["users", f"u{i % 50}"], key=f"k{i}", value=value)
        event = make_event(data, namespace="bench", occurred_at=when, event_id=f"e{i}")
        batch.append(SequencedEvent(i, when, event))
        if len(batch) == 1_000:
            projection.apply(batch, [], batch[-1].sequence)
            batch = []
    if batch:
        projection.apply(batch, [], batch[-1].sequence)


def _time(call: Callable[[], object], calls: int) -> tuple[float, float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def run(count: int, embedder_name: str, calls: int) -> None:
    embedder = get_embedder(embedder_name)
    with tempfile.TemporaryDirectory() as scratch:
        store = TableStore.open(Path(scratch))
        started = time.perf_counter()
        _fill(store, count)
        fill_s = time.perf_counter() - started
        now = datetime(2027, 1, 1, tzinfo=UTC)
        cache = ItemTextCache()

        def rank(query: str, texts: Sequence[str], sequences: Sequence[int]) -> list[float]:
            return [float(s) for s in rank_texts(query, texts, embedder, cache, 0.6, sequences)]

        def search(query: str | None = None, filter: dict[str, object] | None = None) -> None:
            cursor = store.reader()
            try:
                search_items(cursor, "bench", ["users"], filter, query, 10, 0, now, rank)
            finally:
                cursor.close()

        where: dict[str, object] = {"kind": "note", "n": {"$gte": 50}}
        started = time.perf_counter()
        search(QUERIES[0])
        cold = (time.perf_counter() - started) * 1000
        queries = iter(QUERIES * calls)
        rows = {
            "plain": _time(lambda: search(), calls),
            "filter": _time(lambda: search(filter=where), calls),
            "query, warm": _time(lambda: search(next(queries)), calls),
            "query + filter, warm": _time(lambda: search(next(queries), where), calls),
        }
        store.close()
    print(f"{count:,} items ({embedder_name}; folded in {fill_s:.1f} s)")
    print(f"  {'query, cold (embeds every candidate)':38s} {cold:9.1f} ms (one call)")
    for name, (p50, p99) in rows.items():
        print(f"  {name:38s} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--embedder", default="hashing")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    for count in args.items:
        run(count, args.embedder, args.calls)


if __name__ == "__main__":
    main()
