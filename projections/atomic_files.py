"""Writing a file whole or not at all, and leaving nothing behind when the write fails.

Every whole-state save (learner, sessions, vector records, snapshot files) goes through
``write_atomic``: the bytes go to a temporary file beside the target, are fsynced, and the
temporary file is renamed over the target (the commit point), then the directory is fsynced. A
write that fails (a full disk: ENOSPC) removes its temporary file, so a failing save neither
leaves ``*.tmp`` files behind nor eats the space its retry needs, and the old file stays intact.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMP_SUFFIX", "fsync_directory", "remove_temporary", "write_atomic"]

TEMP_SUFFIX = ".tmp"


def fsync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _create(temp: Path, mode: int | None) -> BinaryIO:
    """``temp`` opened for writing; with ``mode`` (e.g. 0o600 for a secret) created with those
    permission bits, never readable by others even for a moment."""
    if mode is None:
        return temp.open("wb")
    return os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb")


def write_atomic(
    target: Path, data: bytes, *, temp: Path | None = None, mode: int | None = None
) -> None:
    """Replace ``target`` with ``data`` atomically: a crash or an error leaves the old file or
    the new one, never a mix, and a failed write leaves no temporary file. Raises the OSError
    that stopped it (ENOSPC, EIO ...), always before the rename: when it raises, ``target`` is
    untouched. ``temp`` is the temporary file to use (default:
    ``<target>.tmp``); ``mode``: the new file's permission bits (default: as ``open`` creates
    files, under the umask)."""
    temp = temp if temp is not None else target.with_name(target.name + TEMP_SUFFIX)
    try:
        with _create(temp, mode) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    # The rename is the commit: once it is done this returns. Making it durable is best
    # effort: if the directory's fsync fails, a power cut may bring the old file back, which
    # is a consistent older save (the projection then replays from its older watermark).
    with contextlib.suppress(OSError):
        fsync_directory(target.parent)


def remove_temporary(directory: Path, pattern: str = "*" + TEMP_SUFFIX) -> int:
    """Delete temporary files matching ``pattern`` in ``directory`` left by a crashed save;
    returns how many (0 when the directory does not exist)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for path in directory.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed
