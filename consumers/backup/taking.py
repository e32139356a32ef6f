"""Taking a backup of the log: a full run, or an incremental one after the last run.

Commit order (a run interrupted at any point is never taken for complete):

1. A run directory left by an interrupted attempt (``run-000N/`` that no manifest names) is
   removed.
2. The stream is read from the start of the run to its last sequence as of the start (messages
   appended meanwhile go to the next run); each segment is written whole (temporary file,
   fsync, rename) as soon as it reaches ``segment_bytes`` of raw messages.
3. The run's own record ``run-000N/run.json``, then the key file when asked for.
4. ``manifest.json``, atomically: the commit point. Before it, the backup is the previous
   manifest's (or none: an interrupted first backup leaves no manifest at all, so verify and
   restore refuse it).

An incremental run starts right after the previous run's last sequence. When the stream's first
sequence is already past that (compaction, retention, a purge removed messages the backup never
held), it stops with BackupGapError instead of silently leaving a hole, unless ``accept_gap``:
then the gap is recorded in the run and reported by verify and restore.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from consumers.backup.errors import BackupError, BackupGapError
from consumers.backup.keys import StreamKey, stream_key, write_key_file
from consumers.backup.manifest import (
    MANIFEST,
    BackupManifest,
    BackupRun,
    EngineKeyEntry,
    Gap,
    SegmentEntry,
    load_manifest,
    run_directory,
    save_manifest,
    save_run_record,
)
from consumers.backup.reading import read_range
from consumers.backup.segments import SegmentBuilder, StoredCopy, segment_name
from consumers.backup.verify import chain_problems
from engine import __version__
from engine.errors import EngineKeyError, UsageError
from engine.events import EVENT_TYPES
from engine.settings import Settings
from engine.stream import lookup_stream
from projections.atomic_files import write_atomic

__all__ = ["DEFAULT_SEGMENT_BYTES", "BackupResult", "take_backup"]

log = structlog.get_logger(__name__)

DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024
"""Raw bytes (bodies, subjects, headers) per segment before it is written: bounds memory too."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    manifest: BackupManifest
    run: BackupRun | None
    """The run written, None when the stream had nothing new."""
    seconds: float
    incremental_requested_but_full: bool = False

    @property
    def messages_per_second(self) -> float:
        done = self.run.messages if self.run is not None else 0
        return done / self.seconds if self.seconds > 0 else 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _check_same_stream(js: JetStreamContext, stream: str, previous: BackupRun) -> None:
    """Refuse a stream that is not the one the backup holds (deleted and created again)."""
    seq = previous.last_message_seq
    if seq is None:
        return
    try:
        message = await js.get_msg(stream, seq)
    except NotFoundError:
        return  # deleted or compacted since: nothing to compare
    copy = StoredCopy(seq, message.subject or "", 0, (), message.data or b"")
    if copy.digest() != previous.last_message:
        raise BackupError(
            f"stream {stream} holds another message at sequence {seq} than the backup: it is "
            "not the stream this backup was taken of (deleted and created again?). Start a "
            "new backup directory"
        )


