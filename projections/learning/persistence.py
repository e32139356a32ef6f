"""Saving the learner's state with its watermark in one file, atomically (temp file + rename).

The file holds the envelope ids applied (``seen``: sorted 64-bit keys, base64) and the repeats
ignored, so a restart or a restored snapshot ignores the same repeats. A file of format 1 (written
before ids were recorded) loads with an empty record and a warning: repeats of the events it
covers are not recognised until the learner is rebuilt by replay.

Format 3 keys feedback by the namespace of the pattern.feedback events as well as the pattern
(a pattern counts its own namespace's votes) and records which namespace first used each id
(``seen_owners``), so a purged tenant's ids can be forgotten. Format 2 loads with each vote
under the namespace its pattern id names (``default`` when it names none) and its ids
unattributed (a purge cannot forget them: rebuild by replay).
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from engine.errors import ProjectionError
from engine.events import PatternLearned
from projections.atomic_files import write_atomic
from projections.identity import SeenIds, dump_owner_duplicates, dump_owners, restore_owners
from projections.learning.scoring import LearnerConfig
from projections.learning.state import Announcement, LearnerState, namespace_of_pattern
from projections.learning.stats import FeedbackStats, OutcomeStats, PatternVersion, WorkflowStats
from projections.task_types import TaskTypeClassifier

__all__ = ["STATE_FILE", "dump_state", "load_state", "restore_state", "save_state"]

STATE_FILE = "learner-state.json.gz"
FORMAT = 3
_READABLE = (1, 2, FORMAT)

log = structlog.get_logger(__name__)


def dump_state(state: LearnerState) -> dict[str, Any]:
    """A JSON-ready dict of ``state`` (order preserved, so reloads decide identically)."""
    return {
        "format": FORMAT,
        "sequence": state.sequence,
        "workflows": [
            [ns, tt, [[key, asdict(stats)] for key, stats in by_key.items()]]
            for (ns, tt), by_key in state.workflows.items()
        ],
        "outcomes": [[ns, tt, asdict(o)] for (ns, tt), o in state.outcomes.items()],
        "feedback": [[ns, pid, asdict(f)] for (ns, pid), f in state.feedback.items()],
        "snapshots": [[pid, asdict(s)] for pid, s in state.versions.items()],  # the file's old key
        "pattern_scope": [[pid, list(scope)] for pid, scope in state.pattern_scope.items()],
        "best": [[ns, tt, key] for (ns, tt), key in state.best.items()],
        "announced": list(state.announced.items()),
        "pending": [
            [a.namespace, a.occurred_at, a.data.model_dump(mode="json")]
            for a in state.take_pending()  # what the stream already has is not saved
        ],
        "seen": base64.b64encode(state.seen.to_bytes()).decode(),
        "duplicates": state.seen.duplicates,
        "seen_owners": dump_owners(state.seen),
        "duplicates_by_namespace": dump_owner_duplicates(state.seen),
    }


def restore_state(
    raw: dict[str, Any], config: LearnerConfig, classifier: TaskTypeClassifier
) -> LearnerState:
    if raw.get("format") not in _READABLE:
        raise ProjectionError(f"learner state format {raw.get('format')!r} is not {FORMAT}")
    state = LearnerState(config, classifier)
    state.sequence = int(raw["sequence"])
    for ns, tt, items in raw["workflows"]:
        state.workflows[(ns, tt)] = {key: WorkflowStats(**stats) for key, stats in items}
    state.outcomes = {(ns, tt): OutcomeStats(**o) for ns, tt, o in raw["outcomes"]}
    if raw["format"] >= FORMAT:
        state.feedback = {(ns, pid): FeedbackStats(**f) for ns, pid, f in raw["feedback"]}
    else:  # one tally per pattern id, every namespace's votes: its pattern's namespace's now
        state.feedback = {
            (namespace_of_pattern(pid) or "default", pid): FeedbackStats(**f)
            for pid, f in raw["feedback"]
        }
    state.versions = {pid: PatternVersion(**s) for pid, s in raw["snapshots"]}
    state.pattern_scope = {pid: (s[0], s[1], s[2], s[3]) for pid, s in raw["pattern_scope"]}
    state.best = {(ns, tt): key for ns, tt, key in raw["best"]}
    state.announced = {pid: int(v) for pid, v in raw["announced"]}
    state.pending = [
        Announcement(ns, when, PatternLearned.model_validate(data))
        for ns, when, data in raw["pending"]
    ]
    state.seen = restore_owners(
        SeenIds.from_bytes(
            base64.b64decode(raw.get("seen", "")), duplicates=int(raw.get("duplicates", 0))
        ),
        raw.get("seen_owners"),
        raw.get("duplicates_by_namespace"),
    )
    return state


def save_state(directory: Path, state: LearnerState) -> None:
    """Write state and watermark together: a crash leaves the old file or the new one."""
    directory.mkdir(parents=True, exist_ok=True)
    body = gzip.compress(json.dumps(dump_state(state), separators=(",", ":")).encode(), 5)
    # Temp file + fsync + rename; a failed write (a full disk) removes its temp file.
    write_atomic(directory / STATE_FILE, body)


def load_state(
    directory: Path, config: LearnerConfig, classifier: TaskTypeClassifier
) -> LearnerState:
    """The saved state, or a fresh one when nothing was saved. Raises ProjectionError when the
    file is unreadable (never silently starts over: delete the directory to rebuild by replay)."""
    path = directory / STATE_FILE
    if not path.exists():
        return LearnerState(config, classifier)
    try:
        raw = json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, ValueError, EOFError) as exc:
        raise ProjectionError(
            f"learner state {path} is unreadable ({exc}); delete {directory} to rebuild it"
        ) from None
    if raw.get("format") == 1:
        log.warning(
            "learner state predates the record of event ids: repeats of the events it covers "
            "are not recognised; delete it to rebuild by replay",
            path=str(path),
        )
    return restore_state(raw, config, classifier)
