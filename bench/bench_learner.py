"""The learner's fold cost as history grows: does applying one more event stay flat?

Usage::

    .venv/bin/python bench/bench_learner.py          # 100,000 memories + 10,000 workflows
    .venv/bin/python bench/bench_learner.py --memories 300000 --workflows 30000

Pure in-process (no server): ``LearnerState.apply`` over the query benchmark's workload
(``query_workload.generate``: task.executed summaries carrying ticket ids such as ``OPS-1060``,
so the summary vocabulary grows with the stream, as real summaries with ids, hashes and paths
do; and workflow.executed with four candidate step sequences per task type). It prints the CPU
cost per event for every ``--every`` events, the total, the number of distinct summary terms the
state holds at the end, and the announcements decided. A flat per-event cost is the claim; the
learner has no raw library to be compared with.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from query_workload import generate

from projections.learning.scoring import LearnerConfig
from projections.learning.state import LearnerState
from projections.records import SequencedEvent
from projections.task_types import KeywordTaskTypeClassifier


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--workflows", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=10_000, help="events per reported slice")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    events = list(generate(args.memories, args.workflows, args.seed))
    state = LearnerState(LearnerConfig(), KeywordTaskTypeClassifier())
    print(f"{len(events):,} events ({args.memories:,} task.executed, {args.workflows:,} workflows)")
    print(f"{'events':>10} {'CPU us/event (slice)':>22}")
    started = slice_start = time.process_time()
    for sequence, event in enumerate(events, 1):
        state.apply(SequencedEvent(sequence, event.occurred_at, event))
        if sequence % args.every == 0 or sequence == len(events):
            now = time.process_time()
            size = sequence % args.every or args.every
            print(f"{sequence:>10,} {(now - slice_start) / size * 1e6:>22.1f}")
            slice_start = now
    total = time.process_time() - started
    terms = sum(len(o.success_terms) + len(o.failure_terms) for o in state.outcomes.values())
    print(
        f"total {total:.1f} s CPU ({total / len(events) * 1e6:.1f} us/event); "
        f"{terms:,} distinct summary terms held; {len(state.pending):,} announcements decided"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
