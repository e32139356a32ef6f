"""Verifying a log backup without a server: every checksum, every sequence, the run chain.

``verify_backup`` recomputes the SHA-256 of every segment and of the key file, decodes every
segment and checks that its sequences increase within the range the manifest gives it, that
its counts agree, that the segments of a run cover the run's range without a hole or an
overlap, that each run starts right after the one before (or after a recorded gap), and that
the chain of run digests ends at the manifest's ``head``. It never stops at the first problem:
the report lists each one with the file it concerns. ``read_segment`` is the same check for one
segment, which restore applies again to every segment as it reads it.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from consumers.backup.errors import BackupCorruptError
from consumers.backup.manifest import (
    FORMAT,
    KEY_FILE,
    RUN_RECORD,
    BackupManifest,
    BackupRun,
    SegmentEntry,
    load_manifest,
)
from consumers.backup.segments import SIGNATURE_HEADER, SegmentContent, decode_segment

__all__ = ["Problem", "VerifyReport", "chain_problems", "read_segment", "verify_backup"]

_RUN_DIR = re.compile(r"^run-\d{4,}$")


@dataclass(frozen=True, slots=True)
class Problem:
    where: str
    """The file concerned, relative to the backup directory (or the manifest)."""
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    directory: Path
    manifest: BackupManifest | None
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...]
    segments_checked: int
    messages_checked: int

    @property
    def ok(self) -> bool:
        return not self.problems


def read_segment(directory: Path, entry: SegmentEntry) -> SegmentContent:
    """The messages of one segment, once its size, SHA-256 and content agree with ``entry``.
    Raises BackupCorruptError naming the segment and what failed."""
    path = directory / entry.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BackupCorruptError(entry.file, "missing") from None
    if len(data) != entry.size:
        raise BackupCorruptError(
            entry.file, f"{len(data):,} bytes, the manifest says {entry.size:,}"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise BackupCorruptError(
            entry.file, f"SHA-256 {actual} does not match the manifest's {entry.sha256}"
        )
    try:
        content = decode_segment(data)
    except ValueError as exc:
        raise BackupCorruptError(entry.file, str(exc)) from None
    _check_content(entry, content)
    return content


def _check_content(entry: SegmentEntry, content: SegmentContent) -> None:
    def fail(problem: str) -> BackupCorruptError:
        return BackupCorruptError(entry.file, problem)

    sequences = content.sequences
    if len(sequences) != entry.messages:
        raise fail(f"{len(sequences):,} messages, the manifest says {entry.messages:,}")
    span = entry.last_seq - entry.first_seq + 1
    if entry.messages + entry.absent != span:
        raise fail(f"{entry.messages} messages + {entry.absent} absent != {span} sequences")
    if sequences:
        if sequences[0] < entry.first_seq or sequences[-1] > entry.last_seq:
            raise fail(
                f"sequences {sequences[0]}..{sequences[-1]} outside "
                f"{entry.first_seq}..{entry.last_seq}"
            )
        if any(b <= a for a, b in itertools.pairwise(sequences)):
            raise fail("sequences are not strictly increasing")
        if (content.times[0], content.times[-1]) != (
            entry.first_stored_at_ns,
            entry.last_stored_at_ns,
        ):
            raise fail("stream timestamps differ from the manifest's")
    signed = sum(1 for pairs in content.headers if any(k == SIGNATURE_HEADER for k, _ in pairs))
    if signed != entry.signed:
        raise fail(f"{signed} signed messages, the manifest says {entry.signed}")


def chain_problems(manifest: BackupManifest) -> list[Problem]:
    """Problems of the manifest's structure (no file is read)."""
    found: list[Problem] = []
    if manifest.format != FORMAT:
        found.append(Problem("manifest.json", f"format {manifest.format!r}"))
    if not manifest.runs:
        return [*found, Problem("manifest.json", "no runs")]
    previous: BackupRun | None = None
    for index, run in enumerate(manifest.runs, start=1):
        where = f"{run.directory} (manifest)"
        if run.number != index:
            found.append(Problem(where, f"run number {run.number}, expected {index}"))
        if run.kind != ("full" if index == 1 else "incremental"):
            found.append(Problem(where, f"a {run.kind} run at position {index}"))
        if previous is None:
            if run.previous is not None:
                found.append(Problem(where, "the first run names a previous one"))
        else:
            if run.previous != previous.digest():
                found.append(Problem(where, "its previous digest is not the run before's"))
            expected = previous.last_seq + 1
            if run.gap is not None:
                gap = run.gap
                if (gap.first_seq, gap.last_seq) != (expected, run.first_seq - 1):
                    found.append(
                        Problem(
                            where,
                            f"gap {gap.first_seq}..{gap.last_seq} does not join "
                            f"{previous.last_seq} to {run.first_seq}",
                        )
                    )
            elif run.first_seq != expected:
                found.append(
                    Problem(
                        where,
                        f"starts at {run.first_seq}, not right after the previous run "
                        f"({previous.last_seq}), and records no gap",
                    )
                )
        found.extend(_segment_cover_problems(run))
        previous = run
    if manifest.head != manifest.runs[-1].digest():
        found.append(Problem("manifest.json", "head is not the digest of the last run"))
    return found


