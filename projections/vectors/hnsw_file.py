"""Checking that hnswlib wrote a whole index file.

hnswlib's ``save_index`` writes with a C++ stream and never checks it: on a full disk it returns
normally and leaves a truncated file, which would then be hashed, recorded and committed as a
good save. ``check_complete`` walks the file's layout (hnswlib's ``saveIndex``: a fixed header,
the level-0 block, then each element's upper-level link list preceded by its size) and raises
OSError(ENOSPC-like EIO) unless the file ends exactly where the layout says.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

__all__ = ["check_complete"]

# offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset,
# offsetData (size_t x6); maxlevel (int); enterpoint_node (uint32); maxM, maxM0, M (size_t x3);
# mult (double); ef_construction (size_t).
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")


def _incomplete(path: Path, why: str) -> OSError:
    return OSError(errno.EIO, f"hnswlib wrote an incomplete index file ({why})", str(path))


def check_complete(path: Path, count: int) -> None:
    """Raise OSError unless ``path`` is a complete hnswlib index file of ``count`` elements."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise _incomplete(path, f"{size} bytes, shorter than its header")
        fields = _HEADER.unpack(header)
        elements, per_element = fields[2], fields[3]
        if elements != count:
            raise _incomplete(path, f"it holds {elements} elements, the index {count}")
        offset = _HEADER.size + elements * per_element
        if offset > size:
            raise _incomplete(
                path, f"{size} bytes, the level-0 block ends at {offset}: a full disk?"
            )
        handle.seek(offset, os.SEEK_SET)
        tail = handle.read()
    position = 0
    for _ in range(elements):
        if position + 4 > len(tail):
            raise _incomplete(path, f"{size} bytes, cut within the link lists: a full disk?")
        (links,) = struct.unpack_from("<I", tail, position)
        position += 4 + links
    if position != len(tail):
        raise _incomplete(path, f"{size} bytes, the layout ends at {offset + position}")
