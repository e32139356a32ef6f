"""Task-type inference: which of the nine built-in task types a request text belongs to.

Deterministic keyword scoring (a pure function of the text), behind a small protocol so a better
classifier can replace it. A change of classifier changes derived rows, so it is a replay.
"""

from __future__ import annotations

import re
from typing import Final, Protocol

__all__ = ["TASK_TYPES", "KeywordTaskTypeClassifier", "TaskTypeClassifier"]

TASK_TYPES: Final = (
    "code_generation",
    "data_analysis",
    "testing",
    "deployment",
    "debugging",
    "system_design",
    "documentation",
    "optimization",
    "general",
)


class TaskTypeClassifier(Protocol):
    """Maps a request text to a task type; must be deterministic."""

    name: str

    def classify(self, text: str) -> str: ...


# Stems matched at the start of a word ("deploy" matches deploying, deployment).
_KEYWORDS: Final[dict[str, tuple[str, ...]]] = {
    "debugging": (
        "debug",
        "fix",
        "bug",
        "error",
        "crash",
        "failing",
        "broken",
        "exception",
        "traceback",
        "investigate",
        "regression",
        "leak",
        "stack trace",
    ),
    "testing": (
        "test",
        "unit test",
        "coverage",
        "pytest",
        "assert",
        "qa",
        "e2e",
        "integration test",
        "mock",
    ),
    "deployment": (
        "deploy",
        "release",
        "rollout",
        "roll out",
        "ship",
        "canary",
        "kubernetes",
        "helm",
        "production",
        "staging",
        "ci/cd",
        "pipeline",
        "docker",
    ),
    "data_analysis": (
        "analy",
        "report",
        "dataset",
        "data",
        "metric",
        "dashboard",
        "churn",
        "statistic",
        "trend",
        "anomal",
        "visuali",
        "sql",
        "query",
    ),
    "system_design": (
        "design",
        "architect",
        "system",
        "scalab",
        "microservice",
        "schema",
        "diagram",
        "component",
        "trade-off",
        "tradeoff",
    ),
    "documentation": (
        "document",
        "docs",
        "readme",
        "docstring",
        "tutorial",
        "guide",
        "explain",
        "comment",
        "changelog",
    ),
    "optimization": (
        "optimi",
        "speed up",
        "faster",
        "performance",
        "latency",
        "slow",
        "memory usage",
        "profil",
        "cache",
        "throughput",
        "reduce cost",
    ),
    "code_generation": (
        "implement",
        "write",
        "create",
        "build",
        "function",
        "class",
        "endpoint",
        "api",
        "generate",
        "code",
        "script",
        "add a",
        "refactor",
    ),
}
# Ties resolve to the more specific type: the order above, code_generation last.
_ORDER: Final = tuple(_KEYWORDS)


def _compile(stems: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(s) for s in stems) + ")", re.IGNORECASE)


class KeywordTaskTypeClassifier:
    """Counts keyword stems per task type; the highest count wins, ``general`` when none."""

    name = "keywords-v1"

    def __init__(self) -> None:
        self._patterns = {task: _compile(stems) for task, stems in _KEYWORDS.items()}

    def scores(self, text: str) -> dict[str, int]:
        return {task: len(pattern.findall(text)) for task, pattern in self._patterns.items()}

    def classify(self, text: str) -> str:
        scores = self.scores(text)
        best = max(_ORDER, key=lambda task: (scores[task], -_ORDER.index(task)))
        return best if scores[best] > 0 else "general"
