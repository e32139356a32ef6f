"""Session compaction (issue 6): time and compression for the reference case, a session of 10
workflows, against the original design's figures (45 ms per compaction, 73% compression).

Usage::

    .venv/bin/python bench/bench_sessions.py                      # 1,000 sessions of 10 workflows
    .venv/bin/python bench/bench_sessions.py --workflows 100 --tasks 50 --decisions 20

Pure in-process (no server): the compactor's work does not depend on the transport. Each
session has the reference shape: session.started, ``--workflows`` workflow.executed (six
orchestration steps, truncated at a random point, random success, duration, cost and a
validation score in metadata), optionally ``--tasks`` task.executed (30-60 word summaries, a
third failing with error patterns) and ``--decisions`` decision.logged + decision.outcome, then
session.ended. Sessions are interleaved two at a time, as live traffic would be.

Per session it reports:

- ``compaction_duration_ms``: the figure published in session.compacted (building the summary
  and compressing it, timed with ``time.perf_counter`` inside the compactor);
- fold time: applying the session's events to the compactor (facts and the encoded size of each
  event: the work spread over the session's life), and fold + compaction end to end;
- original and compressed sizes, the compression ratio, and for reference the ratio zlib alone
  would reach on the raw events (level 9), so summarising and compressing can be told apart;
- the saved record log's bytes per compacted session.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    encode_event,
    make_event,
)
from projections.records import SequencedEvent
from projections.sessions import SessionCompactor
from projections.sessions.persistence import RECORDS_FILE

STEPS = (
    "memory_recall",
    "htdag_decomposition",
    "halo_routing",
    "aop_validation",
    "daao_optimization",
    "a2a_execution",
)
REQUESTS = (
    "Implement a binary search algorithm",
    "Design and implement a REST API",
    "Analyze churn by plan and write a report",
    "Fix the crash in the parser",
    "Write unit tests for the billing module",
    "Deploy the API to staging",
)
WORDS = "parser api cache retry timeout schema index query token budget worker queue".split()
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def session_events(rng: random.Random, sid: str, args: argparse.Namespace) -> list[EventData]:
    payloads: list[EventData] = [SessionStarted(session_id=sid, goal=rng.choice(REQUESTS))]
    for _ in range(args.workflows):
        payloads.append(
            WorkflowExecuted(
                request=rng.choice(REQUESTS),
                workflow_steps=list(STEPS[: rng.randint(3, 6)]),
                success=rng.random() < 0.8,
                duration=round(rng.uniform(5, 90), 2),
                cost=round(rng.uniform(0.001, 0.05), 4),
                metadata={"validation_score": round(rng.uniform(0.6, 1.0), 2)},
            )
        )
    for i in range(args.tasks):
        ok = rng.random() < 0.67
        payloads.append(
            TaskExecuted(
                task_id=f"{sid}-t{i}",
                execution_summary=" ".join(rng.choices(WORDS, k=rng.randint(30, 60))),
                success=ok,
                error_patterns=[] if ok else rng.sample(["timeout", "oom", "flaky test"], 2),
            )
        )
    for i in range(args.decisions):
        payloads.append(
            DecisionLogged(
                decision_id=f"{sid}-d{i}",
                actor="planner",
                decision=" ".join(rng.choices(WORDS, k=12)),
                rationale=" ".join(rng.choices(WORDS, k=25)),
                alternatives=["a", "b"],
            )
        )
        payloads.append(DecisionOutcome(decision_id=f"{sid}-d{i}", success=rng.random() < 0.7))
    payloads.append(SessionEnded(session_id=sid, success=True))
    return payloads


def history(args: argparse.Namespace) -> tuple[list[SequencedEvent], dict[str, int]]:
    """Every session's events, two sessions interleaved at a time; raw bytes per session."""
    rng = random.Random(args.seed)
    items: list[SequencedEvent] = []
    raw: dict[str, bytes] = {}
    clock = 0
    for pair in range(0, args.sessions, 2):
        streams = []
        for sid in (f"session_{pair}", f"session_{pair + 1}")[: args.sessions - pair]:
            streams.append([(sid, p) for p in session_events(rng, sid, args)])
        while any(streams):
            for stream in streams:
                if stream:
                    sid, payload = stream.pop(0)
                    clock += 1
                    event: Event = make_event(
                        payload,
                        namespace="orchestrator",
                        agent_id="genesis-orchestrator",
                        session_id=sid,
                        occurred_at=T0 + timedelta(seconds=clock),
                        event_id=f"evt-{clock}",
                    )
                    raw[sid] = raw.get(sid, b"") + encode_event(event)
                    items.append(SequencedEvent(clock, T0, event))
    return items, {sid: len(zlib.compress(body, 9)) for sid, body in raw.items()}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _stats(values: list[float]) -> str:
    return (
        f"mean {statistics.fmean(values):.3f}  p50 {statistics.median(values):.3f}  "
        f"p99 {_p99(values):.3f}  max {max(values):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--workflows", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=0)
    parser.add_argument("--decisions", type=int, default=0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    items, zlib_only = history(args)
    fold_ms: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        compactor = SessionCompactor(Path(scratch), save_every=10**9)
        began = time.perf_counter()
        for item in items:
            start = time.perf_counter()
            compactor.apply([item], [], item.sequence)
            sid = item.event.session_id or ""
            fold_ms[sid] = fold_ms.get(sid, 0.0) + (time.perf_counter() - start) * 1_000
        total_s = time.perf_counter() - began
        compactor.close()
        log_bytes = (Path(scratch) / RECORDS_FILE).stat().st_size
        records = list(compactor.state.records.values())
    assert len(records) == args.sessions, "every session is compacted exactly once"
    durations = [r.compaction_duration_ms for r in records]
    ratios = [r.compression_ratio for r in records]
    zlib_ratios = [1 - zlib_only[r.session_id] / r.original_size_bytes for r in records]
    figures = {
        "sessions": len(records),
        "memories_per_session": records[0].num_memories,
        "events": len(items),
        "compaction_duration_ms_mean": statistics.fmean(durations),
        "compaction_duration_ms_p99": _p99(durations),
        "fold_ms_per_session_mean": statistics.fmean(fold_ms.values()),
        "end_to_end_ms_per_session_mean": statistics.fmean(fold_ms.values())
        + statistics.fmean(durations),
        "events_per_second": len(items) / total_s,
        "original_size_bytes_mean": statistics.fmean(r.original_size_bytes for r in records),
        "compressed_size_bytes_mean": statistics.fmean(r.compressed_size_bytes for r in records),
        "compression_ratio_mean": statistics.fmean(ratios),
        "compression_ratio_min": min(ratios),
        "zlib_on_raw_events_ratio_mean": statistics.fmean(zlib_ratios),
        "patterns_extracted_mean": statistics.fmean(r.num_patterns_extracted for r in records),
        "record_log_bytes_per_session": log_bytes / len(records),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"{len(records)} sessions of {records[0].num_memories} memories "
        f"({args.workflows} workflows, {args.tasks} tasks, {args.decisions} decisions)"
    )
    print(f"compaction_duration_ms      {_stats(durations)}")
    print(f"fold ms per session         {_stats(list(fold_ms.values()))}")
    print(f"compactor throughput        {figures['events_per_second']:,.0f} events/s")
    print(
        f"sizes (mean)                {figures['original_size_bytes_mean']:,.0f} B -> "
        f"{figures['compressed_size_bytes_mean']:,.0f} B"
    )
    print(f"compression_ratio           {_stats(ratios)}")
    print(f"zlib alone on raw events    {_stats(zlib_ratios)}")
    print(f"patterns extracted (mean)   {figures['patterns_extracted_mean']:.2f}")
    print(f"record log per session      {figures['record_log_bytes_per_session']:,.0f} B")


if __name__ == "__main__":
    main()
