"""Vector memory: recall, build throughput, search latency and relevance of the embedders.

Usage::

    .venv/bin/python bench/bench_vectors.py                 # 100,000 x 384, all sections
    .venv/bin/python bench/bench_vectors.py --n 20000 --skip-minilm

Sections (printed as one markdown table, then the ef sweep and the relevance details):

(a) recall@10 of ``VectorIndex.search`` against exact brute force (numpy) on ``--n`` random unit
    vectors of ``--dim`` dimensions (the hard case for HNSW: no cluster structure), with held-out
    query vectors, at the default ef and at a sweep of other ef values;
(b) build throughput of ``VectorIndex.add`` (growing from its initial capacity by resizes, lock,
    validation) against raw hnswlib ``add_items`` into an index pre-sized to ``--n``, same vectors,
    same batches, same M / ef_construction / threads, in the same run; reported as a ratio;
(c) search latency p50/p99 at ``--n`` with precomputed query vectors, and with the hashing and
    minilm embedders (embed one text + search, per query; the index holds the random vectors,
    so the search part is the same worst case);
(d) relevance: for each of 15 hand-written anchors, does the embedder put the paraphrase closer
    than a lexical look-alike (shared words, other meaning)?
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import hnswlib
import numpy as np
import numpy.typing as npt

from engine.errors import EmbedderUnavailableError
from engine.logconfig import configure_logging
from projections.embedders import Embedder, HashingEmbedder, get_embedder
from projections.vectors import IndexConfig, VectorIndex

Matrix = npt.NDArray[np.float32]

# (anchor, paraphrase: same meaning in other words, look-alike: shared words, other meaning)
RELEVANCE_SET: tuple[tuple[str, str, str], ...] = (
    ("Fixed a memory leak in the image resizing worker",
     "Stopped the thumbnail generator from gradually consuming all available RAM",
     "Added a memory usage chart for the image resizing worker to the dashboard"),
    ("Deployed the payment service to production",
     "Released the billing backend to the live environment",
     "Wrote unit tests for the payment service production config parser"),
    ("Database queries on the orders table were slow, so I added an index",
     "Sped up order lookups by creating a missing DB index",
     "Wrote documentation about the orders table columns in the database"),
    ("User could not log in because the session token had expired",
     "Sign-in failed since the auth cookie was past its validity period",
     "Added a log line when the user session token is created"),
    ("Translated the onboarding guide into Spanish",
     "Localised the getting-started tutorial for Spanish-speaking users",
     "Fixed the onboarding guide link that pointed to the Spanish page"),
    ("Reduced the Docker image size by switching to a slim base image",
     "Made the container smaller by using a minimal OS layer",
     "Switched the Docker image registry to reduce pull rate limit errors"),
    ("Summarised last quarter's customer churn by region",
     "Analysed which geographic areas lost the most clients in the previous three months",
     "Summarised the customer feedback on the new region selector"),
    ("The nightly backup job failed because the disk was full",
     "Last night's snapshot could not complete as storage ran out of space",
     "The nightly job that cleans the disk was added to the backup server"),
    ("Upgraded the web framework to the latest major version",
     "Moved the site onto the newest release of its HTTP library",
     "Documented the version numbering of the web framework in the latest changelog"),
    ("Retried the flaky integration test until it passed",
     "Re-ran the intermittently failing end-to-end check several times to get it green",
     "Deleted the integration test for the retry helper"),
    ("Rotated the expired TLS certificate on the load balancer",
     "Replaced the outdated HTTPS cert on the traffic distributor",
     "Added a load balancer health check for the certificate service"),
    ("Cancelled the deployment because error rates spiked",
     "Rolled back the release after failures jumped sharply",
     "Wrote a deployment guide that explains error rate dashboards"),
    ("Cached the exchange rates to cut API costs",
     "Stored currency conversion values locally to spend less on external calls",
     "Removed the cache of API error messages to cut log noise"),
    ("Scheduled a meeting with the security team about the audit",
     "Booked time with the infosec group to discuss the compliance review",
     "Fixed the meeting room booking bug reported by the security team"),
    ("Wrote a script to rename thousands of files in bulk",
     "Automated renaming a large batch of documents with a small program",
     "Wrote a script to count the files in thousands of folders"),
)  # fmt: skip

QUERY_TEXTS = tuple(text for triple in RELEVANCE_SET for text in triple)

SLOTS: tuple[tuple[str, ...], ...] = (
    ("Fixed", "Refactored", "Deployed", "Investigated", "Optimised", "Documented", "Tested",
     "Migrated", "Reviewed", "Rolled back", "Upgraded", "Configured", "Monitored", "Debugged",
     "Benchmarked", "Removed", "Added", "Rewrote", "Secured", "Automated"),
    ("the login flow", "a memory leak", "the payment service", "the search index",
     "the CI pipeline", "a flaky test", "the billing report", "the user profile page",
     "the cache layer", "the retry policy", "the data export", "the API gateway",
     "the onboarding email", "the metrics dashboard", "the database schema", "the rate limiter",
     "the image resizer", "the audit log", "the feature flags", "the notification queue"),
    ("in the auth service", "for the mobile app", "on the staging cluster", "in production",
     "for the analytics team", "in the EU region", "after the incident", "before the release",
     "in the checkout flow", "for the admin console", "in the batch worker", "on the edge proxy",
     "in the reporting job", "for the partner API", "in the web client", "on the data lake",
     "in the scheduler", "for the support team", "in the ML pipeline", "on the legacy server"),
    ("using a new library", "with extra logging", "to cut latency", "after a timeout",
     "because of a null pointer", "with a canary rollout", "to reduce cloud cost",
     "after user reports", "with a database index", "behind a feature flag",
     "with property-based tests", "to fix a race condition", "with a circuit breaker",
     "to meet the SLA", "after a security review", "with a rollback plan",
     "to unblock the release", "with pair programming", "using async IO", "with a load test"),
)  # fmt: skip
ROWS: list[tuple[str, str]] = []
SWEEP: list[tuple[int, float, float, float]] = []


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> Matrix:
    data = rng.standard_normal((n, dim), dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return data


def exact_top_k(data: Matrix, queries: Matrix, k: int) -> npt.NDArray[np.int64]:
    """Exact cosine top-k labels (rows are unit vectors, so the dot product is the cosine)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        sims = queries[start : start + 256] @ data.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start : start + 256] = np.take_along_axis(part, order, axis=1)
    return out


