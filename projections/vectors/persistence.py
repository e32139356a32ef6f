"""Saving an index atomically: the index file first, then the metadata that names it.

Commit order of one save into a directory ``d`` (each step survives a crash of the next):

1. hnswlib writes the graph to ``d/.tmp-<token>.hnsw``; it is fsynced, hashed (blake2b) and
   renamed to ``d/<token>.hnsw``, a name never used before. The current metadata still names
   the previous index file, which is untouched, so a crash here leaves the old save intact.
2. The metadata (embedder, dimension, M, ef_construction, count, watermark, extra, and the
   index file's name, size and blake2b digest) is written to ``d/.tmp-<token>.json``, fsynced and
   renamed over ``d/index.json``; the directory is fsynced. This rename is the commit point.
3. Index files the new metadata does not name, and stray temporary files, are removed.

On load, a metadata file whose index file is missing, or whose size or digest differ, is a torn
or damaged save and raises IndexCorruptError; the projection then rebuilds by replay.

The projection's record of the envelope ids it applied (``projections.identity``) is saved the
same way: ``seen-<watermark>.bin`` (sorted 8-byte keys) is written and renamed before the
manifest that names it (``extra["seen"]``, with the repeats ignored in ``extra["duplicates"]``),
and beside it ``seen-<watermark>.owners.json.gz``, which namespace's events used each id first
and the repeats each made (``extra["seen_owners"]``; absent in a save from before it existed:
the ids are then unattributed, and a purge cannot forget them).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from engine.errors import IndexCorruptError, IndexMismatchError
from projections.atomic_files import write_atomic
from projections.identity import SeenIds, dump_owner_duplicates, dump_owners, restore_owners

__all__ = [
    "FORMAT_VERSION",
    "METADATA_NAME",
    "IndexMetadata",
    "check_compatible",
    "file_digest",
    "fsync_directory",
    "fsync_file",
    "new_token",
    "read_metadata",
    "read_seen",
    "remove_stale_files",
    "remove_stale_seen",
    "write_json_atomic",
    "write_seen",
]

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
METADATA_NAME = "index.json"


@dataclass(frozen=True, slots=True)
class IndexMetadata:
    """What a saved index says about itself; ``watermark`` is the last stream sequence applied."""

    embedder: str
    dimension: int
    m: int
    ef_construction: int
    count: int
    watermark: int
    index_file: str
    index_bytes: int
    index_blake2b: str
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: Path) -> IndexMetadata:
        try:
            meta = cls(**raw)
        except TypeError as exc:
            raise IndexCorruptError(f"{source} is not index metadata: {exc}") from exc
        if meta.format != FORMAT_VERSION:
            raise IndexCorruptError(f"{source} has format {meta.format}, expected {FORMAT_VERSION}")
        return meta


def new_token() -> str:
    """A fresh file-name token; random on purpose, file names are not projection state."""
    return uuid.uuid4().hex


def file_digest(path: Path) -> str:
    """blake2b hex digest of the file at ``path``."""
    digest = hashlib.blake2b(digest_size=32)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def write_json_atomic(target: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``target`` by way of a fsynced temp file and ``os.replace``."""
    temp = target.parent / f".tmp-{new_token()}.json"
    try:
        with temp.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    fsync_directory(target.parent)


def read_metadata(directory: Path, *, verify: bool = True) -> IndexMetadata:
    """Read and check ``directory/index.json``.

    Raises FileNotFoundError when there is no metadata (nothing was ever committed there), and
    IndexCorruptError when it is unreadable or the index file it names is missing or differs
    (size always; blake2b digest too when ``verify``).
    """
    source = directory / METADATA_NAME
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexCorruptError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise IndexCorruptError(f"{source} does not hold a JSON object")
    meta = IndexMetadata.from_json(raw, source)
    index_path = directory / meta.index_file
    if Path(meta.index_file).name != meta.index_file or not index_path.is_file():
        raise IndexCorruptError(f"{source} names {meta.index_file!r}, which is missing: torn save")
    size = index_path.stat().st_size
    if size != meta.index_bytes:
        raise IndexCorruptError(
            f"{index_path} has {size} bytes, metadata says {meta.index_bytes}: torn save"
        )
    if verify and file_digest(index_path) != meta.index_blake2b:
        raise IndexCorruptError(f"{index_path} does not match its recorded blake2b digest")
    return meta


