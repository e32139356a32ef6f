"""Semantic cache lookup latency (issue 16, point 4) at N cached prompts in one namespace.

Usage::

    .venv/bin/python bench/bench_semantic_cache.py                   # 100,000 prompts
    .venv/bin/python bench/bench_semantic_cache.py --prompts 20000 --skip-nats

N prompts of 8-20 Zipf-distributed words (a vocabulary of 5,000) are cached with the default
``hashing`` embedder and the engine's index settings (M 16, ef_construction 200, ef 200). The
queries: ``--queries`` paraphrases (a cached prompt with one word dropped: hits at the default
threshold 0.85) and as many fresh prompts (misses). Timed, p50 and p99 in milliseconds:

1. in process, the handler: ``QueryDispatcher.handle("cache_lookup", ...)`` over a
   ``SemanticCache`` fed the N ``cache.put`` events through ``apply`` in batches of 1,000, as
   the engine's runner feeds it (request validation, the hop to a worker thread, embedding the
   prompt, the graph walk, the reply);
2. the same without the dispatcher: ``SemanticCache.lookup`` (embedding + walk + reply);
3. raw hnswlib: ``knn_query(k=10)`` on the very same graph with the queries embedded beforehand
   (what the cache adds around hnswlib is 2 minus 3, plus the embedding);
4. exact cosine over a numpy matrix of the same N vectors (the alternative to hnswlib);
5. over NATS (unless ``--skip-nats``): an engine on an embedded nats-server, the N puts published
   with ``MemoryClient.publish_many``, then ``MemoryClient.cache_lookup`` from one client.

It also prints how many paraphrases hit (and hit their own source prompt), and how many fresh
prompts missed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from engine_harness import engine_on_embedded_server

from consumers.queries.cache_verbs import CacheVerbs
from consumers.queries.dispatch import QueryDispatcher
from engine import MemoryClient
from engine.events import make_event
from engine.events.cache import CachePut
from engine.logconfig import configure_logging
from projections.cache import IndexParams, SemanticCache
from projections.embedders import HashingEmbedder
from projections.records import SequencedEvent

NAMESPACE = "bench"
VOCABULARY = [f"w{i}" for i in range(5_000)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
BATCH = 1_000


def _prompt(rng: random.Random) -> str:
    return " ".join(rng.choices(VOCABULARY, WEIGHTS, k=rng.randint(8, 20)))


def _paraphrase(rng: random.Random, prompt: str) -> str:
    words = prompt.split()
    del words[rng.randrange(len(words))]
    return " ".join(words)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(name: str, took: list[float], base: float | None = None) -> str:
    p50 = statistics.median(took)
    ratio = "" if base is None else f"{p50 / base:>8.1f}x"
    return f"{name:<44} {1000 * p50:>8.3f} {_ms(took, 0.99):>8.3f} {ratio}"


def _timed(calls: list[Any], run: Callable[[Any], Any]) -> tuple[list[float], list[Any]]:
    took, out = [], []
    for call in calls:
        started = time.perf_counter()
        out.append(run(call))
        took.append(time.perf_counter() - started)
    return took, out


def _puts(prompts: list[str]) -> list[CachePut]:
    return [CachePut(prompt=p, response=f"answer {i}", ttl=86_400.0) for i, p in enumerate(prompts)]


def _in_process(
    prompts: list[str], queries: list[str], now: datetime
) -> tuple[list[str], dict[str, list[float]], list[dict[str, Any]]]:
    embedder = HashingEmbedder()
    cache = SemanticCache(None, embedder, params=IndexParams())
    started = time.perf_counter()
    for start in range(0, len(prompts), BATCH):
        items = [
            SequencedEvent(
                start + i + 1,
                now,
                make_event(data, namespace=NAMESPACE, occurred_at=now, event_id=f"p{start + i}"),
            )
            for i, data in enumerate(_puts(prompts[start : start + BATCH]))
        ]
        cache.apply(items, [], items[-1].sequence)
    built = time.perf_counter() - started
    lines = [f"built the in-process cache of {len(prompts):,} prompts in {built:.1f} s"]
    at = now.timestamp()
    dispatcher = QueryDispatcher(lambda: None)  # type: ignore[arg-type,return-value]
    CacheVerbs(cache, 0.85).register(dispatcher)
    loop = asyncio.new_event_loop()
    try:
        payloads = [{"prompt": q, "at": now.isoformat()} for q in queries]
        handled, replies = _timed(
            payloads,
            lambda p: loop.run_until_complete(dispatcher.handle("cache_lookup", p, NAMESPACE)),
        )
    finally:
        loop.close()
    direct, _ = _timed(queries, lambda q: cache.lookup(NAMESPACE, q, at=at, threshold=0.85))
    vectors = embedder.embed(queries)
    index = cache.state.namespaces[NAMESPACE].index
    assert index is not None
    graph = index._hnsw  # the very graph the lookups walk
    raw, _ = _timed(list(vectors), lambda v: graph.knn_query(v, k=10, num_threads=1))
    embed, _ = _timed(queries, lambda q: embedder.embed([q]))
    matrix = np.asarray(graph.get_items(list(range(1, len(prompts) + 1))), dtype=np.float32)
    subset = list(vectors[: min(200, len(vectors))])
    exact, _ = _timed(subset, lambda v: int(np.argmax(matrix @ v)))
    return (
        lines,
        {
            "handler": handled,
            "lookup": direct,
            "raw": raw,
            "embed": embed,
            "exact": exact,
        },
        replies,
    )


async def _over_nats(
    prompts: list[str], queries: list[str], now: datetime
) -> tuple[list[str], list[float], list[Any]]:
    async with (
        engine_on_embedded_server("BENCH_CACHE") as (settings, engine),
        MemoryClient(settings=settings, namespace=NAMESPACE) as memory,
    ):
        started = time.perf_counter()
        for start in range(0, len(prompts), 10 * BATCH):
            chunk = _puts(prompts[start : start + 10 * BATCH])
            events = [memory.event(d, occurred_at=now) for d in chunk]
            report = await memory.publish_many(events)
            assert not report.rejected, report.rejected
        published = time.perf_counter() - started
        last = memory.last_written
        while engine.dispatcher is None or engine.checkpoints().get("cache", 0) < last:
            await asyncio.sleep(0.5)
        applied = time.perf_counter() - started
        took, replies = [], []
        for query in queries:
            began = time.perf_counter()
            replies.append(await memory.cache_lookup(query))
            took.append(time.perf_counter() - began)
    lines = [
        f"published {len(prompts):,} cache.put over NATS in {published:.1f} s; the engine's "
        f"cache had applied them {applied:.1f} s after the first"
    ]
    return lines, took, replies


def _hits(replies: list[Any], sources: list[str]) -> str:
    hit = [r["hit"] if isinstance(r, dict) else r.hit for r in replies]
    prompt = [r["prompt"] if isinstance(r, dict) else r.prompt for r in replies]
    n = len(sources)
    own = sum(1 for h, p, s in zip(hit[:n], prompt[:n], sources, strict=True) if h and p == s)
    return (
        f"paraphrases hit {sum(hit[:n])}/{n} (their own prompt {own}/{n}); "
        f"fresh prompts missed {sum(not h for h in hit[n:])}/{len(hit) - n}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument(
        "--queries", type=int, default=1_000, help="paraphrases, and as many misses"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-nats", action="store_true")
    args = parser.parse_args()
    configure_logging(level="warning")
    rng = random.Random(args.seed)
    prompts = list(dict.fromkeys(_prompt(rng) for _ in range(args.prompts)))
    while len(prompts) < args.prompts:
        prompts = list(dict.fromkeys([*prompts, _prompt(rng)]))
    sources = rng.sample(prompts, args.queries)
    queries = [_paraphrase(rng, p) for p in sources] + [_prompt(rng) for _ in range(args.queries)]
    now = datetime.now(UTC)
    lines, times, replies = _in_process(prompts, queries, now)
    lines.append(_hits(replies, sources))
    nats_times: list[float] | None = None
    if not args.skip_nats:
        more, nats_times, nats_replies = asyncio.run(_over_nats(prompts, queries, now))
        lines += more
        lines.append("over NATS: " + _hits(nats_replies, sources))
    for line in lines:
        print(line)
    base = statistics.median(times["raw"])
    print(f"\n{len(prompts):,} cached prompts, {len(queries):,} lookups (half hits)")
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8} {'p50/raw':>9}")
    print(_row("raw hnswlib knn_query k=10 (same graph)", times["raw"], base))
    print(_row("embed one prompt (hashing)", times["embed"], base))
    print(_row("SemanticCache.lookup (embed + walk + reply)", times["lookup"], base))
    print(_row("in-process handler (dispatcher)", times["handler"], base))
    if nats_times is not None:
        print(_row("over NATS (MemoryClient.cache_lookup)", nats_times, base))
    print(_row(f"exact numpy cosine ({len(times['exact'])} queries)", times["exact"], base))


if __name__ == "__main__":
    main()
