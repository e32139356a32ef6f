"""The learner's state and how each event changes it (pure: no I/O, no clock, no randomness).

Per (namespace, task type) it keeps workflow statistics per distinct step sequence, task
outcomes with their error patterns and summary terms, and feedback per pattern. After each event
it re-evaluates the patterns that event touched; a pattern that appears or changes materially
gets a new version (only grows) and an announcement is queued. Versions are decided from the
events alone, so every engine and every replay decides the same (pattern id, version) at the same
sequence; ``announced`` (read back from the stream's pattern.learned events) says which of them
someone already published.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.events import (
    PatternFeedback,
    PatternLearned,
    TaskExecuted,
    WorkflowExecuted,
)
from projections.identity import SeenIds, event_key
from projections.learning.scoring import LearnerConfig, confidence, wilson_lower_bound
from projections.learning.stats import FeedbackStats, OutcomeStats, PatternVersion, WorkflowStats
from projections.learning.terms import summary_terms
from projections.purging import purged_namespace
from projections.records import SequencedEvent
from projections.task_types import TaskTypeClassifier
from projections.workflows import workflow_key

__all__ = [
    "Announcement",
    "LearnerState",
    "announcement_event_id",
    "namespace_of_pattern",
    "workflow_pattern_id",
]

Scope = tuple[str, str]
FeedbackKey = tuple[str, str]
"""(namespace of the pattern.feedback event, pattern id)."""


def workflow_pattern_id(namespace: str, task_type: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"workflow:{namespace}:{task_type}:{digest}"


def namespace_of_pattern(pattern_id: str) -> str | None:
    """The namespace a learned pattern's id names (``workflow:<ns>:...``, ``success:<ns>:...``,
    ``failure:<ns>:...``); None for an id of another form."""
    kind, sep, rest = pattern_id.partition(":")
    namespace, sep2, _ = rest.partition(":")
    return namespace if sep and sep2 and kind in ("workflow", "success", "failure") else None


def announcement_event_id(pattern_id: str, version: int) -> str:
    """The event id (and Nats-Msg-Id) of a pattern version: the same on every engine."""
    return f"pattern-{hashlib.sha256(pattern_id.encode()).hexdigest()[:20]}-v{version}"


@dataclass(frozen=True, slots=True)
class Announcement:
    """A pattern.learned event to publish: payload, namespace and the causing event's time."""

    namespace: str
    occurred_at: str
    data: PatternLearned

    @property
    def event_id(self) -> str:
        return announcement_event_id(self.data.pattern_id, self.data.version)


