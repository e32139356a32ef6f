"""The README's main job: `engram demo` on the embedded server. It shows success rising with
memory in numbers and in a picture, and leaves a data directory the CLI can explore offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram.demo.world import TASK_WORLD
from tests.cli_runs import engram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
async def test_demo_learns_the_best_workflows_and_leaves_explorable_data(tmp_path: Path) -> None:
    demo = await engram("demo", "--json", "--seed", "7", cwd=tmp_path)
    assert demo.code == 0, demo.err
    summary = demo.json()

    # Numbers: with memory beats the baseline over the same world, mostly by following engram.
    assert summary["tasks_per_orchestrator"] == 400
    assert summary["success_rate_with_memory"] > summary["success_rate_without_memory"] + 0.05
    choices = summary["choices_with_memory"]
    assert sum(choices.values()) == 400
    assert choices["followed_best"] > 200
    assert choices["gathering_evidence"] >= 3 * 10 * len(TASK_WORLD)  # 10 runs of each candidate
    assert summary["patterns_heard"] > 0
    found = summary["best_workflows"]
    assert set(found) == {spec.task_type for spec in TASK_WORLD}
    assert all(best is not None for best in found.values()), found
    truly_best = [t for t, best in found.items() if best["truly_best"]]
    assert len(truly_best) >= len(TASK_WORLD) - 1, found  # one unlucky draw is tolerated

    # The picture.
    plot = tmp_path / summary["plot"]
    assert plot.read_bytes()[:8] == PNG_MAGIC
    assert plot.stat().st_size > 10_000

    # The data directory, explored with the CLI, no engine running: the same answers.
    data = ["--data-dir", str(tmp_path / "engram-data"), "--namespace", "demo"]
    for task_type, best in found.items():
        answer = await engram(
            "best-workflow", "--task-type", task_type, "--json", *data, cwd=tmp_path
        )
        assert answer.code == 0, answer.err
        assert answer.json()["workflow"]["workflow_steps"] == best["workflow_steps"]
    patterns = await engram("patterns", "--min-success-rate", "0", "--json", *data, cwd=tmp_path)
    assert patterns.code == 0, patterns.err
    assert {p["namespace"] for p in patterns.json()["patterns"]} == {"demo"}
    learning = await engram("learning", "--json", *data, cwd=tmp_path)
    assert learning.json()["total_workflows_executed"] == 400
    context = await engram(
        "context", "Deploy the API", "--max-tokens", "120", "--json", *data, cwd=tmp_path
    )
    assert context.code == 0, context.err
    assert 0 < context.json()["total_tokens"] <= 120
    other = ["--data-dir", str(tmp_path / "engram-data"), "--namespace", "nobody"]
    empty = await engram("patterns", "--min-success-rate", "0", "--json", *other, cwd=tmp_path)
    assert empty.json()["patterns"] == []
