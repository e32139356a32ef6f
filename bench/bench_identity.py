"""What remembering the envelope ids costs: memory per million ids, time per event, disk.

Usage::

    .venv/bin/python bench/bench_identity.py              # 1,000,000 ids
    .venv/bin/python bench/bench_identity.py --ids 200000

Pure in-process. Prints the memory a ``SeenIds`` holds after recording ``--ids`` random UUIDs
(tracemalloc counts numpy's buffers too) next to a Python set of the same id strings, the cost
of ``first()`` for a new id and for a repeat (timed without tracemalloc), and the size on disk of
the tables projection's ``event_ids`` table for that many events (2,000-event batches, as the
runner writes them).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from projections.identity import SeenIds, event_key
from projections.tables.schema import TABLES, arrow_schema, create_statements


def _memory(ids: Sequence[str]) -> tuple[float, float]:
    tracemalloc.start()
    seen = SeenIds()
    for event_id in ids:
        seen.first(event_id)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held, peak


def _set_memory(ids: Sequence[str]) -> float:
    tracemalloc.start()
    strings = {str(uuid.UUID(event_id)) for event_id in ids}  # fresh copies of the strings
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del strings
    return held


def _disk(ids: Sequence[str]) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "ids.duckdb"
        connection = duckdb.connect(str(path))
        event_ids = [s for s in create_statements() if "TABLE IF NOT EXISTS event_ids " in s]
        connection.execute(event_ids[0])
        schema = arrow_schema(TABLES["event_ids"])
        for start in range(0, len(ids), 2_000):
            chunk = ids[start : start + 2_000]
            _batch = pa.table(
                {
                    "sequence": np.arange(start + 1, start + 1 + len(chunk), dtype=np.int64),
                    "event_key": pa.array([event_key(i) for i in chunk], pa.uint64()),
                    "duplicate": np.zeros(len(chunk), dtype=bool),
                },
                schema=schema,
            )
            connection.execute("INSERT INTO event_ids BY NAME SELECT * FROM _batch")
        connection.execute("CHECKPOINT")
        connection.close()
        return path.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    ids = [str(uuid.uuid4()) for _ in range(args.ids)]
    per_million = 1e6 / args.ids / 1e6  # bytes -> MB per million ids

    held, peak = _memory(ids)
    seen = SeenIds()
    started = time.perf_counter()
    for event_id in ids:
        seen.first(event_id)
    new_us = (time.perf_counter() - started) / len(ids) * 1e6
    repeats = ids[: min(len(ids), 200_000)]
    started = time.perf_counter()
    for event_id in repeats:
        seen.first(event_id)
    repeat_us = (time.perf_counter() - started) / len(repeats) * 1e6

    print(f"{args.ids:,} ids")
    print(f"SeenIds: {held * per_million:.1f} MB per million ids (peak {peak * per_million:.1f})")
    sample = ids[:200_000]
    print(f"Python set of the id strings: {_set_memory(sample) / len(sample):.1f} MB per million")
    print(f"first(): {new_us:.2f} us per new id, {repeat_us:.2f} us per repeat")
    print(f"event_ids table on disk: {_disk(ids) * per_million:.1f} MB per million events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
