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
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import hnswlib
import numpy as np
import numpy.typing as npt

from engine.errors import EmbedderUnavailableError
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


def recall_at_k(index: VectorIndex, queries: Matrix, truth: npt.NDArray[np.int64], k: int) -> float:
    hits = 0
    for query, expected in zip(queries, truth, strict=True):
        found = {label for label, _ in index.search(query, k)}
        hits += len(found.intersection(expected.tolist()))
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


def relevance(embedder: Embedder) -> tuple[int, float, list[str]]:
    """Anchors whose paraphrase is closer than the look-alike, mean margin, per-anchor lines."""
    wins, margins, lines = 0, [], []
    for anchor, paraphrase, lookalike in RELEVANCE_SET:
        a, p, lk = embedder.embed([anchor, paraphrase, lookalike])
        sim_p, sim_l = float(a @ p), float(a @ lk)
        wins += sim_p > sim_l
        margins.append(sim_p - sim_l)
        mark = "yes" if sim_p > sim_l else "no"
        lines.append(f"| {anchor[:48]} | {sim_p:.3f} | {sim_l:.3f} | {mark} |")
    return wins, statistics.fmean(margins), lines


def embedder_latency(
    embedder: Embedder, index: VectorIndex, queries: Sequence[str], count: int
) -> tuple[float, float, float, float]:
    embedder.embed_one(queries[0])  # warm-up (lazy init, caches)
    embed = latencies_ms(lambda i: embedder.embed_one(queries[i % len(queries)]), count)
    both = latencies_ms(
        lambda i: index.search(embedder.embed_one(queries[i % len(queries)]), 10), count
    )
    return (*embed, *both)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall/latency")
    parser.add_argument("--batch", type=int, default=1000, help="vectors per add call")
    parser.add_argument("--minilm-queries", type=int, default=300)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    config = IndexConfig()
    rng = np.random.default_rng(args.seed)
    data = unit_vectors(rng, args.n, args.dim)
    queries = unit_vectors(rng, args.queries, args.dim)
    rows: list[tuple[str, str]] = []
    note = f"M={config.m}, ef_construction={config.ef_construction}, ef={config.ef}"
    print(f"# bench_vectors: n={args.n} dim={args.dim} {note}, python {platform.python_version()}",
          file=sys.stderr)  # fmt: skip

    raw_seconds = build_raw(data, config, args.batch)
    index, index_seconds = build_index(data, config, args.batch)
    rows.append(("build, raw hnswlib add_items (vectors/s)", f"{args.n / raw_seconds:,.0f}"))
    rows.append(("build, VectorIndex.add (vectors/s)", f"{args.n / index_seconds:,.0f}"))
    rows.append(("build throughput ratio VectorIndex / raw", f"{raw_seconds / index_seconds:.2f}"))

    truth = exact_top_k(data, queries, 10)
    rows.append((f"recall@10 at default ef={config.ef}", f"{recall_at_k(index, queries, truth, 10):.4f}"))  # fmt: skip
    sweep = []
    for ef in (32, 64, 100, 128, 160, 200, 256):
        index.set_ef(ef)
        sweep.append((ef, recall_at_k(index, queries, truth, 10),
                      *latencies_ms(lambda i: index.search(queries[i], 10), len(queries))))  # fmt: skip
    index.set_ef(config.ef)

    p50, p99 = latencies_ms(lambda i: index.search(queries[i], 10), len(queries))
    rows.append((f"search k=10, precomputed vector, p50 / p99 (ms) at {args.n:,}", f"{p50:.3f} / {p99:.3f}"))  # fmt: skip

    embedders: list[Embedder] = [HashingEmbedder()]
    if not args.skip_minilm:
        try:
            started = time.perf_counter()
            embedders.append(get_embedder("minilm"))
            rows.append(("minilm model load (s)", f"{time.perf_counter() - started:.2f}"))
        except EmbedderUnavailableError as exc:
            rows.append(("minilm", f"skipped: {exc}"))
    relevance_lines: list[str] = []
    for embedder in embedders:
        count = len(queries) if embedder.name == "hashing" else args.minilm_queries
        e50, e99, s50, s99 = embedder_latency(embedder, index, QUERY_TEXTS, count)
        rows.append((f"{embedder.name}: embed one text p50 / p99 (ms)", f"{e50:.3f} / {e99:.3f}"))
        rows.append((f"{embedder.name}: embed + search p50 / p99 (ms)", f"{s50:.3f} / {s99:.3f}"))
        wins, margin, lines = relevance(embedder)
        rows.append((f"{embedder.name}: paraphrase outranks look-alike",
                     f"{wins}/{len(RELEVANCE_SET)} (mean margin {margin:+.3f})"))  # fmt: skip
        relevance_lines += [f"\n{embedder.name}: | anchor | sim(paraphrase) | sim(look-alike) | paraphrase wins |", "|---|---|---|---|", *lines]  # fmt: skip

    print(f"\n{note}, n={args.n:,}, dim={args.dim}, batch={args.batch}, queries={args.queries}\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| ef | recall@10 | p50 (ms) | p99 (ms) |\n|---|---|---|---|")
    for ef, recall, s50, s99 in sweep:
        print(f"| {ef} | {recall:.4f} | {s50:.3f} | {s99:.3f} |")
    print("\n".join(relevance_lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