def recall_at_k(index: VectorIndex, queries: Matrix, kth: npt.NDArray[np.float32], k: int) -> float:
    """Share of the top-k hits at least as similar as the exact k-th neighbour (ties count)."""
    hits = 0
    for query, threshold in zip(queries, kth, strict=True):
        hits += sum(sim >= threshold - 1e-5 for _, sim in index.search(query, k))
    return hits / (k * len(queries))


def build_raw(data: Matrix, config: IndexConfig, batch: int) -> float:
    raw = hnswlib.Index(space="cosine", dim=data.shape[1])
    raw.init_index(max_elements=len(data), ef_construction=config.ef_construction, M=config.m)
    labels = np.arange(len(data))
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        stop = start + batch
        raw.add_items(data[start:stop], labels[start:stop], num_threads=config.num_threads)
    return time.perf_counter() - started


def build_index(data: Matrix, config: IndexConfig, batch: int) -> tuple[VectorIndex, float]:
    index = VectorIndex(data.shape[1], "bench", config)
    labels = np.arange(len(data))
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        index.add(labels[start : start + batch], data[start : start + batch])
    return index, time.perf_counter() - started


def latencies_ms(run: Callable[[int], object], count: int) -> tuple[float, float]:
    """p50 and p99 of ``run(i)`` for i in range(count), in milliseconds."""
    samples = []
    for i in range(count):
        started = time.perf_counter_ns()
        run(i)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def relevance(embedder: Embedder) -> tuple[int, float, int, list[str]]:
    """Paraphrase wins over the look-alike, mean margin, paraphrase-is-nearest count, rows."""
    vectors = embedder.embed(QUERY_TEXTS)
    wins, top1, margins, lines = 0, 0, [], []
    for i, (anchor, _, _) in enumerate(RELEVANCE_SET):
        a, p, lk = vectors[3 * i], vectors[3 * i + 1], vectors[3 * i + 2]
        sim_p, sim_l = float(a @ p), float(a @ lk)
        sims = vectors @ a
        sims[3 * i] = -np.inf  # the anchor itself
        top1 += int(np.argmax(sims)) == 3 * i + 1
        wins += sim_p > sim_l
        margins.append(sim_p - sim_l)
        mark = "yes" if sim_p > sim_l else "no"
        lines.append(f"| {anchor} | {sim_p:.3f} | {sim_l:.3f} | {mark} |")
    return wins, statistics.fmean(margins), top1, lines


