"""Snapshots and rebuild: full replay against restore-from-snapshot + a tail, as history grows.

Usage::

    .venv/bin/python bench/bench_snapshots.py                       # 250k, 500k, 1M events
    .venv/bin/python bench/bench_snapshots.py --sizes 250000,500000
    .venv/bin/python bench/bench_snapshots.py --sizes 10000,20000 --tail 2000 --verify
    .venv/bin/python bench/bench_snapshots.py --nats-url nats://127.0.0.1:4222

One run grows ONE stream (embedded nats-server in a temporary directory unless ``--nats-url``)
to each size N of ``--sizes`` in turn, appending a realistic mix (``history`` below) with
``EventLog.append_many`` in chunks of ``--chunk`` events, each chunk followed by the
pattern.learned events the engine's learner announces for it (see ``Announcer``), and at each
N measures:

(1) full replay: ``consumers.replay.replay`` of the whole stream over
    ``open_projections(...).persistent`` (every persistent projection) in a fresh data directory,
    from
    opening the projections to closing them (everything flushed to disk);
(2) snapshot: ``take_snapshot`` into a ``DirectorySnapshots`` store. The snapshotting
    projection (``<data dir>/snapshot-work``) is incremental: the first snapshot replays the
    whole history into an empty work directory, later ones only the events since the previous
    snapshot (the previous size's tail included). Both kinds are reported, labelled;
(3) a tail of ``--tail`` events is appended, then rebuild: ``restore_latest`` into a new empty
    directory, ``open_projections`` there, ``replay`` of everything after the snapshot (the
    tail, its pattern.learned and the snapshot's own memory.snapshot.created), close. The
    time spent in the projections' periodic whole-state saves is reported apart.

The ratio rebuild / full replay is the figure of issue 6 (target: at most 10%, and flat as
history grows). With ``--verify`` a second full replay after the tail is compared with the
rebuilt state (table digests, learner state, memory records); that doubles the replay work, so it
is meant for small sizes.

With ``--nats-url`` the server must be a scratch one: the stream ``--stream`` (subjects
``memory.>``) is deleted and created again, and no other stream there may capture ``memory.>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_projection import AGENTS, KINDS, NAMESPACES, REQUESTS, STEPS
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from consumers.replay import replay
from consumers.snapshotting import restore_latest, take_snapshot
from engine.connection import connect
from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    KnowledgeAdded,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    make_event,
)
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import AppendResult, EventLog
from projections.base import Projection
from projections.learning.persistence import dump_state
from projections.learning.projection import LearnerProjection
from projections.projection_set import open_projections
from projections.records import SequencedEvent
from projections.snapshots.stores import DirectorySnapshots
from projections.tables import table_digests
from projections.task_types import TASK_TYPES

TARGET_RATIO = 0.10

WORDS = tuple(
    (
        "the agent inspected failing tests in the parser module and found an off by one error "
        "while handling trailing commas so it rewrote the tokenizer loop added regression cases "
        "and verified the build on both python versions before opening a pull request with notes "
        "deploy staging canary rollback latency cache index query schema migration retry queue "
        "timeout memory leak worker thumbnail billing invoice export report dashboard alert"
    ).split()
)
# Agents repeat a few procedures per kind of task (what the learner is there to find); one
# workflow in ten is a one-off variation, so distinct step sequences keep growing slowly.
PROCEDURES = tuple(
    tuple(random.Random(f"procedure-{n}").sample(STEPS, 2 + n % 5)) for n in range(24)
)


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def _data(i: int, rng: random.Random) -> EventData:
    """Event ``i`` of the history: the shape of tests/histories.py ``realistic_history``
    (sessions of ten events), with realistic text and a knowledge document now and then."""
    session, kind = i // 10, i % 10
    sid = f"s{session:08d}"
    if kind == 0:
        return SessionStarted(session_id=sid, goal=_text(rng, 5, 15))
    if kind == 9:
        return SessionEnded(session_id=sid, success=rng.random() < 0.8)
    if kind in (1, 2, 3, 4):
        given = rng.random() < 0.5
        return WorkflowExecuted(
            task_type=rng.choice(TASK_TYPES) if given else None,
            request=rng.choice(REQUESTS) + " " + _text(rng, 3, 12)
            if (not given or rng.random() < 0.7)
            else None,
            workflow_steps=list(rng.choice(PROCEDURES))
            if rng.random() < 0.9
            else rng.sample(STEPS, rng.randint(2, 6)),
            success=rng.random() < 0.8,
            duration=round(rng.uniform(0.5, 120.0), 3),
            cost=round(rng.uniform(0.001, 0.5), 4) if rng.random() < 0.9 else None,
            metadata={"model": "gpt-4o-mini", "tokens": rng.randint(200, 9000)},
        )
    if kind in (5, 6):
        success = rng.random() < 0.8
        return TaskExecuted(
            task_id=f"{sid}-t{kind}",
            execution_summary=_text(rng, 20, 60),
            success=success,
            task_type=rng.choice(TASK_TYPES) if rng.random() < 0.5 else None,
            error_patterns=[] if success else [_text(rng, 3, 6)],
            metadata={"attempt": 1, "files": rng.randint(1, 12)},
        )
    if kind == 7:
        return DecisionLogged(
            decision_id=f"{sid}-d",
            actor=rng.choice(AGENTS),
            decision=_text(rng, 4, 10),
            rationale=_text(rng, 10, 30),
            context=_text(rng, 5, 15),
            alternatives=[_text(rng, 2, 5) for _ in range(rng.randint(1, 3))],
            task_id=f"{sid}-t5",
        )
    if session % 5 == 4:  # one session in five records a document instead of an outcome
        return KnowledgeAdded(
            kind=rng.choice(KINDS),
            title=_text(rng, 3, 8),
            content=_text(rng, 40, 120),
            knowledge_id=f"kb-{rng.randint(1, 2_000)}",  # some replace an earlier version
            tags=rng.sample(("python", "nats", "duckdb", "ops", "api", "db"), 2),
            metadata={"source": "wiki"},
        )
    return DecisionOutcome(
        decision_id=f"{sid}-d", success=rng.random() < 0.75, notes=_text(rng, 3, 10)
    )


def history(start: int, count: int, seed: int) -> Iterator[Event]:
    """Events ``start`` .. ``start + count - 1`` of one deterministic history (any slice of it
    can be generated on its own, so the stream grows without holding the history in memory).

    Per ten events: session.started, 4 workflow.executed (90% one of 24 recurring procedures,
    10% a one-off step sequence), 2 task.executed (20-60 word summaries), decision.logged,
    decision.outcome (or knowledge.added in one session of five), session.ended; 30% of the
    events become vector memories (tasks, decisions, documents), 5 namespaces."""
    for i in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + i)
        session = i // 10
        yield make_event(
            _data(i, rng),
            namespace=NAMESPACES[session % len(NAMESPACES)],
            agent_id=AGENTS[session % len(AGENTS)],
            session_id=f"s{session:08d}",
            event_id=f"bench-snap-{seed}-{i:010d}",
        )


class Announcer:
    """What the live engine adds to the log: the learner's pattern.learned events.

    A live engine's learner publishes its announcements once caught up with the stream; they
    are part of every real history, and a replay prunes the learner's pending list with them
    (a history without them would leave every announcement pending forever). So, after each
    appended chunk, an in-memory learner (the engine's code) folds the chunk in, the bench
    appends what it decided to announce, and folds those back in, as the engine would.
    """

    def __init__(self) -> None:
        self.learner = LearnerProjection(None)
        self.announced = 0

    def fold(self, events: Sequence[Event], results: Sequence[AppendResult]) -> None:
        items = [
            SequencedEvent(sequence=r.sequence, stored_at=e.occurred_at, event=e)
            for e, r in zip(events, results, strict=True)
            if not r.duplicate
        ]
        if items:
            self.learner.apply(items, [], items[-1].sequence)

    async def announce(self, log: EventLog) -> None:
        pending = self.learner.take_pending()
        if pending:
            self.fold(pending, await appended(log, pending))
            self.announced += len(pending)


async def appended(log: EventLog, events: Sequence[Event]) -> list[AppendResult]:
    results = await log.append_many(events)
    failed = [r for r in results if not isinstance(r, AppendResult)]
    if failed:
        raise SystemExit(f"append: {len(failed)} failed, first: {failed[0]}")
    return [r for r in results if isinstance(r, AppendResult)]


async def grow(
    log: EventLog, announcer: Announcer, start: int, count: int, seed: int, chunk: int
) -> None:
    """Append history events ``start`` .. ``start + count - 1`` in chunks, each followed by
    the pattern.learned events a live engine would have announced; fail loudly."""
    events = history(start, count, seed)
    while batch := list(itertools.islice(events, chunk)):
        announcer.fold(batch, await appended(log, batch))
        await announcer.announce(log)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


@dataclass
class Row:
    size: int
    generated: int = 0
    announced: int = 0
    full_s: float = 0.0
    full_cpu_s: float = 0.0
    full_events: int = 0
    full_dir_mb: float = 0.0
    full_saves_s: float = 0.0
    snapshot_kind: str = ""
    snapshot_s: float = 0.0
    snapshot_advance_s: float = 0.0
    snapshot_events: int = 0
    snapshot_mb: float = 0.0
    snapshot_parts: dict[str, float] = field(default_factory=dict)
    rebuild_s: float = 0.0
    restore_s: float = 0.0
    open_s: float = 0.0
    tail_s: float = 0.0
    tail_events: int = 0
    close_s: float = 0.0
    saves_s: float = 0.0
    rss_mb: float = 0.0
    load: float = 0.0
    verified: str = "-"
    projections: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.rebuild_s / self.full_s


def time_saves(projections: Sequence[Projection]) -> list[float]:
    """Time the periodic state saves of ``projections`` (those with a ``_save``: vectors,
    learner, sessions save their state when their SavePolicy says so and on close; tables
    commit per batch); the returned list's only item accumulates their wall time. Measurement
    only: the saves themselves are unchanged."""
    spent = [0.0]

    def timed(save: Callable[[], None]) -> Callable[[], None]:
        def wrapper() -> None:
            began = time.perf_counter()
            try:
                save()
            finally:
                spent[0] += time.perf_counter() - began

        return wrapper

    for projection in projections:
        save = getattr(projection, "_save", None)
        if callable(save):
            projection._save = timed(save)  # type: ignore[attr-defined]
    return spent


def state_of(settings: Settings) -> dict[str, Any]:
    """What a rebuild must reproduce (for --verify): table digests, learner state, memories."""
    projections = open_projections(settings)
    try:
        return {
            "tables": table_digests(projections.store.reader()),
            "learner": dump_state(projections.learner.state),
            "memories": {k: m.to_json() for k, m in projections.vectors.memories.items()},
        }
    finally:
        projections.close()


async def full_replay(nc: NatsClient, settings: Settings, directory: Path, row: Row) -> None:
    """Replay the whole stream into the empty ``directory``: open, replay, close."""
    target = settings.model_copy(update={"data_dir": directory})
    gc.collect()
    cpu, began = time.process_time(), time.perf_counter()
    projections = open_projections(target)
    row.projections = [p.name for p in projections.persistent]
    saves = time_saves(projections.persistent)
    try:
        report = await replay(nc.jetstream(), settings.stream.name, projections.persistent)
    finally:
        projections.close()
    row.full_s, row.full_cpu_s = time.perf_counter() - began, time.process_time() - cpu
    row.full_saves_s = saves[0]
    row.full_events = report.messages
    row.full_dir_mb = dir_mb(directory)


async def snapshot(
    nc: NatsClient, settings: Settings, store: DirectorySnapshots, row: Row, first: bool
) -> int:
    """take_snapshot at the stream's end; returns the sequence it covers."""
    advanced = 0
    last_batch = time.perf_counter()

    def on_batch(count: int) -> None:
        nonlocal advanced, last_batch
        advanced += count
        last_batch = time.perf_counter()

    gc.collect()
    began = time.perf_counter()
    manifest = await take_snapshot(nc, settings, store, on_batch=on_batch)
    row.snapshot_s = time.perf_counter() - began
    row.snapshot_advance_s = last_batch - began if advanced else 0.0
    row.snapshot_events = advanced
    row.snapshot_kind = "first (from empty)" if first else "incremental"
    row.snapshot_mb = manifest.total_bytes / 1e6
    parts: dict[str, float] = {}
    for name, entry in manifest.files.items():
        part = name.split("/", 1)[0]
        parts[part] = parts.get(part, 0.0) + entry.size / 1e6
    row.snapshot_parts = parts
    return manifest.sequence


async def rebuild(
    nc: NatsClient, settings: Settings, store: DirectorySnapshots, directory: Path, row: Row,
    covered: int, last_seq: int,
) -> None:  # fmt: skip
    """restore_latest into the empty ``directory``, then replay the tail: what a new engine
    with an empty data directory does before it serves."""
    js = nc.jetstream()
    target = settings.model_copy(update={"data_dir": directory})
    gc.collect()
    began = time.perf_counter()
    manifest = await restore_latest(js, target, store, directory)
    restored = time.perf_counter()
    if manifest is None or manifest.sequence != covered:
        raise SystemExit(f"rebuild: restored {manifest and manifest.sequence}, not {covered}")
    projections = open_projections(target)
    opened = time.perf_counter()
    saves = time_saves(projections.persistent)
    try:
        report = await replay(js, settings.stream.name, projections.persistent)
        replayed = time.perf_counter()
    finally:
        projections.close()
    done = time.perf_counter()
    if report.last_sequence != last_seq or report.messages != last_seq - covered:
        raise SystemExit(f"rebuild: tail replay ended at {report.last_sequence}, not {last_seq}")
    row.rebuild_s = done - began
    row.restore_s, row.open_s = restored - began, opened - restored
    row.tail_s, row.close_s = replayed - opened, done - replayed
    row.tail_events = report.messages
    row.saves_s = saves[0]


async def bench(args: argparse.Namespace, url: str, tmp: Path) -> list[Row]:
    nc = await connect(NatsSettings(), url)
    settings = Settings(
        data_dir=tmp / "engine",
        nats=NatsSettings(url=url),
        stream=StreamSettings(name=args.stream),
    )
    log = EventLog(nc, settings.stream)
    store = DirectorySnapshots(tmp / "snapshots")
    rows: list[Row] = []
    announcer = Announcer()
    try:
        with contextlib.suppress(NotFoundError):
            await log.js.delete_stream(args.stream)
        await log.ensure()
        generated = 0
        for size in args.sizes:
            row = Row(size=size, load=os.getloadavg()[0])
            last = (await log.state()).last_sequence
            if size <= last:
                raise SystemExit(f"size {size:,} is not past the stream's {last:,} events")
            began = time.perf_counter()
            while last < size:  # announcements make the last chunk overshoot a little
                count = min(args.chunk, size - last)
                await grow(log, announcer, generated, count, args.seed, args.chunk)
                generated += count
                last = (await log.state()).last_sequence
            state = await log.state()
            row.size, row.generated, row.announced = last, generated, announcer.announced
            grown_s, stored_mb = time.perf_counter() - began, state.bytes / 1e6
            say(f"[{size:,}] stream at {last:,} events ({generated:,} generated, "
                f"{announcer.announced:,} pattern.learned so far), grown in "
                f"{grown_s:.1f} s ({stored_mb:.0f} MB stored)")  # fmt: skip

            await full_replay(nc, settings, tmp / f"full-{size}", row)
            shutil.rmtree(tmp / f"full-{size}")
            say(f"[{size:,}] full replay {row.full_s:.1f} s "
                f"({row.full_events / row.full_s:,.0f} events/s; "
                f"state saves {row.full_saves_s:.1f} s)")  # fmt: skip

            covered = await snapshot(nc, settings, store, row, first=not rows)
            say(f"[{size:,}] snapshot ({row.snapshot_kind}, {row.snapshot_events:,} events "
                f"advanced) {row.snapshot_s:.1f} s, {row.snapshot_mb:.1f} MB")  # fmt: skip

            await grow(log, announcer, generated, args.tail, args.seed, args.chunk)
            generated += args.tail
            last_seq = (await log.state()).last_sequence
            await rebuild(nc, settings, store, tmp / f"rebuild-{size}", row, covered, last_seq)
            say(f"[{size:,}] rebuild {row.rebuild_s:.2f} s (restore {row.restore_s:.2f}, open "
                f"{row.open_s:.2f}, tail {row.tail_events:,} in {row.tail_s:.2f}, "
                f"close {row.close_s:.2f}; state saves {row.saves_s:.2f}); "
                f"rebuild/full {row.ratio:.1%}")  # fmt: skip
            if args.verify:
                await full_replay(nc, settings, tmp / f"check-{size}", Row(size=size))
                same = state_of(
                    settings.model_copy(update={"data_dir": tmp / f"check-{size}"})
                ) == state_of(settings.model_copy(update={"data_dir": tmp / f"rebuild-{size}"}))
                row.verified = "equal" if same else "DIFFERENT"
                shutil.rmtree(tmp / f"check-{size}")
                say(f"[{size:,}] rebuilt state vs full replay: {row.verified}")
            shutil.rmtree(tmp / f"rebuild-{size}")
            row.rss_mb = peak_rss_mb()
            rows.append(row)
    finally:
        with contextlib.suppress(Exception):
            await log.js.delete_stream(args.stream)
        await nc.drain()
    return rows


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def report(args: argparse.Namespace, rows: Sequence[Row]) -> None:
    names = ", ".join(args.projections)
    print(f"\nTail {args.tail:,} events; replay batch 5,000 (default); embedder hashing; "
          f"{os.cpu_count()} CPUs; projections replayed: {names}\n")  # fmt: skip
    print("| history N | full replay s (events/s) | snapshot s (kind, events advanced) | "
          "snapshot MB | rebuild s (snapshot + tail) | rebuild / full | peak RSS MB |")  # fmt: skip
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.size:,} | {r.full_s:.1f} ({r.full_events / r.full_s:,.0f}) | "
              f"{r.snapshot_s:.1f} ({r.snapshot_kind}, {r.snapshot_events:,}) | "
              f"{r.snapshot_mb:.1f} | {r.rebuild_s:.2f} | **{r.ratio:.1%}** | "
              f"{r.rss_mb:,.0f} |")  # fmt: skip
    print("\nRebuild split (s) and snapshot detail:\n")
    print("| history N | restore_latest | open_projections | replay tail (events) | close | "
          "of which state saves | snapshot: advance / pack+store | snapshot MB by part | "
          "full replay: state saves s / client CPU s | full replay dir MB | load avg | "
          "verified |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|")
    for r in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.snapshot_parts.items()))
        print(f"| {r.size:,} | {r.restore_s:.2f} | {r.open_s:.2f} | "
              f"{r.tail_s:.2f} ({r.tail_events:,}) | {r.close_s:.2f} | {r.saves_s:.2f} | "
              f"{r.snapshot_advance_s:.1f} / {r.snapshot_s - r.snapshot_advance_s:.1f} | "
              f"{parts} | {r.full_saves_s:.1f} / {r.full_cpu_s:.1f} | {r.full_dir_mb:.0f} | "
              f"{r.load:.1f} | {r.verified} |")  # fmt: skip
    print("\nStream composition (history N = the stream's last sequence when measured):\n")
    for r in rows:
        print(f"- {r.size:,}: {r.generated:,} generated events (earlier tails included), "
              f"{r.announced:,} pattern.learned (announced by the learner, as a live engine "
              f"would), {r.size - r.generated - r.announced} memory.snapshot.created")  # fmt: skip
    worst = max(r.ratio for r in rows)
    verdict = "meets" if worst <= TARGET_RATIO else "misses"
    print(f"\nworst rebuild/full {worst:.1%}: {verdict} the target of <= {TARGET_RATIO:.0%}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="250000,500000,1000000",
                        help="history sizes, ascending (250000,500000,1000000)")  # fmt: skip
    parser.add_argument("--tail", type=int, default=10_000, help="events after the snapshot")
    parser.add_argument("--chunk", type=int, default=5_000, help="events per append_many")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare each rebuild with a full replay (doubles the work)",
    )
    parser.add_argument("--nats-url", help="use this (scratch) server instead of an embedded one")
    parser.add_argument("--stream", default="ENGRAM_BENCH_SNAP", help="stream to (re)create")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    if args.sizes != sorted(set(args.sizes)):
        parser.error("--sizes must be ascending and distinct")
    configure_logging(level="warning")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="engram-bench-snap-") as tmp:
        if args.nats_url:
            rows = asyncio.run(bench(args, args.nats_url, Path(tmp)))
        else:
            with EmbeddedServer(Path(tmp) / "nats") as server:
                rows = asyncio.run(bench(args, server.url, Path(tmp)))
    args.projections = rows[0].projections if rows else []
    report(args, rows)
    print(f"\ntotal wall time {time.perf_counter() - began:.0f} s; 1-minute load average at "
          f"the end {os.getloadavg()[0]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
