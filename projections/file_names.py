"""Names a projection may give its files and directories, whatever a client calls things."""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["directory_name"]


def directory_name(part: str) -> str:
    """A file-system-safe name for a namespace or collection (injective, never a path)."""
    # Percent-encode everything but letters, digits, "-" and "_" so that no name can contain a
    # path separator or be "." / "..".
    return quote(part, safe="-_").replace(".", "%2E").replace("~", "%7E") or "%00"