def embedder_latency(
    embedder: Embedder, index: VectorIndex, queries: Sequence[str], count: int
) -> tuple[float, float, float, float]:
    embedder.embed_one(queries[0])  # warm-up (lazy init, caches)
    embed = latencies_ms(lambda i: embedder.embed_one(queries[i % len(queries)]), count)
    both = latencies_ms(
        lambda i: index.search(embedder.embed_one(queries[i % len(queries)]), 10), count
    )
    return (*embed, *both)


def make_data(kind: str, n: int, queries: int, dim: int, seed: int) -> tuple[Matrix, Matrix]:
    """``n`` indexed vectors and ``queries`` held-out query vectors of the chosen kind."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return unit_vectors(rng, n, dim), unit_vectors(rng, queries, dim)
    if kind == "lowrank":
        # Unit vectors near a 32-d subspace: real sentence embeddings have a low intrinsic
        # dimension, which is what makes HNSW work on them.
        basis = rng.standard_normal((32, dim), dtype=np.float32)
        mixed = rng.standard_normal((n + queries, 32), dtype=np.float32) @ basis
        mixed += 0.5 * rng.standard_normal((n + queries, dim), dtype=np.float32)
        mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
        return mixed[:n], mixed[n:]
    texts = synthetic_summaries(rng, n + queries)
    vectors = HashingEmbedder(dimension=dim).embed(texts)
    return vectors[:n], vectors[n:]


def synthetic_summaries(rng: np.random.Generator, count: int) -> list[str]:
    """Task summaries from slot templates (160,000 combinations plus a ticket number)."""
    picks = [rng.integers(0, len(slot), count) for slot in SLOTS]
    tickets = rng.integers(1000, 99999, count)
    return [
        " ".join(slot[i] for slot, i in zip(SLOTS, row, strict=True)) + f" (ticket {t})"
        for *row, t in zip(*picks, tickets, strict=True)
    ]


def run_build(args: argparse.Namespace, data: Matrix, config: IndexConfig) -> VectorIndex:
    raw_best = index_best = float("inf")
    index: VectorIndex | None = None
    for _ in range(args.rounds):
        raw_best = min(raw_best, build_raw(data, config, args.batch))
        index, seconds = build_index(data, config, args.batch)
        index_best = min(index_best, seconds)
    assert index is not None
    ROWS.append(("build, raw hnswlib add_items (vectors/s)", f"{len(data) / raw_best:,.0f}"))
    ROWS.append(("build, VectorIndex.add (vectors/s)", f"{len(data) / index_best:,.0f}"))
    ROWS.append(("build throughput ratio VectorIndex / raw", f"{raw_best / index_best:.2f}"))
    return index


def run_recall(args: argparse.Namespace, index: VectorIndex, data: Matrix, queries: Matrix) -> None:
    default_ef = index.config.ef
    truth = exact_top_k(data, queries, 10)
    kth = np.take_along_axis(queries @ data.T, truth[:, -1:], axis=1)[:, 0]
    recall = recall_at_k(index, queries, kth, 10)
    ROWS.append((f"recall@10 at default ef={default_ef} ({args.data} data)", f"{recall:.4f}"))
    for ef in sorted({*args.ef_sweep, default_ef}):
        index.set_ef(ef)
        search = latencies_ms(lambda i: index.search(queries[i], 10), len(queries))
        SWEEP.append((ef, recall_at_k(index, queries, kth, 10), *search))
    index.set_ef(default_ef)
    p50, p99 = latencies_ms(lambda i: index.search(queries[i], 10), len(queries))
    ROWS.append((f"search k=10, precomputed vector, p50 / p99 (ms) at {len(data):,}",
                 f"{p50:.3f} / {p99:.3f}"))  # fmt: skip


def run_embedders(args: argparse.Namespace, index: VectorIndex) -> list[str]:
    embedders: list[Embedder] = [HashingEmbedder(dimension=args.dim)]
    if not args.skip_minilm:
        if args.torch_threads:
            import torch

            torch.set_num_threads(args.torch_threads)
        try:
            started = time.perf_counter()
            embedders.append(get_embedder("minilm"))
            ROWS.append(("minilm model load (s)", f"{time.perf_counter() - started:.2f}"))
        except EmbedderUnavailableError as exc:
            ROWS.append(("minilm", f"skipped: {exc}"))
    lines: list[str] = []
    for embedder in embedders:
        count = args.queries if embedder.name == "hashing" else args.minilm_queries
        e50, e99, s50, s99 = embedder_latency(embedder, index, QUERY_TEXTS, count)
        name = embedder.name
        ROWS.append((f"{name}: embed one text, p50 / p99 (ms)", f"{e50:.3f} / {e99:.3f}"))
        ROWS.append((f"{name}: embed + search k=10, p50 / p99 (ms)", f"{s50:.3f} / {s99:.3f}"))
        wins, margin, top1, table = relevance(embedder)
        total = len(RELEVANCE_SET)
        ROWS.append((f"{name}: paraphrase closer than look-alike", f"{wins}/{total}"))
        ROWS.append((f"{name}: mean sim(paraphrase) - sim(look-alike)", f"{margin:+.3f}"))
        ROWS.append((f"{name}: paraphrase nearest of all 44 other texts", f"{top1}/{total}"))
        lines += [f"\n{name}:\n", "| anchor | sim(paraphrase) | sim(look-alike) | wins |",
                  "|---|---|---|---|", *table]  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--data", choices=("random", "lowrank", "text"), default="random",
                        help="random unit vectors (default), low-rank + noise, or hashing-"
                             "embedded synthetic task summaries")  # fmt: skip
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall/latency")
    parser.add_argument("--batch", type=int, default=1000, help="vectors per add call")
    parser.add_argument("--rounds", type=int, default=1, help="builds per side; best counts")
    parser.add_argument("--ef-sweep", type=lambda s: [int(x) for x in s.split(",")],
                        default=[32, 64, 128, 256, 512])  # fmt: skip
    parser.add_argument("--recall-only", action="store_true", help="skip raw, embedders")
    parser.add_argument("--minilm-queries", type=int, default=300)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--m", type=int, default=0, help="0: the IndexConfig default")
    parser.add_argument("--ef-construction", type=int, default=0, help="0: the default")
    parser.add_argument("--ef", type=int, default=0, help="0: the IndexConfig default")
    args = parser.parse_args(argv)
    configure_logging(level="warning")  # keep resize/save debug lines out of the table

    defaults = IndexConfig()
    config = IndexConfig(
        m=args.m or defaults.m,
        ef_construction=args.ef_construction or defaults.ef_construction,
        ef=args.ef or defaults.ef,
    )
    note = f"M={config.m}, ef_construction={config.ef_construction}, ef={config.ef}"
    print(f"# bench_vectors: {args.data} n={args.n} dim={args.dim} {note}", file=sys.stderr)
    data, queries = make_data(args.data, args.n, args.queries, args.dim, args.seed)
    if args.recall_only:  # one build, no raw comparison
        index, seconds = build_index(data, config, args.batch)
        ROWS.append(("build, VectorIndex.add (vectors/s)", f"{len(data) / seconds:,.0f}"))
    else:
        index = run_build(args, data, config)
    run_recall(args, index, data, queries)
    lines = [] if args.recall_only else run_embedders(args, index)

    print(f"\n{note}, data={args.data}, n={args.n:,}, dim={args.dim}, batch={args.batch}, "
          f"queries={args.queries}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs\n")  # fmt: skip
    print("| measure | value |\n|---|---|")
    for name, value in ROWS:
        print(f"| {name} | {value} |")
    print("\n| ef | recall@10 | p50 (ms) | p99 (ms) |\n|---|---|---|---|")
    for ef, recall, s50, s99 in SWEEP:
        print(f"| {ef} | {recall:.4f} | {s50:.3f} | {s99:.3f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
