"""The learner reading back its own announcements: does it stay linear?

Usage::

    .venv/bin/python bench/bench_learner_readback.py            # 20,000 workflows, 250 namespaces
    .venv/bin/python bench/bench_learner_readback.py --workflows 60000

Pure in-process (no server): ``LearnerState.apply`` over workflow.executed events spread over
``--namespaces`` namespaces and four task types (two step sequences, random outcomes), which
decide many pattern versions; then every announcement decided is applied back as the
``pattern.learned`` event the engine would have published and read from the stream, and the
time of that read-back is printed. A live engine reads back every announcement it publishes.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime

from engine.events import WorkflowExecuted, make_event
from projections.learning.projection import announcement_event
from projections.learning.scoring import LearnerConfig
from projections.learning.state import LearnerState
from projections.records import SequencedEvent
from projections.task_types import KeywordTaskTypeClassifier

STORED_AT = datetime(2026, 11, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=20_000)
    parser.add_argument("--namespaces", type=int, default=250)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    state = LearnerState(LearnerConfig(), KeywordTaskTypeClassifier())
    sequence = 0
    for i in range(args.workflows):
        sequence += 1
        data = WorkflowExecuted(
            task_type=f"t{i % 4}",
            workflow_steps=["a", "b"] if i % 3 else ["a", "c"],
            success=rng.random() < 0.6,
            duration=1.0,
        )
        event = make_event(data, namespace=f"ns-{i % args.namespaces}")
        state.apply(SequencedEvent(sequence, STORED_AT, event))
    pending = state.take_pending()
    started = time.perf_counter()
    for announcement in pending:
        sequence += 1
        state.apply(SequencedEvent(sequence, STORED_AT, announcement_event(announcement)))
    took = time.perf_counter() - started
    left = len(state.take_pending())
    print(
        f"{args.workflows:,} workflows in {args.namespaces} namespaces decided "
        f"{len(pending):,} announcements; reading them back took {took:.2f} s "
        f"({took / max(1, len(pending)) * 1e6:.1f} us each); {left} left pending"
    )


if __name__ == "__main__":
    main()
