"""Saving the session compactor: an append-only record log plus a state file with the watermark.

Records only grow (one per compacted session), so rewriting them all on every save would cost
O(history). Instead:

- ``sessions-records.jsonl``: one JSON line per record and per announcement seen on the stream,
  and one per save with the keys of the envelope ids applied since the previous save (base64 of
  8 bytes per id, see ``projections.identity``), appended;
- ``sessions-state.json.gz``: the watermark (``sequence``), each namespace's clock, the open
  segments, the pending ids, the repeats ignored and ``records_bytes``, the length of the log
  that belongs to it, and ``records_file``, the log's name. A state of format 1 (written before
  ids were recorded) loads with an empty record of ids: repeats of the events it covers are not
  recognised until a rebuild. One of format 2 (one stream clock, ids not attributed to
  namespaces) loads with that clock as the clock of every namespace with an open session, and
  its ids unattributed (a purge cannot forget them: rebuild by replay).

The ids' lines name the namespace whose events used them first (``"ns"``), and announcement
lines the namespace of the session.compacted event, so a purged tenant can be forgotten. A save
after a tenant was forgotten (``SessionState.rewrite``) does not append: it writes the whole log
anew under a new name (``sessions-records-<sequence>.jsonl``), then the state file naming it
(the commit point), then deletes the other logs; a crash before the commit leaves the old state
and its log, and a log no state file names is deleted by the next save.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import structlog

from engine.errors import ProjectionError
from projections.atomic_files import write_atomic
from projections.identity import SeenIds, dump_owner_duplicates, dump_owners, restore_owners
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

__all__ = [
    "RECORDS_FILE",
    "STATE_FILE",
    "RecordLog",
    "load_state",
    "save_state",
    "saved_files",
    "state_digest",
]

STATE_FILE = "sessions-state.json.gz"
RECORDS_FILE = "sessions-records.jsonl"
"""The record log's name until a tenant is purged (then ``sessions-records-<sequence>.jsonl``,
named by the state file)."""
FORMAT = 3
_READABLE = (1, 2, FORMAT)
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


@dataclass(frozen=True, slots=True)
class RecordLog:
    """Which record log a saved state owns, and how many of its bytes."""

    name: str = RECORDS_FILE
    size: int = 0


def state_digest(state: SessionState) -> str:
    """SHA-256 of everything the events decide: open segments (in order), records, announced
    and pending ids, clocks, watermark, the ids applied (and which namespace used each first)
    and the repeats ignored. Leaves out ``compaction_duration_ms`` (measured, not decided) and
    the unsaved journal, so equal digests mean equal deterministic state."""
    body = {
        "sequence": state.sequence,
        "clocks": dict(sorted(state.clocks.items())),
        "open": [_facts_json(f) for f in state.open.values()],
        "records": [_record_json(r, timings=False) for r in state.records.values()],
        "announced": sorted(state.announced.items()),
        "pending": list(state.pending),
        "seen": state.seen.to_bytes().hex(),
        "duplicates": state.seen.duplicates,
        "owners": dump_owners(state.seen),
    }  # each namespace's repeats are part of ``duplicates`` (in the state file, not here)
    return hashlib.sha256(_CANONICAL.encode(body).encode()).hexdigest()


def _line(entry: dict[str, Any]) -> str:
    return _CANONICAL.encode(entry) + "\n"


def _announced_line(state: SessionState, event_id: str, duration_ms: float) -> str:
    return _line({"k": "a", "id": event_id, "ms": duration_ms, "ns": state.announced[event_id]})


def _log_lines(state: SessionState) -> bytes:
    """The journal's lines: what changed since the last save."""
    lines = []
    for kind, event_id, duration_ms in state.journal:
        if kind == "record":
            lines.append(_line({"k": "r", **_record_json(state.records[event_id])}))
        else:
            lines.append(_announced_line(state, event_id, duration_ms))
    for owner, keys in state.seen.journal_by_owner().items():
        entry: dict[str, Any] = {"k": "i", "keys": base64.b64encode(keys).decode()}
        if owner is not None:
            entry["ns"] = owner
        lines.append(_line(entry))
    return "".join(lines).encode()


