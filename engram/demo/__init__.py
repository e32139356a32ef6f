"""The demo: simulated agents whose tasks have hidden true success rates per workflow."""

from engram.demo.world import TASK_WORLD, Candidate, TaskSpec, World

__all__ = ["TASK_WORLD", "Candidate", "TaskSpec", "World"]
