"""Restoring a log backup into a new stream, whole or up to a point, with the same sequences.

JetStream numbers what is published itself, so a restore makes the numbers come out the same:

1. The whole backup is verified first (every checksum; a corrupt segment refuses the restore
   before anything is created), and every segment is checked again as it is read.
2. The engine key's record of the new stream is written (consumers.backup.keys), before the
   stream exists, so no engine of it can generate a key of its own.
3. The stream is created with the recorded configuration, its name and (given another subject
   prefix) its subjects changed, ``first_seq`` the backup's first sequence, and for the time of
   the restore no limits (max messages/bytes/age), purges allowed and a 100 ms duplicate window.
   Its metadata says ``engram.restore: in-progress``.
4. Messages are published in sequence order, pipelined on one connection (so stored in the order
   sent), each with its subject (prefix replaced if asked), original headers and body. A
   sequence the backup does not hold (absent from the stream when it was read, or in a gap) is
   filled with an empty placeholder on ``<prefix>._restore.hole``, so that every message lands at
   its original sequence; every acknowledgement is checked against the expected sequence.
5. The placeholders are purged (their sequences become holes, as in the original), then the
   recorded limits, duplicate window and purge policy are set and the metadata says
   ``engram.restore: complete``.

What differs from the original, by necessity: the stream's timestamps are those of the restore
(the originals are in the backup: ``--until TIME`` cuts by them), ``Nats-Expected-*`` and
``Nats-Batch-*`` headers (publish preconditions, checked when the message was first stored) are
not sent again, and a message whose ``Nats-Msg-Id`` repeats one published less than a second
before in the restore is sent without it (JetStream would drop it as a duplicate, which it did
not do originally: the original repeat came after the duplicate window).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NotFoundError

from consumers.backup.errors import BackupCorruptError, BackupError, RestoreRefusedError
from consumers.backup.keys import KeyChoice, choose_restore_key, write_restore_key
from consumers.backup.manifest import BackupManifest
from consumers.backup.republishing import Publisher, RecentIds, restored_headers
from consumers.backup.segments import StoredCopy
from consumers.backup.verify import read_segment, verify_backup
from engine.errors import UsageError
from engine.settings import Settings
from engine.subjects import check_prefix

__all__ = ["HOLE_TOKEN", "RestoreReport", "restore_backup"]

log = structlog.get_logger(__name__)

HOLE_TOKEN = "_restore.hole"
"""Placeholders go to ``<prefix>._restore.hole`` and are purged before the restore ends."""
_RESTORE_DUPLICATE_WINDOW_S = 0.1  # the server's minimum
_OVERLAP = 10065  # "subjects overlap with an existing stream"
_KEPT_FIELDS = (
    "retention",
    "max_consumers",
    "discard",
    "discard_new_per_subject",
    "storage",
    "num_replicas",
    "deny_delete",
    "allow_rollup_hdrs",
    "allow_direct",
    "compression",
    "allow_msg_ttl",
    "consumer_limits",
)
"""Recorded settings the new stream gets at once; placement, mirrors, sources, republishing and
subject transforms are the original deployment's, not the data's, and are left out."""
_LIMITS_AT_END = ("max_msgs", "max_bytes", "max_age", "max_msgs_per_subject", "duplicate_window")


@dataclass(frozen=True, slots=True)
class RestoreReport:
    stream: str
    subjects: tuple[str, ...]
    first_seq: int
    last_seq: int
    messages: int
    placeholders: int
    """Sequences the backup does not hold, filled and then purged (holes, as in the original)."""
    msg_ids_dropped: int
    """Messages sent without their repeated ``Nats-Msg-Id`` (see the module docstring)."""
    gaps: tuple[tuple[int, int], ...]
    key: str
    seconds: float
    cut: str | None

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _subject_mapper(manifest: BackupManifest, prefix: str) -> Callable[[str], str]:
    old = manifest.subject_prefix + "."
    if prefix == manifest.subject_prefix:
        return lambda subject: subject
    new = prefix + "."

    def mapped(subject: str) -> str:
        if not subject.startswith(old):
            raise BackupError(f"message subject {subject} is not under {old}*: cannot move it")
        return new + subject[len(old) :]

    return mapped


def _new_config(
    manifest: BackupManifest, name: str, prefix: str, first_seq: int, replicas: int | None
) -> tuple[StreamConfig, StreamConfig]:
    """The configuration to create the stream with, and the recorded one (for the end)."""
    recorded = StreamConfig.from_response(dict(manifest.stream_config))
    wanted = [f"{manifest.subject_prefix}.>"]
    if list(recorded.subjects or []) != wanted:
        raise RestoreRefusedError(
            f"the backed-up stream captured {recorded.subjects}, not {wanted}: engram restores "
            "only streams whose subjects are <subject prefix>.>"
        )
    kept: dict[str, Any] = {field: getattr(recorded, field) for field in _KEPT_FIELDS}
    if replicas is not None:
        kept["num_replicas"] = replicas
    metadata = {
        **(recorded.metadata or {}),
        "engram.restore": "in-progress",
        "engram.restored_from": manifest.stream,
    }
    config = StreamConfig(
        name=name,
        description=f"engram: restored from a backup of stream {manifest.stream}",
        subjects=[f"{prefix}.>"],
        first_seq=first_seq if first_seq > 1 else None,
        deny_purge=False,
        duplicate_window=_RESTORE_DUPLICATE_WINDOW_S,
        max_msgs=-1,
        max_bytes=-1,
        max_age=0,
        max_msgs_per_subject=-1,
        metadata=metadata,
        **kept,
    )
    return config, recorded


async def _messages(
    directory: Path, manifest: BackupManifest, until_seq: int, until_us: int | None
) -> AsyncIterator[list[StoredCopy]]:
    """The backup's messages in sequence order, one list per segment, up to the cut (a time
    compared to the microsecond, as ``engram replay --until`` compares it)."""
    for entry in manifest.segments:
        if entry.first_seq > until_seq:
            return
        content = await asyncio.to_thread(read_segment, directory, entry)  # checked again
        chunk: list[StoredCopy] = []
        for message in content.messages():
            if message.sequence > until_seq or (
                until_us is not None and message.stored_ns // 1_000 > until_us
            ):
                if chunk:
                    yield chunk
                return
            chunk.append(message)
        if chunk:
            yield chunk


async def restore_backup(
    nc: NatsClient,
    settings: Settings,
    directory: Path,
    *,
    stream: str,
    subject_prefix: str | None = None,
    until_seq: int | None = None,
    until_time: datetime | None = None,
    replicas: int | None = None,
    replace: bool = False,
    without_engine_key: bool = False,
    chunk: int = 20_000,
    on_batch: Callable[[int], None] | None = None,
) -> RestoreReport:
    """Restore the backup in ``directory`` into a new stream ``stream`` (see the module
    docstring), up to ``until_seq`` or the last message stored at or before ``until_time``.

    ``subject_prefix`` (default: the backed-up stream's) lets the restored stream live on the
    same server as the original, which already captures its subjects. Refuses (before creating
    anything) a damaged backup (BackupCorruptError naming the file), an existing stream or
    engine key record of that name unless ``replace`` (RestoreRefusedError), subjects another
    stream captures (RestoreRefusedError saying what to do), a key at hand that is not the
    backup's (EngineKeyError).
    """
    began = time.monotonic()
    report = verify_backup(directory)
    if not report.ok:
        first = report.problems[0]
        more = (
            f" (and {len(report.problems) - 1} more problems)" if len(report.problems) > 1 else ""
        )
        raise BackupCorruptError(first.where, first.problem + more + ": nothing was restored")
    manifest = report.manifest
    assert manifest is not None
    prefix = check_prefix(subject_prefix or manifest.subject_prefix)
    start = manifest.first_seq
    if until_seq is not None and until_seq < start:
        raise UsageError(f"--until-seq {until_seq} is before the backup's first sequence {start}")
    end = manifest.last_seq if until_seq is None else min(until_seq, manifest.last_seq)
    until_us = None if until_time is None else _us(until_time)
    if until_time is not None and until_us is not None:
        first_time = next((s.first_stored_at_ns for s in manifest.segments if s.messages), None)
        if first_time is not None and until_us < first_time // 1_000:
            raise UsageError(
                f"--until {until_time.isoformat()} is before the backup's first message "
                f"(stored at {_iso(first_time)}): nothing would be restored"
            )
    mapper = _subject_mapper(manifest, prefix)
    config, recorded = _new_config(manifest, stream, prefix, start, replicas)
    js = nc.jetstream(timeout=settings.nats.request_timeout_s)

    # Everything that can refuse is asked before an existing stream is deleted (--replace).
    choice = (
        KeyChoice(None, None, "none")
        if without_engine_key
        else await choose_restore_key(js, settings, directory, manifest)
    )
    overlap = await _capturing(js, f"{prefix}.>", besides=stream)
    if overlap is not None:
        raise _overlap_error(prefix, manifest, overlap)
    await _make_room(js, stream, replace)
    await write_restore_key(js, stream, choice, replicas=config.num_replicas or 1, replace=replace)
    try:
        await js.add_stream(config)
    except APIError as exc:
        if exc.err_code == _OVERLAP:
            raise _overlap_error(prefix, manifest, "another stream") from None
        raise BackupError(f"cannot create stream {stream}: {exc.description}") from None

    publisher = Publisher(nc, stream, f"{prefix}.{HOLE_TOKEN}", chunk)
    publisher.next_seq = start
    recent = RecentIds()
    dropped = 0
    max_in_flight = settings.publish_max_in_flight
    timeout_s = settings.nats.request_timeout_s
    last_message = start - 1
    async for batch in _messages(directory, manifest, end, until_us):
        now = time.monotonic()
        for message in batch:
            publisher.hole_until(message.sequence)
            headers, was_dropped = restored_headers(message.headers, recent, now)
            dropped += was_dropped
            publisher.message(mapper(message.subject), message.data, headers)
            last_message = message.sequence
        await publisher.flush(max_in_flight, timeout_s)
        if on_batch is not None:
            on_batch(len(batch))
    final = last_message if until_us is not None else end
    publisher.hole_until(final + 1)
    await publisher.flush(max_in_flight, timeout_s, force=True)
    if publisher.placeholders:
        await js.purge_stream(stream, subject=publisher.hole_subject)
    await _finish(js, stream, recorded, final)
    gaps = tuple((g.first_seq, g.last_seq) for g in manifest.gaps if g.first_seq <= final)
    cut = (
        f"until sequence {until_seq}"
        if until_seq is not None
        else f"until {until_time.isoformat()}"
        if until_time is not None
        else None
    )
    log.info("backup restored", stream=stream, last_seq=final, messages=publisher.messages)
    return RestoreReport(
        stream=stream,
        subjects=(f"{prefix}.>",),
        first_seq=start,
        last_seq=final,
        messages=publisher.messages,
        placeholders=publisher.placeholders,
        msg_ids_dropped=dropped,
        gaps=gaps,
        key=choice.describe(stream) if not without_engine_key else "no engine key recorded",
        seconds=time.monotonic() - began,
        cut=cut,
    )


def _iso(stored_ns: int) -> str:
    moment = datetime.fromtimestamp(stored_ns // 1_000_000_000, UTC)
    return moment.replace(microsecond=stored_ns % 1_000_000_000 // 1_000).isoformat()


def _us(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _overlap_error(prefix: str, manifest: BackupManifest, other: str) -> RestoreRefusedError:
    return RestoreRefusedError(
        f"{other} on this server already captures {prefix}.>: restore into a fresh server, or "
        f"beside the original with --subject-prefix (e.g. restored.{manifest.subject_prefix}), "
        "or delete that stream first"
    )


def _subjects_overlap(a: str, b: str) -> bool:
    """True when some subject matches both NATS subject patterns."""
    left, right = a.split("."), b.split(".")
    for x, y in zip(left, right, strict=False):
        if ">" in (x, y):
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(left) == len(right)


async def _capturing(js: JetStreamContext, subject: str, *, besides: str) -> str | None:
    """The name of a stream other than ``besides`` capturing a subject that ``subject`` may
    match, as ``stream X``; None when there is none."""
    offset = 0
    while page := await js.streams_info(offset):  # pages of up to 256 streams
        offset += len(page)
        for info in page:
            name = info.config.name
            if name == besides:
                continue
            if any(_subjects_overlap(subject, s) for s in info.config.subjects or ()):
                return f"stream {name}"
    return None


async def _make_room(js: JetStreamContext, stream: str, replace: bool) -> None:
    try:
        await js.stream_info(stream)
    except NotFoundError:
        return
    if not replace:
        raise RestoreRefusedError(
            f"stream {stream} already exists: restore into a new name, or pass --replace to "
            "delete it first (its messages are lost)"
        )
    log.warning("deleting the existing stream to restore into it", stream=stream)
    await js.delete_stream(stream)


async def _finish(js: JetStreamContext, stream: str, recorded: StreamConfig, last_seq: int) -> None:
    info = await js.stream_info(stream)
    if info.state.last_seq != last_seq and not (last_seq == 0 and info.state.last_seq == 0):
        raise BackupError(
            f"stream {stream} ends at sequence {info.state.last_seq}, expected {last_seq}: "
            "the restore is incomplete; run it again with --replace"
        )
    metadata = {
        **(info.config.metadata or {}),
        "engram.restore": "complete",
        "engram.restored_until_seq": str(last_seq),
    }
    final = dataclasses.replace(
        info.config,
        deny_purge=recorded.deny_purge,
        metadata={k: v for k, v in metadata.items() if not k.startswith("_nats.")},
        **{field: getattr(recorded, field) for field in _LIMITS_AT_END},
    )
    await js.update_stream(final)
