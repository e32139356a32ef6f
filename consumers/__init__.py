"""The bus side of engram: live projection runners, dead letters, replay, snapshots, the query
service. The process that runs them is ``engram.app.Engine``."""

from consumers.deadletters import DEAD_LETTER_PREFIX, DeadLetterPublisher
from consumers.decoding import decode_batch
from consumers.replay import ReplayReport, replay
from consumers.runner import ProjectionRunner, RunnerSettings

__all__ = [
    "DEAD_LETTER_PREFIX",
    "DeadLetterPublisher",
    "ProjectionRunner",
    "ReplayReport",
    "RunnerSettings",
    "decode_batch",
    "replay",
]