def _segment_cover_problems(run: BackupRun) -> list[Problem]:
    where = f"{run.directory} (manifest)"
    found: list[Problem] = []
    if run.last_seq < run.first_seq:
        if run.segments or run.messages:
            found.append(Problem(where, "an empty range with segments or messages"))
        return found
    at = run.first_seq
    for segment in run.segments:
        if not segment.file.startswith(run.directory + "/"):
            found.append(Problem(segment.file, f"not in {run.directory}/"))
        if segment.first_seq != at:
            found.append(
                Problem(
                    segment.file,
                    f"starts at {segment.first_seq}, expected {at} (a hole or "
                    "an overlap between segments)",
                )
            )
        at = segment.last_seq + 1
    if at != run.last_seq + 1:
        found.append(Problem(where, f"its segments end at {at - 1}, the run at {run.last_seq}"))
    if sum(s.messages for s in run.segments) != run.messages:
        found.append(Problem(where, "its message count is not the sum of its segments'"))
    return found


def _run_file_problems(directory: Path, manifest: BackupManifest) -> list[Problem]:
    found: list[Problem] = []
    for run in manifest.runs:
        record = directory / run.directory / RUN_RECORD
        try:
            stored = BackupRun.model_validate_json(record.read_bytes())
        except FileNotFoundError:
            found.append(Problem(f"{run.directory}/{RUN_RECORD}", "missing"))
            continue
        except ValueError as exc:
            found.append(Problem(f"{run.directory}/{RUN_RECORD}", f"unreadable ({exc})"))
            continue
        if stored != run:
            found.append(Problem(f"{run.directory}/{RUN_RECORD}", "differs from the manifest"))
    key = manifest.engine_key
    if key.included:
        try:
            actual = hashlib.sha256((directory / KEY_FILE).read_bytes()).hexdigest()
        except FileNotFoundError:
            found.append(Problem(KEY_FILE, "missing (the manifest says the key is included)"))
        else:
            if actual != key.sha256:
                found.append(Problem(KEY_FILE, "SHA-256 does not match the manifest's"))
    return found


def verify_backup(directory: Path) -> VerifyReport:
    """Check everything the manifest in ``directory`` names (see the module docstring).
    Never raises for a damaged backup: the report's ``problems`` say what is wrong where."""
    try:
        manifest = load_manifest(directory)
    except BackupCorruptError as exc:
        return VerifyReport(directory, None, (Problem(exc.where, exc.problem),), (), 0, 0)
    problems = chain_problems(manifest) + _run_file_problems(directory, manifest)
    segments = messages = 0
    for run in manifest.runs:
        last: tuple[int, str] | None = None
        damaged = False
        for entry in run.segments:
            try:
                content = read_segment(directory, entry)
            except BackupCorruptError as exc:
                problems.append(Problem(exc.where, exc.problem))
                damaged = True
                continue
            segments += 1
            messages += len(content)
            final = content.last()
            if final is not None:
                last = (final.sequence, final.digest())
        if damaged:
            continue  # named above; its last message cannot be told
        if run.last_message_seq is not None and last != (run.last_message_seq, run.last_message):
            problems.append(
                Problem(f"{run.directory} (manifest)", "its last message is not the one recorded")
            )
    referenced = {run.directory for run in manifest.runs}
    warnings = tuple(
        f"{path.name}/ is in no run of the manifest (left by an interrupted backup): ignored"
        for path in sorted(directory.iterdir())
        if path.is_dir() and _RUN_DIR.match(path.name) and path.name not in referenced
    )
    warnings += tuple(
        f"gap: sequences {gap.first_seq}..{gap.last_seq} are not in the backup ({gap.reason})"
        for gap in manifest.gaps
    )
    return VerifyReport(directory, manifest, tuple(problems), warnings, segments, messages)