def _whole_log(state: SessionState) -> bytes:
    """Every record, announcement and id of ``state``: a log written anew (after a purge)."""
    lines = [_line({"k": "r", **_record_json(r)}) for r in state.records.values()]
    for event_id in state.announced:
        record = state.records.get(event_id)
        published = record.compaction_duration_ms if record is not None else 0.0
        lines.append(_announced_line(state, event_id, published))
    owned = set()
    for owner in state.seen.owners():
        keys = state.seen.owned(owner)
        owned.update(keys.tolist())
        if len(keys):
            body = base64.b64encode(keys.tobytes()).decode()
            lines.append(_line({"k": "i", "keys": body, "ns": owner}))
    unowned = [k for k in state.seen.keys().tolist() if k not in owned]
    if unowned:
        body = base64.b64encode(np.asarray(unowned, dtype="<u8").tobytes()).decode()
        lines.append(_line({"k": "i", "keys": body}))
    return "".join(lines).encode()


def _cut(log: BinaryIO, records_bytes: int) -> None:
    """Best effort after a failed save: drop the lines it appended (a full disk needs the
    space back). Harmless when it fails too: ``load_state`` reads only ``records_bytes``."""
    with contextlib.suppress(OSError, ValueError):
        log.truncate(records_bytes)


def save_state(directory: Path, state: SessionState, log: RecordLog) -> RecordLog:
    """Save ``state`` (see the commit order above); returns the log the new state file names.
    ``log`` is what the last save or load returned. Clears the journal."""
    directory.mkdir(parents=True, exist_ok=True)
    saved = _write_new_log(directory, state) if state.rewrite else _append(directory, state, log)
    body = {
        "format": FORMAT,
        "sequence": state.sequence,
        "clocks": dict(sorted(state.clocks.items())),
        "records_file": saved.name,
        "records_bytes": saved.size,
        "open": [_facts_json(f) for f in state.open.values()],
        "pending": list(state.pending),
        "duplicates": state.seen.duplicates,
        "duplicates_by_namespace": dump_owner_duplicates(state.seen),
    }
    try:
        # Raises before its rename only: the old state file, naming the old log, stays.
        write_atomic(directory / STATE_FILE, gzip.compress(_CANONICAL.encode(body).encode(), 5))
    except BaseException:
        if saved.name == log.name:
            with (directory / log.name).open("ab") as handle:
                _cut(handle, log.size)
        else:
            (directory / saved.name).unlink(missing_ok=True)
        raise
    # A log the state file does not name: the one a rewrite replaced (a purged tenant's
    # records), or one a crash left before or after its commit.
    _remove_other_logs(directory, saved.name)
    state.journal.clear()
    state.seen.clear_journal()
    state.rewrite = False
    return saved


def _append(directory: Path, state: SessionState, log: RecordLog) -> RecordLog:
    log_path = directory / log.name
    with log_path.open("ab") as handle:
        if handle.tell() < log.size:  # append mode starts at the end: the log's length
            raise ProjectionError(f"{log_path} is shorter than the saved state says")
        handle.truncate(log.size)
        handle.seek(log.size)
        try:
            handle.write(_log_lines(state))
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            _cut(handle, log.size)
            raise
        return RecordLog(log.name, handle.tell())


def _write_new_log(directory: Path, state: SessionState) -> RecordLog:
    """The whole log under a name no state file uses yet (written atomically)."""
    name = f"sessions-records-{state.sequence}.jsonl"
    body = _whole_log(state)
    write_atomic(directory / name, body)
    return RecordLog(name, len(body))


def _remove_other_logs(directory: Path, keep: str) -> None:
    """Delete the record logs the state file does not name (a purged tenant's records)."""
    for path in directory.glob("sessions-records*.jsonl"):
        if path.name != keep:
            path.unlink(missing_ok=True)


