"""The learner's pure core: it finds what works, versions only grow, feedback counts, replays
decide the same, namespaces stay apart. (Any batching and a save/restore at any point: the
Projection contract, tests/test_projection_contract.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from engine.events import PatternFeedback, PatternLearned, WorkflowExecuted, make_event
from engram.demo.world import TASK_WORLD, World
from projections.learning import LearnerConfig, LearnerState
from projections.learning import queries as q
from projections.learning.persistence import dump_state, restore_state
from projections.records import SequencedEvent
from projections.task_types import KeywordTaskTypeClassifier

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def _state() -> LearnerState:
    return LearnerState(LearnerConfig(), KeywordTaskTypeClassifier())


def _seq(events: Sequence[object], start: int = 1) -> list[SequencedEvent]:
    return [
        SequencedEvent(start + i, T0 + timedelta(seconds=start + i), e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]


def _workflow(
    steps: Sequence[str],
    success: bool,
    task_type: str = "testing",
    namespace: str = "default",
    duration: float = 1.0,
) -> object:
    return make_event(
        WorkflowExecuted(
            task_type=task_type, workflow_steps=list(steps), success=success, duration=duration
        ),
        namespace=namespace,
    )


def test_learner_finds_the_truly_best_workflow_of_each_task_type() -> None:
    """With hidden success rates and 80 runs of every candidate (fixed seed), the best workflow
    by success rate is the truly best one for every task type."""
    world = World(seed=1234)
    events = []
    for spec in TASK_WORLD:
        for candidate in spec.candidates:
            for _ in range(80):
                outcome = world.run(spec, candidate, spec.requests[0])
                events.append(
                    _workflow(
                        candidate.steps, outcome.success, spec.task_type, duration=outcome.duration
                    )
                )
    state = _state()
    for item in _seq(events):
        state.apply(item)
    for spec in TASK_WORLD:
        best = q.best_workflow(state, "default", spec.task_type)
        assert best is not None
        assert tuple(best["workflow_steps"]) == spec.best.steps, spec.task_type
        assert best["is_best"] is True


def test_no_pattern_below_min_samples_and_versions_only_grow() -> None:
    """A workflow becomes a pattern at min_samples executions; each announcement of a pattern
    has a higher version than the one before."""
    state = _state()
    steps = ["plan", "code"]
    for item in _seq([_workflow(steps, True), _workflow(steps, True)]):
        state.apply(item)
    assert q.retrieve_workflow_patterns(state, "default", "testing", 0.0) == []
    assert state.take_pending() == []
    for item in _seq([_workflow(steps, i % 3 != 0) for i in range(30)], start=3):
        state.apply(item)
    versions: dict[str, list[int]] = {}
    for a in state.take_pending():
        versions.setdefault(a.data.pattern_id, []).append(a.data.version)
    assert versions
    for seen in versions.values():
        assert seen == list(range(1, len(seen) + 1))


def test_pending_drops_what_the_stream_already_has() -> None:
    """An announcement read back from the stream (any engine's) is not announced again."""
    state = _state()
    for item in _seq([_workflow(["a"], True) for _ in range(3)]):
        state.apply(item)
    [pending] = state.take_pending()
    echo = make_event(pending.data, event_id=pending.event_id)
    state.apply(_seq([echo], start=10)[0])
    assert state.take_pending() == []
    assert state.announced[pending.data.pattern_id] == 1


def test_feedback_moves_confidence_and_survives_replay() -> None:
    """Helpful feedback raises a pattern's confidence, unhelpful lowers it, and a replay of the
    same events (or a save/restore) gives the same confidence."""
    base = [_workflow(["plan", "code"], True) for _ in range(5)]
    state = _state()
    for item in _seq(base):
        state.apply(item)
    [pattern] = q.retrieve_workflow_patterns(state, "default", "testing", 0.0)
    pid, before = pattern["pattern_id"], pattern["confidence"]
    up = make_event(PatternFeedback(pattern_id=pid, helpful=True, confidence_adjustment=0.1))
    down = make_event(PatternFeedback(pattern_id=pid, helpful=False, confidence_adjustment=-0.3))
    state.apply(_seq([up], start=6)[0])
    raised = q.retrieve_workflow_patterns(state, "default", "testing", 0.0)[0]["confidence"]
    state.apply(_seq([down], start=7)[0])
    lowered = q.retrieve_workflow_patterns(state, "default", "testing", 0.0)[0]["confidence"]
    assert raised > before > lowered
    replayed = _state()
    for item in _seq([*base, up, down]):
        replayed.apply(item)
    restored = restore_state(dump_state(state), LearnerConfig(), KeywordTaskTypeClassifier())
    for other in (replayed, restored):
        got = q.retrieve_workflow_patterns(other, "default", "testing", 0.0)[0]["confidence"]
        assert got == lowered


def test_every_learning_verb_respects_namespaces() -> None:
    """Patterns, metrics, best workflow, search and learning metrics of namespace A never
    include B's workflows."""
    events = [_workflow(["a1"], True, namespace="A") for _ in range(4)]
    events += [_workflow(["b1"], False, namespace="B") for _ in range(6)]
    state = _state()
    for item in _seq(events):
        state.apply(item)
    a_patterns = q.retrieve_workflow_patterns(state, "A", None, 0.0)
    assert [p["workflow_steps"] for p in a_patterns] == [["a1"]]
    assert q.best_workflow(state, "A", "testing")["workflow_steps"] == ["a1"]  # type: ignore[index]
    assert [m["total_executions"] for m in q.task_success_metrics(state, "A")] == [4]
    assert {p["namespace"] for p in q.list_patterns(state, "A", None)} == {"A"}
    assert {p["namespace"] for p in q.search_patterns(state, "B", None, None)} == {"B"}
    assert q.learning_metrics(state, "A")["total_workflows_executed"] == 4
    assert q.learning_metrics(state, "B")["overall_success_rate"] == 0.0
    assert q.best_workflow(state, "C", "testing") is None


def test_best_workflow_targets_duration_and_cost_among_reliable_ones() -> None:
    """For duration, the fastest workflow wins only among those near the best success rate."""
    events = [_workflow(["slow", "sure"], True, duration=90.0) for _ in range(10)]
    events += [_workflow(["fast", "flaky"], i % 2 == 0, duration=5.0) for i in range(10)]
    events += [_workflow(["quick", "good"], i != 0, duration=30.0) for i in range(10)]
    state = _state()
    for item in _seq(events):
        state.apply(item)
    assert q.best_workflow(state, "default", "testing")["workflow_steps"] == ["slow", "sure"]  # type: ignore[index]
    fastest = q.best_workflow(state, "default", "testing", "duration")
    assert fastest is not None and fastest["workflow_steps"] == ["quick", "good"]


def test_extract_pattern_pools_task_types_by_regex() -> None:
    """extract_pattern(".*auth.*") pools every matching task type and respects min_samples."""
    events = [_workflow(["x"], True, task_type="user_authentication") for _ in range(3)]
    events += [_workflow(["x"], False, task_type="oauth_authentication") for _ in range(3)]
    events += [_workflow(["y"], True, task_type="billing") for _ in range(9)]
    state = _state()
    for item in _seq(events):
        state.apply(item)
    pooled = q.extract_pattern(state, "default", ".*authentication.*", "workflow", min_samples=5)
    assert pooled is not None
    assert pooled["task_types"] == ["oauth_authentication", "user_authentication"]
    assert pooled["sample_size"] == 6 and pooled["success_rate"] == 0.5
    assert q.extract_pattern(state, "default", ".*auth.*", "workflow", min_samples=7) is None


def test_announced_payload_is_a_valid_pattern_learned() -> None:
    """Announcements carry pattern, version, causing sequence and the pattern details."""
    state = _state()
    for item in _seq([_workflow(["plan", "ship"], True) for _ in range(3)]):
        state.apply(item)
    [a] = state.take_pending()
    assert isinstance(a.data, PatternLearned)
    assert a.data.caused_by_sequence == 3 and a.data.version == 1
    assert a.data.pattern["workflow_steps"] == ["plan", "ship"]
    assert a.event_id.endswith("-v1")
