"""The bus side of engram: live projection runners, dead letters, replay, the query service."""

from consumers.app import Engine
from consumers.deadletters import DEAD_LETTER_PREFIX, DeadLetterPublisher
from consumers.decoding import decode_batch
from consumers.projection_set import open_projections
from consumers.replay import ReplayReport, replay
from consumers.runner import ProjectionRunner, RunnerSettings

__all__ = [
    "DEAD_LETTER_PREFIX",
    "DeadLetterPublisher",
    "Engine",
    "ProjectionRunner",
    "ReplayReport",
    "RunnerSettings",
    "decode_batch",
    "open_projections",
    "replay",
]