class LearnerState:
    """Everything the learner knows, evolved one event at a time."""

    def __init__(self, config: LearnerConfig, classifier: TaskTypeClassifier) -> None:
        self.config = config
        self.classifier = classifier
        self.workflows: dict[Scope, dict[str, WorkflowStats]] = {}
        self.outcomes: dict[Scope, OutcomeStats] = {}
        self.feedback: dict[FeedbackKey, FeedbackStats] = {}
        """(namespace, pattern id) -> the votes of that namespace's pattern.feedback events. A
        pattern counts the votes of its own namespace only: a tenant cannot move another's."""
        self.versions: dict[str, PatternVersion] = {}
        """pattern id -> what was last decided about it (its current version)."""
        self.pattern_scope: dict[str, tuple[str, str, str, str]] = {}
        """pattern id -> (kind, namespace, task type, workflow key or "")."""
        self.best: dict[Scope, str] = {}
        self.announced: dict[str, int] = {}
        self.pending: list[Announcement] = []
        """Announcements decided, in order; those the stream already has are dropped now and
        then (``_read_back``), never seen: ``take_pending`` and the saved state skip them."""
        self._read_back = 0
        """pattern.learned read back since ``pending`` last dropped what the stream has."""
        self.seen = SeenIds()
        """The envelope ids applied: a later event with one of them is ignored (and counted)."""
        self.sequence = 0

    # -- applying events ----------------------------------------------------------------------

    def apply(self, item: SequencedEvent) -> None:
        """Fold one event in (events at or below ``sequence`` are ignored: idempotent; so is
        an event whose envelope id was applied before: the first occurrence wins)."""
        if item.sequence <= self.sequence:
            return
        self.sequence = item.sequence
        owner = item.event.namespace
        if not self.seen.first(item.event.id, owner):
            return
        purged = purged_namespace(item.event)
        if purged is not None:
            self.forget(purged)
            self.seen.add(event_key(item.event.id), owner)  # as a replay records it
            return
        event, data = item.event, item.event.data
        when = event.occurred_at.isoformat()
        match data:
            case WorkflowExecuted():
                task_type = data.task_type or self.classifier.classify(data.request or "")
                scope = (event.namespace, task_type)
                key = workflow_key(data.workflow_steps)
                stats = self.workflows.setdefault(scope, {}).setdefault(
                    key, WorkflowStats(steps=list(data.workflow_steps))
                )
                stats.add(data.success, data.duration, data.cost, when, item.sequence)
                pid = workflow_pattern_id(event.namespace, task_type, key)
                self.pattern_scope.setdefault(pid, ("workflow", *scope, key))
                touched = [pid, *self._update_best(scope)]
                for pattern_id in dict.fromkeys(touched):
                    self._evaluate(pattern_id, item.sequence, when)
            case TaskExecuted():
                task_type = data.task_type or self.classifier.classify(data.execution_summary)
                scope = (event.namespace, task_type)
                outcome = self.outcomes.setdefault(scope, OutcomeStats())
                terms = summary_terms(data.execution_summary)
                if data.success:
                    outcome.successes += 1
                    _count(outcome.success_terms, terms)
                else:
                    outcome.failures += 1
                    _count(outcome.failure_terms, terms)
                    _count(outcome.errors, dict.fromkeys(data.error_patterns))
                outcome.last_sequence = item.sequence
                for kind in ("success", "failure"):
                    pid = f"{kind}:{event.namespace}:{task_type}"
                    self.pattern_scope.setdefault(pid, (kind, *scope, ""))
                    self._evaluate(pid, item.sequence, when)
            case PatternFeedback():
                votes = self.feedback.setdefault(
                    (event.namespace, data.pattern_id), FeedbackStats()
                )
                if data.helpful:
                    votes.helpful += 1
                else:
                    votes.unhelpful += 1
                votes.adjustment += data.confidence_adjustment
                judged = self.pattern_scope.get(data.pattern_id)
                if judged is not None and judged[1] == event.namespace:
                    self._evaluate(data.pattern_id, item.sequence, when)
            case PatternLearned():
                seen = self.announced.get(data.pattern_id, 0)
                self.announced[data.pattern_id] = max(seen, data.version)
                # Dropping what the stream has from the whole list at every read-back made
                # reading back N announcements O(N^2) (88 s for 35,000); dropping them once
                # as many have been read back as half the list holds is O(1) amortised.
                self._read_back += 1
                if 2 * self._read_back >= len(self.pending):
                    self.pending = self.take_pending()
                    self._read_back = 0
            case _:
                pass

    def forget(self, namespace: str) -> None:
        """Forget everything ``namespace``'s events decided (a ``namespace.purged``): its
        workflow and outcome statistics, best workflows, patterns with their versions and
        announcements (decided, pending or read back), its feedback, and the envelope ids and
        repeats of its events. What remains is what the other namespaces' events decided."""
        for scope in [s for s in self.workflows if s[0] == namespace]:
            del self.workflows[scope]
        for scope in [s for s in self.outcomes if s[0] == namespace]:
            del self.outcomes[scope]
        for scope in [s for s in self.best if s[0] == namespace]:
            del self.best[scope]
        for key in [k for k in self.feedback if k[0] == namespace]:
            del self.feedback[key]
        for pid in [p for p, scope in self.pattern_scope.items() if scope[1] == namespace]:
            del self.pattern_scope[pid]
            self.versions.pop(pid, None)
        for pid in [p for p in self.versions if self.versions[p].namespace == namespace]:
            del self.versions[pid]
        for pid in [p for p in self.announced if namespace_of_pattern(p) == namespace]:
            del self.announced[pid]
        self.pending = [a for a in self.pending if a.namespace != namespace]
        self.seen.forget(namespace)

    def holds(self, namespace: str) -> bool:
        """Whether anything ``namespace``'s events decided is in the state: what ``forget``
        would remove (a snapshot's learner state is checked with it after a purge)."""
        return (
            any(s[0] == namespace for s in (*self.workflows, *self.outcomes, *self.best))
            or any(k[0] == namespace for k in self.feedback)
            or any(scope[1] == namespace for scope in self.pattern_scope.values())
            or any(v.namespace == namespace for v in self.versions.values())
            or any(namespace_of_pattern(p) == namespace for p in self.announced)
            or any(a.namespace == namespace for a in self.take_pending())
            or namespace in self.seen.owners()
        )

    def _update_best(self, scope: Scope) -> list[str]:
        """Re-rank workflows of ``scope``; returns the pattern ids whose best flag flipped."""
        namespace, task_type = scope
        candidates = [
            (wilson_lower_bound(s.successes, s.executions), s.executions, -s.avg_duration, key)
            for key, s in self.workflows.get(scope, {}).items()
            if s.executions >= self.config.min_samples
        ]
        if not candidates:
            return []
        new = max(candidates)[3]
        old = self.best.get(scope)
        if new == old:
            return []
        self.best[scope] = new
        flipped = [workflow_pattern_id(namespace, task_type, new)]
        if old is not None:
            flipped.append(workflow_pattern_id(namespace, task_type, old))
        return flipped

    # -- deciding versions --------------------------------------------------------------------

    def _evaluate(self, pattern_id: str, sequence: int, when: str) -> None:
        current = self._measure(pattern_id)
        if current is None:
            return
        rate, samples, is_best = current
        feedback = self.feedback.get(
            (self.pattern_scope[pattern_id][1], pattern_id), FeedbackStats()
        )
        conf = confidence(
            samples, feedback.helpful, feedback.unhelpful, feedback.adjustment, self.config
        )
        before = self.versions.get(pattern_id)
        step = self.config.change_step
        if before is not None and not (
            abs(rate - before.success_rate) >= step
            or abs(conf - before.confidence) >= step
            or is_best != before.is_best
        ):
            return
        kind, namespace, task_type, _ = self.pattern_scope[pattern_id]
        version = 1 if before is None else before.version + 1
        # Details (indicator terms scan the whole vocabulary) only for a new version: measuring
        # on every event stays O(1) however many distinct terms the summaries have brought.
        details = self._details(pattern_id)
        decided = PatternVersion(
            version,
            round(rate, 6),
            conf,
            is_best,
            samples,
            kind,
            namespace,
            task_type,
            details,
            sequence,
        )
        self.versions[pattern_id] = decided
        if version > self.announced.get(pattern_id, 0):
            self.pending.append(Announcement(namespace, when, self._learned(pattern_id, decided)))

    @staticmethod
    def _learned(pattern_id: str, s: PatternVersion) -> PatternLearned:
        return PatternLearned(
            pattern_id=pattern_id,
            version=s.version,
            pattern_type=s.pattern_type,
            task_type=s.task_type,
            caused_by_sequence=s.caused_by_sequence,
            success_rate=s.success_rate,
            confidence=s.confidence,
            sample_size=s.sample_size,
            pattern={**s.details, "is_best": s.is_best, "namespace": s.namespace},
        )

    def _measure(self, pattern_id: str) -> tuple[float, int, bool] | None:
        """(success rate, samples, is best) of a pattern as of now, in constant time; None below
        the minimum sample size (the pattern does not exist yet)."""
        kind, namespace, task_type, key = self.pattern_scope[pattern_id]
        scope = (namespace, task_type)
        if kind == "workflow":
            s = self.workflows[scope][key]
            if s.executions < self.config.min_samples:
                return None
            return s.success_rate, s.executions, self.best.get(scope) == key
        o = self.outcomes[scope]
        count = o.successes if kind == "success" else o.failures
        if count < self.config.min_samples:
            return None
        return o.successes / o.total, count, False

    def _details(self, pattern_id: str) -> dict[str, Any]:
        kind, namespace, task_type, key = self.pattern_scope[pattern_id]
        scope = (namespace, task_type)
        limit = self.config.max_indicators
        if kind == "workflow":
            s = self.workflows[scope][key]
            return {
                "workflow_steps": list(s.steps),
                "executions": s.executions,
                "successes": s.successes,
                "avg_duration": round(s.avg_duration, 6),
                "avg_cost": None if s.avg_cost is None else round(s.avg_cost, 6),
                "last_seen": s.last_seen,
            }
        o = self.outcomes[scope]
        success_share = _shares(o.success_terms, o.successes)
        failure_share = _shares(o.failure_terms, o.failures)
        details: dict[str, Any]
        if kind == "success":
            terms = _distinctive(success_share, failure_share, limit)
            details = {
                "success_indicators": terms,
                "recommended_context": [f"past successes mention: {', '.join(terms)}"]
                if terms
                else [],
            }
        else:
            errors = [
                e for e, n in sorted(o.errors.items(), key=lambda kv: (-kv[1], kv[0])) if n >= 2
            ][:limit]
            details = {
                "failure_indicators": _distinctive(failure_share, success_share, limit),
                "error_patterns": errors,
            }
        details["executions"] = o.total
        return details

    # -- publishing ---------------------------------------------------------------------------

    def take_pending(self) -> list[Announcement]:
        """Announcements not yet seen on the stream; the caller publishes them."""
        return [
            a for a in self.pending if a.data.version > self.announced.get(a.data.pattern_id, 0)
        ]


def _count(counter: dict[str, int], keys: Iterable[str]) -> None:
    for key in sorted(keys):
        counter[key] = counter.get(key, 0) + 1


def _shares(counter: dict[str, int], total: int) -> dict[str, float]:
    return {k: v / total for k, v in counter.items()} if total else {}


def _distinctive(mine: dict[str, float], other: dict[str, float], limit: int) -> list[str]:
    """Terms in at least half of ``mine`` and clearly more common there than in ``other``."""
    scored = [
        (share - other.get(term, 0.0), term)
        for term, share in mine.items()
        if share >= 0.5 and share - other.get(term, 0.0) >= 0.25
    ]
    return [term for _, term in sorted(scored, key=lambda x: (-x[0], x[1]))[:limit]]