class _SegmentWriter:
    def __init__(
        self,
        directory: Path,
        run_dir: str,
        limit: int,
        on_segment: Callable[[SegmentEntry], None] | None,
    ) -> None:
        self.directory = directory
        self.run_dir = run_dir
        self.limit = limit
        self.on_segment = on_segment
        self.entries: list[SegmentEntry] = []
        self.builder = SegmentBuilder(limit)
        self.last: StoredCopy | None = None

    async def flush(self, first_seq: int, last_seq: int) -> None:
        builder, self.builder = self.builder, SegmentBuilder(self.limit)
        data = await asyncio.to_thread(builder.encode)
        name = f"{self.run_dir}/{segment_name(first_seq, last_seq)}"
        await asyncio.to_thread(write_atomic, self.directory / name, data)
        entry = SegmentEntry(
            file=name,
            first_seq=first_seq,
            last_seq=last_seq,
            messages=len(builder),
            absent=last_seq - first_seq + 1 - len(builder),
            signed=builder.signed,
            first_stored_at_ns=builder.times[0] if len(builder) else 0,
            last_stored_at_ns=builder.times[-1] if len(builder) else 0,
            raw_bytes=builder.raw_bytes,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        self.last = builder.last() or self.last
        self.entries.append(entry)
        if self.on_segment is not None:
            self.on_segment(entry)


def _previous(directory: Path, stream: str, incremental: bool) -> BackupManifest | None:
    """The backup already in ``directory`` (None: none yet), if this run may add to it."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / MANIFEST).exists():
        return None
    previous = load_manifest(directory)
    if not incremental:
        raise UsageError(
            f"{directory} already holds a backup of stream {previous.stream} (sequences "
            f"{previous.first_seq}..{previous.last_seq}): add to it with --incremental, or "
            "choose a new directory"
        )
    if previous.stream != stream:
        raise UsageError(f"{directory} holds a backup of stream {previous.stream}, not {stream}")
    broken = chain_problems(previous)
    if broken:
        raise BackupError(
            f"the backup in {directory} is damaged ({broken[0]}): run `engram backup verify`, "
            "and back up into a new directory"
        )
    return previous


async def take_backup(
    js: JetStreamContext,
    settings: Settings,
    directory: Path,
    *,
    incremental: bool = False,
    include_engine_key: bool = False,
    accept_gap: bool = False,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    on_segment: Callable[[SegmentEntry], None] | None = None,
) -> BackupResult:
    """Back up ``settings.stream`` into ``directory`` (see the module docstring).

    A full backup needs a directory without a backup; ``incremental`` into one without a
    backup takes a full one (``incremental_requested_but_full``). Raises UsageError for a
    directory that does not fit, BackupGapError (see above), BackupError for another stream,
    StreamNotFoundError, EngineKeyError (``ENGRAM_ENGINE_KEY`` is not the stream's key).
    """
    began = time.monotonic()
    stream = settings.stream.name
    previous = await asyncio.to_thread(_previous, directory, stream, incremental)
    info = await lookup_stream(js, settings.stream)
    state = info.state
    key = await stream_key(js, settings)
    _check_key(stream, previous, key, include_engine_key)

    gap: Gap | None = None
    if previous is None:
        first = max(1, state.first_seq)
    else:
        last_run = previous.runs[-1]
        if state.last_seq < previous.last_seq:
            raise BackupError(
                f"stream {stream} ends at sequence {state.last_seq}, before the backup's "
                f"{previous.last_seq}: not the stream this backup was taken of"
            )
        await _check_same_stream(js, stream, last_run)
        first = previous.last_seq + 1
        if state.first_seq > first:
            gap = Gap(
                first_seq=first,
                last_seq=state.first_seq - 1,
                reason="gone from the stream (compaction, retention or a purge) before this "
                "backup read it",
            )
            if not accept_gap:
                raise BackupGapError(
                    f"sequences {gap.first_seq}..{gap.last_seq} of stream {stream} are gone "
                    f"from it (its first sequence is now {state.first_seq}) and the backup in "
                    f"{directory} does not hold them: an incremental backup would leave a hole. "
                    "Take a full backup into a new directory, or pass --accept-gap to record "
                    "the gap and go on"
                )
            log.warning("backup gap recorded", first_seq=gap.first_seq, last_seq=gap.last_seq)
            first = state.first_seq
        if first > state.last_seq:
            return BackupResult(previous, None, time.monotonic() - began)
    last = state.last_seq
    number = 1 if previous is None else len(previous.runs) + 1
    run_dir = run_directory(number)
    await asyncio.to_thread(_fresh_run_directory, directory / run_dir)

    writer = _SegmentWriter(directory, run_dir, segment_bytes, on_segment)
    segment_first = first
    async for batch in read_range(js, stream, first, last):
        for seq, subject, stored_ns, headers, data in batch:
            writer.builder.add(seq, subject, stored_ns, headers, data)
            if writer.builder.full:
                await writer.flush(segment_first, seq)
                segment_first = seq + 1
    if segment_first <= last:  # the rest, trailing absent sequences included
        await writer.flush(segment_first, last)

    final = writer.last
    run = BackupRun(
        number=number,
        kind="full" if previous is None else "incremental",
        created_at=_now(),
        engram_version=__version__,
        first_seq=first,
        last_seq=last,
        stream_first_seq=state.first_seq,
        stream_last_seq=state.last_seq,
        stream_messages=state.messages,
        messages=sum(e.messages for e in writer.entries),
        gap=gap,
        segments=tuple(writer.entries),
        last_message=None if final is None else final.digest(),
        last_message_seq=None if final is None else final.sequence,
        previous=None if previous is None else previous.head,
    )
    await asyncio.to_thread(save_run_record, directory, run)
    key_entry = await asyncio.to_thread(_key_entry, directory, previous, key, include_engine_key)
    now = _now()
    manifest = BackupManifest(
        stream=stream,
        subject_prefix=_prefix_of(info.config.subjects, settings.stream.subject_prefix),
        stream_config=_config_dict(info.config.as_dict()),
        schema_versions={name: spec.version for name, spec in EVENT_TYPES.items()},
        engram_version=__version__,
        created_at=now if previous is None else previous.created_at,
        updated_at=now,
        engine_key=key_entry,
        runs=(*(previous.runs if previous else ()), run),
        head=run.digest(),
    )
    await asyncio.to_thread(save_manifest, directory, manifest)
    log.info("backup written", run=number, first_seq=first, last_seq=last, messages=run.messages)
    return BackupResult(
        manifest,
        run,
        time.monotonic() - began,
        incremental_requested_but_full=incremental and previous is None,
    )


def _prefix_of(subjects: list[str] | None, configured: str) -> str:
    """The stream's subject prefix: ``P`` when it captures ``P.>`` alone, else the settings'."""
    if subjects is not None and len(subjects) == 1 and subjects[0].endswith(".>"):
        return subjects[0][: -len(".>")]
    return configured


def _fresh_run_directory(path: Path) -> None:
    if path.exists():  # no manifest names it: left by an interrupted attempt
        log.warning("removing a run left by an interrupted backup", run=path.name)
        shutil.rmtree(path)
    path.mkdir()


def _config_dict(config: dict[str, object]) -> dict[str, object]:
    """The stream's configuration without the server's own bookkeeping (``_nats.*``)."""
    metadata = config.get("metadata")
    if isinstance(metadata, dict):
        kept = {k: v for k, v in metadata.items() if not str(k).startswith("_nats.")}
        config = {**config, "metadata": kept or None}
    return {k: v for k, v in config.items() if v is not None}


def _check_key(stream: str, previous: BackupManifest | None, key: StreamKey, include: bool) -> None:
    if previous is not None:
        had = previous.engine_key.fingerprint
        if had is not None and key.fingerprint != had:
            raise BackupError(
                f"stream {stream}'s engine key is now {key.fingerprint}, the backup's "
                f"derived events are signed with {had}: start a new backup directory"
            )
    if include and key.fingerprint is not None and key.secret is None:
        raise EngineKeyError(
            f"the engine key of stream {stream} is not kept on the broker (only its "
            "fingerprint): set ENGRAM_ENGINE_KEY to include it"
        )


def _key_entry(
    directory: Path, previous: BackupManifest | None, key: StreamKey, include: bool
) -> EngineKeyEntry:
    if previous is not None and previous.engine_key.included:
        return previous.engine_key  # already there, same fingerprint (checked)
    if include and key.secret is not None:
        data = write_key_file(directory, key)
        return EngineKeyEntry(
            fingerprint=key.fingerprint, included=True, sha256=hashlib.sha256(data).hexdigest()
        )
    return EngineKeyEntry(fingerprint=key.fingerprint)
