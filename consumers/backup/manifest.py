"""The manifest of a log backup: what each run (full, then incremental) covers, and the
checksum of every file, as one JSON document written last.

Layout of a backup directory::

    manifest.json            this model; replaced atomically at the end of every run
    engine-key.json          only with --include-engine-key: the key, in clear (mode 0600)
    run-0001/run.json        the run's own record (the same as in the manifest)
    run-0001/seg-<first>-<last>.parquet ...
    run-0002/...             an incremental run, from run 1's last sequence + 1

A run covers a contiguous range of stream sequences, split into segments that cover it without
overlap; a sequence of the range that no segment holds was not in the stream when it was read
(``absent``). Each run names the digest of the one before (``previous``) and the manifest the
digest of the last (``head``): a chain that ``verify`` walks. A later run starts right after
the previous one ends, or after a recorded ``gap``: messages gone from the stream before they
could be backed up.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from consumers.backup.errors import BackupCorruptError
from projections.atomic_files import write_atomic

__all__ = [
    "FORMAT",
    "KEY_FILE",
    "MANIFEST",
    "RUN_RECORD",
    "BackupManifest",
    "BackupRun",
    "EngineKeyEntry",
    "Gap",
    "SegmentEntry",
    "load_manifest",
    "run_directory",
    "save_manifest",
    "save_run_record",
]

FORMAT = "engram-log-backup"
MANIFEST = "manifest.json"
KEY_FILE = "engine-key.json"
RUN_RECORD = "run.json"


def run_directory(number: int) -> str:
    return f"run-{number:04d}"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentEntry(_Frozen):
    """One segment file: the sequences it covers and how to check it."""

    file: str
    """Path relative to the backup directory (``run-0001/seg-...parquet``)."""
    first_seq: int
    last_seq: int
    messages: int
    absent: int
    """Sequences of ``first_seq..last_seq`` the stream did not hold (deleted or purged)."""
    signed: int
    """Messages carrying an engine signature (restoring them verifiably needs the key)."""
    first_stored_at_ns: int
    last_stored_at_ns: int
    raw_bytes: int
    size: int
    sha256: str


class Gap(_Frozen):
    """Sequences between two runs that the backup does not hold: gone from the stream
    (compaction, retention, a purge) before this run read it."""

    first_seq: int
    last_seq: int
    reason: str


class BackupRun(_Frozen):
    number: int
    kind: Literal["full", "incremental"]
    created_at: str
    engram_version: str
    first_seq: int
    last_seq: int
    """The range covered: ``first_seq..last_seq`` (empty when last < first: an empty stream)."""
    stream_first_seq: int
    stream_last_seq: int
    stream_messages: int
    """The stream's state when the run began."""
    messages: int
    gap: Gap | None = None
    segments: tuple[SegmentEntry, ...] = ()
    last_message: str | None = None
    """``StoredCopy.digest`` of the last message held (an incremental run checks the stream
    still has it at that sequence: the same stream, not one created again)."""
    last_message_seq: int | None = None
    previous: str | None = None
    """``digest()`` of the run before (None for run 1)."""

    def digest(self) -> str:
        return hashlib.sha256(canonical(self.model_dump(mode="json"))).hexdigest()

    @property
    def directory(self) -> str:
        return run_directory(self.number)


class EngineKeyEntry(_Frozen):
    """The engine key the stream's derived events are signed with."""

    fingerprint: str | None
    """None: no engine ever signed on the stream."""
    included: bool = False
    """True: ``engine-key.json`` holds the key itself, in clear (--include-engine-key)."""
    sha256: str | None = None


class BackupManifest(_Frozen):
    format: Literal["engram-log-backup"] = "engram-log-backup"
    format_version: int = 1
    stream: str
    subject_prefix: str
    stream_config: dict[str, Any]
    """The stream's JetStream configuration as of the last run (``StreamConfig.as_dict``)."""
    wire_contract: int = 2
    schema_versions: dict[str, int]
    engram_version: str
    created_at: str
    updated_at: str
    engine_key: EngineKeyEntry
    runs: tuple[BackupRun, ...]
    head: str
    """``digest()`` of the last run."""

    @property
    def first_seq(self) -> int:
        return self.runs[0].first_seq

    @property
    def last_seq(self) -> int:
        return self.runs[-1].last_seq

    @property
    def messages(self) -> int:
        return sum(run.messages for run in self.runs)

    @property
    def signed(self) -> int:
        return sum(s.signed for run in self.runs for s in run.segments)

    @property
    def segments(self) -> list[SegmentEntry]:
        return [s for run in self.runs for s in run.segments]

    @property
    def gaps(self) -> list[Gap]:
        return [run.gap for run in self.runs if run.gap is not None]


def load_manifest(directory: Path) -> BackupManifest:
    """The manifest of the backup in ``directory``. Raises BackupCorruptError when there is
    none (no backup there, or only an interrupted first one) or it cannot be read."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BackupCorruptError(
            str(path),
            "no manifest: not a complete backup (a first backup interrupted before "
            "its end leaves none)",
        ) from None
    try:
        return BackupManifest.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            ".".join(str(p) for p in e["loc"]) + ": " + e["msg"]
            for e in exc.errors(include_url=False)[:3]
        )
        raise BackupCorruptError(str(path), f"unreadable manifest ({problems})") from None


def save_manifest(directory: Path, manifest: BackupManifest) -> None:
    """Write the manifest atomically: readers see the old one or the new one, never a mix.
    Everything it names must already be on disk (the manifest is the commit point)."""
    write_atomic(directory / MANIFEST, manifest.model_dump_json(indent=1).encode())


def save_run_record(directory: Path, run: BackupRun) -> None:
    write_atomic(directory / run.directory / RUN_RECORD, run.model_dump_json(indent=1).encode())
