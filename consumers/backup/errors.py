"""What can go wrong with a backup of the log, each error saying what to do about it."""

from __future__ import annotations

from engine.errors import ConfigurationError, EngramError

__all__ = ["BackupCorruptError", "BackupError", "BackupGapError", "RestoreRefusedError"]


class BackupError(EngramError):
    """A backup could not be taken or read."""


class BackupCorruptError(BackupError):
    """A backup failed verification: ``where`` names the file (a segment, the manifest, a run
    record) and the message the check that failed. Restore refuses such a backup."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class BackupGapError(BackupError):
    """Messages the backup does not hold are gone from the stream (compaction, retention, a
    purge) since the last backup: an incremental backup would leave a hole in the chain."""


class RestoreRefusedError(ConfigurationError):
    """A restore would overwrite or collide with something that exists (a stream, a key)."""
