"""Backups of the log: full and incremental, verified by checksum, restored to any point.

The stream is the truth, so it is what is backed up: every stored message with its sequence,
subject, headers and stream timestamp, in compressed, checksummed segments and a manifest
written last (``taking``); ``verify`` checks a backup without a server; ``restoring`` recreates
a stream from it with the same sequences, whole or up to a sequence or a time. The engine key
is recorded by fingerprint only unless asked (``keys``).
"""

from consumers.backup.errors import (
    BackupCorruptError,
    BackupError,
    BackupGapError,
    RestoreRefusedError,
)
from consumers.backup.manifest import BackupManifest, BackupRun, SegmentEntry, load_manifest
from consumers.backup.restoring import RestoreReport, restore_backup
from consumers.backup.taking import DEFAULT_SEGMENT_BYTES, BackupResult, take_backup
from consumers.backup.verify import Problem, VerifyReport, verify_backup

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "BackupCorruptError",
    "BackupError",
    "BackupGapError",
    "BackupManifest",
    "BackupResult",
    "BackupRun",
    "Problem",
    "RestoreRefusedError",
    "RestoreReport",
    "SegmentEntry",
    "VerifyReport",
    "load_manifest",
    "restore_backup",
    "take_backup",
    "verify_backup",
]
