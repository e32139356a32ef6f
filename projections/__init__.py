"""State builders fed from the log: pure logic, and stores behind small interfaces."""

from projections.base import Projection
from projections.records import DeadLetter, SequencedEvent
from projections.task_types import TASK_TYPES, KeywordTaskTypeClassifier, TaskTypeClassifier

__all__ = [
    "TASK_TYPES",
    "DeadLetter",
    "KeywordTaskTypeClassifier",
    "Projection",
    "SequencedEvent",
    "TaskTypeClassifier",
]