def saved_files(directory: Path) -> list[str]:
    """The files of the saved state in ``directory``: the state file and the log it names
    (what a snapshot packs); [] when nothing was saved."""
    path = directory / STATE_FILE
    if not path.exists():
        return []
    try:
        raw = json.loads(gzip.decompress(path.read_bytes()))
        name = str(raw.get("records_file", RECORDS_FILE))
    except (OSError, ValueError, EOFError, AttributeError) as exc:
        raise _unreadable(directory, exc) from None
    return [STATE_FILE, name] if (directory / name).exists() else [STATE_FILE]


def _unreadable(directory: Path, why: object) -> ProjectionError:
    return ProjectionError(
        f"session state in {directory} is unreadable ({why}); delete it to rebuild it"
    )


def _restore(state: SessionState, raw: dict[str, Any], log: bytes) -> None:
    state.sequence = int(raw["sequence"])
    segments = [_facts_from(body) for body in raw["open"]]
    state.restore_open(segments)
    if "clocks" in raw:
        state.clocks = {str(ns): float(ts) for ns, ts in raw["clocks"].items()}
    elif raw.get("clock") is not None:  # format 2: one stream clock for every namespace
        state.clocks = {facts.namespace: float(raw["clock"]) for facts in segments}
    state.pending = dict.fromkeys(raw["pending"])
    keys: list[bytes] = []
    owned: dict[str, list[bytes]] = {}
    for line in log.splitlines():
        entry = json.loads(line)
        kind = entry.pop("k")
        if kind == "r":
            record = _record_from(entry)
            state.records[record.event_id] = record
        elif kind == "i":
            body = base64.b64decode(entry["keys"])
            keys.append(body)
            if "ns" in entry:
                owned.setdefault(str(entry["ns"]), []).append(body)
        else:
            namespace = entry.get("ns")
            if namespace is None:  # format 2: the record it announces names it
                announced = state.records.get(entry["id"])
                namespace = announced.namespace if announced is not None else ""
            state.announced[entry["id"]] = str(namespace)
            adopt(state, entry["id"], float(entry["ms"]))
    state.seen = SeenIds.from_bytes(
        b"".join(keys), duplicates=int(raw.get("duplicates", 0)), journal=True
    )
    restore_owners(
        state.seen,
        {owner: base64.b64encode(b"".join(parts)).decode() for owner, parts in owned.items()},
        raw.get("duplicates_by_namespace"),
    )


def _log_bytes(directory: Path, name: str, size: int) -> bytes:
    """The first ``size`` bytes of the record log ``name`` a state file names."""
    if Path(name).name != name or not name.startswith("sessions-records"):
        raise ValueError(f"it names {name!r} as its record log")
    return (directory / name).read_bytes()[:size] if size else b""


def load_state(
    directory: Path, config: SessionConfig, classifier: TaskTypeClassifier
) -> tuple[SessionState, RecordLog]:
    """The saved state and the log it owns; a fresh state and an empty log when nothing was
    saved. Raises ProjectionError when the files are unreadable or the log is shorter than the
    state says (never silently starts over: delete the directory to rebuild by replay)."""
    state = SessionState(config, classifier)
    path = directory / STATE_FILE
    if not path.exists():
        return state, RecordLog()
    try:
        raw = json.loads(gzip.decompress(path.read_bytes()))
        size = int(raw["records_bytes"])
        name = str(raw.get("records_file", RECORDS_FILE))
        log = _log_bytes(directory, name, size)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise _unreadable(directory, exc) from None
    if raw.get("format") not in _READABLE:
        raise _unreadable(directory, f"format {raw.get('format')!r} is not {FORMAT}")
    if len(log) != size:
        raise _unreadable(directory, f"{name} has {len(log)} of its {size} bytes")
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
    return state, RecordLog(name, size)
