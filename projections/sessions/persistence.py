"""Saving the session compactor: an append-only record log plus a state file with the watermark.

Records only grow (one per compacted session), so rewriting them all on every save would cost
O(history). Instead:

- ``sessions-records.jsonl``: one JSON line per record and per announcement seen on the stream,
  and one per save with the keys of the envelope ids applied since the previous save (base64 of
  8 bytes per id, see ``projections.identity``), appended;
- ``sessions-state.json.gz``: the watermark (``sequence``), the stream clock, the open
  segments, the pending ids, the repeats ignored and ``records_bytes``, the length of the log
  that belongs to it. A state of format 1 (written before ids were recorded) loads with an empty
  record of ids: repeats of the events it covers are not recognised until a rebuild.

Commit order of ``save_state``:

1. cut the log back to the length the current state file names (drops a torn earlier append);
2. append the journal's lines to the log, flush, fsync;
3. write the state file (with the new length) to a temp file, fsync, rename over the old one,
   fsync the directory.

A crash before 3 leaves the old state file, whose ``records_bytes`` excludes the new lines:
``load_state`` ignores them (and the next save cuts them off) and the runner replays the events
after the old watermark, which decide the same records again.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from engine.errors import ProjectionError
from projections.atomic_files import write_atomic
from projections.identity import SeenIds
from projections.sessions.facts import (
    DecisionFact,
    SessionConfig,
    SessionFacts,
    TaskFact,
    WorkflowFact,
)
from projections.sessions.state import SessionState, adopt
from projections.sessions.summary import CompactedSession
from projections.task_types import TaskTypeClassifier

__all__ = ["RECORDS_FILE", "STATE_FILE", "load_state", "save_state", "state_digest"]

STATE_FILE = "sessions-state.json.gz"
RECORDS_FILE = "sessions-records.jsonl"
FORMAT = 2
_READABLE = (1, FORMAT)
_log = structlog.get_logger(__name__)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _record_json(record: CompactedSession, *, timings: bool = True) -> dict[str, Any]:
    body = asdict(record)
    body["blob"] = base64.b64encode(record.blob).decode()
    if not timings:
        del body["compaction_duration_ms"]
    return body


def _record_from(body: dict[str, Any]) -> CompactedSession:
    return CompactedSession(**{**body, "blob": base64.b64decode(body["blob"])})


def _facts_json(facts: SessionFacts) -> dict[str, Any]:
    body = asdict(facts)
    body["workflows"] = [asdict(wf) for wf in facts.workflows.values()]
    return body


def _facts_from(body: dict[str, Any]) -> SessionFacts:
    facts = SessionFacts(**body)
    workflows = [WorkflowFact(**wf) for wf in body["workflows"]]
    facts.workflows = {(wf.task_type, *wf.steps): wf for wf in workflows}
    facts.tasks = [TaskFact(**t) for t in body["tasks"]]
    facts.decisions = {k: DecisionFact(**v) for k, v in body["decisions"].items()}
    return facts


def state_digest(state: SessionState) -> str:
    """SHA-256 of everything the events decide: open segments (in order), records, announced
    and pending ids, clock, watermark, the ids applied and the repeats ignored. Leaves out
    ``compaction_duration_ms`` (measured, not decided) and the unsaved journal, so equal digests
    mean equal deterministic state."""
    body = {
        "sequence": state.sequence,
        "clock": state.clock,
        "open": [_facts_json(f) for f in state.open.values()],
        "records": [_record_json(r, timings=False) for r in state.records.values()],
        "announced": sorted(state.announced),
        "pending": list(state.pending),
        "seen": state.seen.to_bytes().hex(),
        "duplicates": state.seen.duplicates,
    }
    return hashlib.sha256(_CANONICAL.encode(body).encode()).hexdigest()


def _log_lines(state: SessionState) -> bytes:
    lines = []
    for kind, event_id, duration_ms in state.journal:
        if kind == "record":
            entry = {"k": "r", **_record_json(state.records[event_id])}
        else:
            entry = {"k": "a", "id": event_id, "ms": duration_ms}
        lines.append(_CANONICAL.encode(entry) + "\n")
    keys = state.seen.journal_bytes()
    if keys:
        lines.append(_CANONICAL.encode({"k": "i", "keys": base64.b64encode(keys).decode()}) + "\n")
    return "".join(lines).encode()


def _cut(log: BinaryIO, records_bytes: int) -> None:
    """Best effort after a failed save: drop the lines it appended (a full disk needs the
    space back). Harmless when it fails too: ``load_state`` reads only ``records_bytes``."""
    with contextlib.suppress(OSError, ValueError):
        log.truncate(records_bytes)


def save_state(directory: Path, state: SessionState, records_bytes: int) -> int:
    """Save ``state`` (see the commit order above); returns the new ``records_bytes``.
    ``records_bytes`` is what the last save or load returned. Clears the journal."""
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / RECORDS_FILE
    with log_path.open("ab") as log:
        if log.tell() < records_bytes:  # append mode starts at the end: the log's length
            raise ProjectionError(f"{log_path} is shorter than the saved state says")
        log.truncate(records_bytes)
        log.seek(records_bytes)
        try:
            log.write(_log_lines(state))
            log.flush()
            os.fsync(log.fileno())
        except BaseException:
            _cut(log, records_bytes)
            raise
        size = log.tell()
    body = {
        "format": FORMAT,
        "sequence": state.sequence,
        "clock": state.clock,
        "records_bytes": size,
        "open": [_facts_json(f) for f in state.open.values()],
        "pending": list(state.pending),
        "duplicates": state.seen.duplicates,
    }
    try:
        # Raises before its rename only: the old state file, naming records_bytes, stays.
        write_atomic(directory / STATE_FILE, gzip.compress(_CANONICAL.encode(body).encode(), 5))
    except BaseException:
        with log_path.open("ab") as log:
            _cut(log, records_bytes)
        raise
    state.journal.clear()
    state.seen.clear_journal()
    return size


def _unreadable(directory: Path, why: object) -> ProjectionError:
    return ProjectionError(
        f"session state in {directory} is unreadable ({why}); delete it to rebuild it"
    )


def _restore(state: SessionState, raw: dict[str, Any], log: bytes) -> None:
    state.sequence = int(raw["sequence"])
    state.clock = raw["clock"]
    for body in raw["open"]:
        facts = _facts_from(body)
        state.open[(facts.namespace, facts.session_id)] = facts
    state.pending = dict.fromkeys(raw["pending"])
    keys: list[bytes] = []
    for line in log.splitlines():
        entry = json.loads(line)
        kind = entry.pop("k")
        if kind == "r":
            record = _record_from(entry)
            state.records[record.event_id] = record
        elif kind == "i":
            keys.append(base64.b64decode(entry["keys"]))
        else:
            state.announced.add(entry["id"])
            adopt(state, entry["id"], float(entry["ms"]))
    state.seen = SeenIds.from_bytes(
        b"".join(keys), duplicates=int(raw.get("duplicates", 0)), journal=True
    )


def load_state(
    directory: Path, config: SessionConfig, classifier: TaskTypeClassifier
) -> tuple[SessionState, int]:
    """The saved state and its ``records_bytes``; a fresh state and 0 when nothing was saved.
    Raises ProjectionError when the files are unreadable or the log is shorter than the state
    says (never silently starts over: delete the directory to rebuild by replay)."""
    state = SessionState(config, classifier)
    path = directory / STATE_FILE
    if not path.exists():
        return state, 0
    try:
        raw = json.loads(gzip.decompress(path.read_bytes()))
        size = int(raw["records_bytes"])
        log = (directory / RECORDS_FILE).read_bytes()[:size] if size else b""
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise _unreadable(directory, exc) from None
    if raw.get("format") not in _READABLE:
        raise _unreadable(directory, f"format {raw.get('format')!r} is not {FORMAT}")
    if len(log) != size:
        raise _unreadable(directory, f"{RECORDS_FILE} has {len(log)} of its {size} bytes")
    try:
        _restore(state, raw, log)
    except (ValueError, KeyError, TypeError) as exc:
        raise _unreadable(directory, exc) from None
    if raw["format"] == 1:
        _log.warning(
            "session state predates the record of event ids: repeats of the events it covers "
            "are not recognised; delete it to rebuild by replay",
            path=str(path),
        )
    return state, size