def check_compatible(
    embedder: str, dimension: int, expected_embedder: str, expected_dim: int
) -> None:
    """Raise IndexMismatchError unless a saved (embedder, dimension) is the expected one."""
    if embedder != expected_embedder or dimension != expected_dim:
        raise IndexMismatchError(
            f"the saved index was built by embedder {embedder!r} with dimension "
            f"{dimension}, but {expected_embedder!r} with dimension {expected_dim} is "
            "configured; reindex by replay (engram reindex) instead of mixing vectors"
        )


def remove_stale_files(directory: Path, keep: str) -> None:
    """Delete index files other than ``keep`` and leftover temp files in ``directory``."""
    for path in directory.iterdir():
        stale_index = path.suffix == ".hnsw" and path.name != keep
        if stale_index or path.name.startswith(".tmp-"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def write_seen(directory: Path, watermark: int, seen: SeenIds) -> dict[str, Any]:
    """Write ``seen`` as ``seen-<watermark>.bin`` and its attribution as
    ``seen-<watermark>.owners.json.gz`` (``write_atomic``: fsynced temp file, rename); returns
    the manifest ``extra`` entries that name them."""
    name = f"seen-{watermark}.bin"
    write_atomic(directory / name, seen.to_bytes())  # no temp file left on failure
    owners = f"seen-{watermark}.owners.json.gz"
    owned = {"keys": dump_owners(seen), "duplicates": dump_owner_duplicates(seen)}
    body = json.dumps(owned, sort_keys=True, separators=(",", ":")).encode()
    write_atomic(directory / owners, gzip.compress(body, 5))
    return {"seen": name, "duplicates": seen.duplicates, "seen_owners": owners}


def read_seen(directory: Path, extra: dict[str, Any]) -> SeenIds:
    """The record a manifest's ``extra`` names. A save from before ids were recorded has none:
    an empty record (and a warning). Raises IndexCorruptError when the named file is unusable."""
    name = extra.get("seen")
    if name is None:
        log.warning(
            "vector state predates the record of event ids: repeats of the events it covers "
            "are not recognised; reindex to rebuild it",
            directory=str(directory),
        )
        return SeenIds()
    path = directory / str(name)
    if path.name != name:
        raise IndexCorruptError(f"the manifest in {directory} names {name!r} as its id record")
    try:
        seen = SeenIds.from_bytes(path.read_bytes(), duplicates=int(extra.get("duplicates", 0)))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"event id record {path} unreadable: {exc}") from None
    owners = extra.get("seen_owners")
    if owners is None:
        return seen  # saved before ids were attributed to namespaces
    owners_path = directory / str(owners)
    if owners_path.name != owners:
        raise IndexCorruptError(f"the manifest in {directory} names {owners!r} as its owners")
    try:
        owned = json.loads(gzip.decompress(owners_path.read_bytes()))
        return restore_owners(seen, owned["keys"], owned["duplicates"])
    except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise IndexCorruptError(f"event id owners {owners_path} unreadable: {exc}") from None


def remove_stale_seen(directory: Path, keep: dict[str, Any]) -> None:
    """Delete id records other than the ones ``keep`` (``write_seen``'s entries) names."""
    wanted = {keep["seen"], keep.get("seen_owners")}
    for path in directory.glob("seen-*"):
        if path.name not in wanted and not path.name.startswith(".tmp"):
            path.unlink(missing_ok=True)
