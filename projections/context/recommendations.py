"""Recommendations: what the memory advises for a task, in plain sentences an agent can act on."""

from __future__ import annotations

from typing import Any

__all__ = ["recommendations"]


def recommendations(
    best: dict[str, Any] | None, patterns: list[dict[str, Any]], similar: list[dict[str, Any]]
) -> list[str]:
    """Sentences from the best workflow, the learned success and failure patterns, and the most
    similar past tasks that failed and succeeded (in that order)."""
    said: list[str] = []
    if best is not None:
        said.append(
            f"Use the workflow {' -> '.join(best['workflow_steps'])}: it succeeded in "
            f"{best['success_rate']:.0%} of {best['executions']} runs "
            f"(average {best['avg_duration']:.1f} s)."
        )
    for pattern in patterns:
        if pattern["pattern_type"] == "success" and pattern.get("success_indicators"):
            said.append(
                "Successful runs mention: " + ", ".join(pattern["success_indicators"]) + "."
            )
        if pattern["pattern_type"] == "failure" and pattern.get("error_patterns"):
            said.append("Watch for recurring errors: " + ", ".join(pattern["error_patterns"]) + ".")
    failed = [h for h in similar if h.get("success") is False]
    if failed:
        said.append(f'A similar task failed before: "{failed[0]["text"][:160]}".')
    succeeded = [h for h in similar if h.get("success") is True]
    if succeeded:
        said.append(f'A similar task succeeded: "{succeeded[0]["text"][:160]}".')
    return said
