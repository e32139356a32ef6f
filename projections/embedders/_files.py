"""What the model-backed embedders share: importing an optional package, verifying a file."""

from __future__ import annotations

import hashlib
import importlib
import threading
from pathlib import Path
from typing import Any

from engine.errors import EmbedderError, EmbedderUnavailableError

__all__ = ["import_optional", "verify_sha256"]

_verified: set[tuple[Path, str]] = set()
_verify_lock = threading.Lock()


def import_optional(module: str, embedder: str, hint: str) -> Any:
    """``module``, or EmbedderUnavailableError naming it, ``embedder`` and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderUnavailableError(
            f"the {embedder} embedder needs the package {module!r}, which is not importable "
            f"({exc}); {hint}"
        ) from exc


def verify_sha256(path: Path, expected: str, *, what: str, fix: str) -> None:
    """Raise EmbedderError unless ``path`` hashes to ``expected`` (``what`` it should be, and
    ``fix`` if not); EmbedderUnavailableError when it cannot be read. Checked once per path and
    digest in a process; the file is read in 1 MiB chunks."""
    with _verify_lock:
        if (path, expected) in _verified:
            return
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise EmbedderUnavailableError(f"cannot read {path}: {exc}; {fix}") from exc
        if digest.hexdigest() != expected:
            raise EmbedderError(
                f"{path} is not {what} (has sha256 {digest.hexdigest()}, expected {expected}); "
                f"{fix}"
            )
        _verified.add((path, expected))
