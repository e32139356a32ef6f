"""The pattern learner: which workflows work for which task types, and when that changes."""

from projections.learning.projection import LearnerProjection
from projections.learning.scoring import LearnerConfig
from projections.learning.state import Announcement, LearnerState, workflow_pattern_id

__all__ = [
    "Announcement",
    "LearnerConfig",
    "LearnerProjection",
    "LearnerState",
    "workflow_pattern_id",
]
