"""Embedders side by side: load time, time to embed one query or one memory, batched throughput.

Usage::

    .venv/bin/python bench/bench_embedders.py
    .venv/bin/python bench/bench_embedders.py --locomo ../shared/data/locomo-dev.zip
    .venv/bin/python bench/bench_embedders.py --embedders minilm-numpy,minilm --torch-threads 1

Each embedder runs in a fresh interpreter (so its load time includes its imports and no two share
thread pools): build it, embed ``--queries`` short texts one by one (a search embeds its query
alone), the same number of memory-sized texts one by one, then ``--batch`` memory texts in one
``embed`` call. Texts are synthetic (slot templates, seeded) unless ``--locomo`` names the LoCoMo
zip: then its questions and turns, read in place. The last column is the mean and minimum cosine
of each embedder's vectors with ``minilm-numpy``'s (the float32 model) on the memory texts.
Embedders whose packages are missing are reported as such.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

SUBJECTS = ["the auth service", "the billing job", "Caroline", "the churn dashboard", "our CI"]
VERBS = ["fixed", "deployed", "rolled back", "reviewed", "profiled", "documented", "migrated"]
OBJECTS = [
    "the login timeout",
    "a memory leak in the image resizer",
    "the nightly export to the warehouse",
    "ticket ENG-4312",
    "the retry policy for webhook deliveries",
    "camelCaseHandler in v2.3.1",
]
TAILS = [
    "after the incident on 2024-05-01",
    "because the p99 latency doubled under load",
    "and wrote down what we learned for the next on-call engineer",
    "so that the weekly report no longer misses the late events",
    "; the team agreed to revisit it after the quarterly planning",
]


def synthetic(count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` questions and ``count`` memories built from the slot lists above."""
    rng = random.Random(seed)
    queries = [
        f"When was {rng.choice(OBJECTS)} {rng.choice(VERBS)} by {rng.choice(SUBJECTS)}?"
        for _ in range(count)
    ]
    memories = [
        f"{rng.choice(SUBJECTS).capitalize()}: we {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
        f"{rng.choice(TAILS)}, then {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."
        for _ in range(count)
    ]
    return queries, memories


def locomo(path: Path, count: int) -> tuple[list[str], list[str]]:
    """The first ``count`` questions and turns of the LoCoMo zip (read in place, not copied)."""
    queries: list[str] = []
    memories: list[str] = []
    with zipfile.ZipFile(path) as archive:
        for name in sorted(n for n in archive.namelist() if n.endswith(".json")):
            conversation = json.loads(archive.read(name))
            queries += [qa["question"] for qa in conversation["qa"]]
            for key, turns in conversation.items():
                if re.fullmatch(r"session_\d+", key) and isinstance(turns, list):
                    memories += [f"{t['speaker']}: {t['text']}" for t in turns]
    return queries[:count], memories[:count]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1e3, q))


def run_one(args: argparse.Namespace) -> None:
    """Child process: measure one embedder, print one JSON line, save the memory vectors."""
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    queries, memories = texts["queries"], texts["memories"]
    if args.torch_threads and args.one == "minilm":
        import torch

        torch.set_num_threads(args.torch_threads)
    from engine.errors import EmbedderUnavailableError
    from projections.embedders import get_embedder

    started = time.perf_counter()
    try:
        embedder = get_embedder(args.one)
    except EmbedderUnavailableError as exc:
        print(json.dumps({"name": args.one, "missing": str(exc)[:120]}))
        return
    load = time.perf_counter() - started
    embedder.embed_one(queries[0])  # warm-up: caches, lazy allocations
    timings: dict[str, list[float]] = {"query": [], "memory": []}
    for kind, items in (("query", queries), ("memory", memories)):
        for text in items:
            t0 = time.perf_counter()
            embedder.embed_one(text)
            timings[kind].append(time.perf_counter() - t0)
    batch = memories[: args.batch]
    t0 = time.perf_counter()
    vectors = embedder.embed(batch)
    batched = (time.perf_counter() - t0) / len(batch)
    np.save(Path(args.out) / f"{args.one}.npy", vectors)
    print(
        json.dumps(
            {
                "name": args.one,
                "load_s": load,
                "query": (percentile(timings["query"], 50), percentile(timings["query"], 99)),
                "memory": (percentile(timings["memory"], 50), percentile(timings["memory"], 99)),
                "batched_ms": batched * 1e3,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--embedders", default="hashing,minilm-onnx,minilm-numpy,minilm")
    parser.add_argument("--queries", type=int, default=300, help="texts timed one by one, each")
    parser.add_argument("--batch", type=int, default=300, help="memory texts in one embed call")
    parser.add_argument("--locomo", type=Path, help="the LoCoMo zip, for real questions/turns")
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    count = max(args.queries, args.batch)
    queries, memories = locomo(args.locomo, count) if args.locomo else synthetic(count, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps({"queries": queries[: args.queries], "memories": memories}))
        rows = []
        for name in args.embedders.split(","):
            command = [sys.executable, __file__, "--one", name, "--texts", str(texts)]
            command += ["--out", tmp, "--batch", str(args.batch)]
            command += ["--torch-threads", str(args.torch_threads)]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        reference = Path(tmp) / "minilm-numpy.npy"
        exact = np.load(reference) if reference.exists() else None
        print(
            f"texts: {'LoCoMo' if args.locomo else 'synthetic'}, {args.queries} queries, ", end=""
        )
        print(f"{len(memories)} memories, batch {args.batch}; torch threads {args.torch_threads}")
        print(
            "| embedder | load (s) | one query p50 / p99 (ms) | one memory p50 / p99 (ms) "
            "| batched (ms per text) | cosine with minilm-numpy mean / min |"
        )
        print("|---|---|---|---|---|---|")
        for row in rows:
            if "missing" in row:
                print(f"| {row['name']} | not installed: {row['missing']} |")
                continue
            agreement = "-"
            if exact is not None and row["name"] != "hashing":
                cosines = np.sum(np.load(Path(tmp) / f"{row['name']}.npy") * exact, axis=1)
                agreement = f"{cosines.mean():.6f} / {cosines.min():.6f}"
            print(
                f"| {row['name']} | {row['load_s']:.2f} | {row['query'][0]:.2f} / "
                f"{row['query'][1]:.2f} | {row['memory'][0]:.2f} / {row['memory'][1]:.2f} | "
                f"{row['batched_ms']:.2f} | {agreement} |"
            )


if __name__ == "__main__":
    main()
