"""Saving the semantic cache: its state, its ids and its vector indexes, named by one manifest.

Files in the cache's directory (``<data dir>/cache``):

- ``cache-state-<watermark>.json.gz``: the entries of every namespace, its counters, the
  namespaces' clocks, the repeats ignored and which namespace used each id first;
- ``cache-seen-<watermark>.bin``: the keys of the envelope ids applied (8 bytes each, sorted);
- ``cache-index-<namespace>-<watermark>.hnsw``: a namespace's hnswlib graph, rewritten only when
  that namespace's index changed since the last save (else the manifest names the older file);
- ``cache-manifest.json``: the watermark, the embedder and dimension that built the vectors, and
  the names of the files above with each index's node counts. It is the commit point.

Commit order of ``save``: every new file first (each written whole: temporary file, fsync,
rename), then the manifest (the same way), then the files it no longer names are deleted. A
crash before the manifest's rename leaves the previous save whole (and files no manifest names,
deleted by the next save or load).
"""

from __future__ import annotations

import gzip
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ProjectionError
from projections.atomic_files import write_atomic
from projections.cache.entries import CacheEntry
from projections.cache.prompt_index import IndexParams, PromptIndex
from projections.cache.state import COUNTERS, CacheState, NamespaceCache
from projections.file_names import directory_name
from projections.identity import (
    SeenIds,
    dump_owner_duplicates,
    dump_owners,
    restore_owners,
)

__all__ = ["MANIFEST", "Loaded", "SavedIndexes", "holds_namespace", "load", "save"]

MANIFEST = "cache-manifest.json"
FORMAT = 1
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class SavedIndexes:
    """Which index file holds each namespace's graph as last saved, and at which mutation."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """namespace -> {"file", "count", "deleted"} as the manifest names them."""
    mutations: dict[str, int] = field(default_factory=dict)
    """namespace -> its ``NamespaceCache.mutations`` when that file was written."""


@dataclass
class Loaded:
    """A saved cache read back."""

    state: CacheState
    saved: SavedIndexes
    embedder: str
    """The embedder that built the saved vectors."""
    reembed: bool
    """Another embedder (or dimension) built them: no index was loaded, re-embed the prompts."""


def _state_body(state: CacheState) -> bytes:
    body = {
        "clocks": dict(sorted(state.clocks.items())),
        "namespaces": {
            ns: {
                "counters": cache.counters,
                "entries": [e.to_json() for e in sorted(cache.entries.values(), key=_label)],
            }
            for ns, cache in sorted(state.namespaces.items())
        },
        "duplicates": state.seen.duplicates,
        "owners": dump_owners(state.seen),
        "owner_duplicates": dump_owner_duplicates(state.seen),
    }
    return gzip.compress(_CANONICAL.encode(body).encode(), 5)


def _label(entry: CacheEntry) -> int:
    return entry.sequence


def save(directory: Path, state: CacheState, embedder: str, saved: SavedIndexes) -> SavedIndexes:
    """Write ``state`` (see the commit order above); returns the index files now saved."""
    directory.mkdir(parents=True, exist_ok=True)
    watermark = state.applied
    files: dict[str, dict[str, Any]] = {}
    mutations: dict[str, int] = {}
    for namespace, cache in sorted(state.namespaces.items()):
        if cache.index is None:
            continue
        previous = saved.files.get(namespace)
        if previous is not None and saved.mutations.get(namespace) == cache.mutations:
            files[namespace] = previous
        else:
            # A new name every time: the manifest naming the old file stays whole until its rename.
            name = (
                f"cache-index-{directory_name(namespace)}-{watermark}-{secrets.token_hex(4)}.hnsw"
            )
            cache.index.save(directory / name)
            files[namespace] = {
                "file": name,
                "count": cache.index.count,
                "deleted": cache.index.deleted,
            }
        mutations[namespace] = cache.mutations
    state_name = f"cache-state-{watermark}.json.gz"
    seen_name = f"cache-seen-{watermark}.bin"
    write_atomic(directory / state_name, _state_body(state))
    write_atomic(directory / seen_name, state.seen.to_bytes())
    manifest = {
        "format": FORMAT,
        "watermark": watermark,
        "embedder": embedder,
        "dimension": state.dimension,
        "state": state_name,
        "seen": seen_name,
        "indexes": files,
    }
    write_atomic(directory / MANIFEST, _CANONICAL.encode(manifest).encode())
    remove_stale(directory, manifest)
    return SavedIndexes(files, mutations)


def _named(manifest: dict[str, Any]) -> set[str]:
    return {
        MANIFEST,
        str(manifest["state"]),
        str(manifest["seen"]),
        *(str(entry["file"]) for entry in manifest["indexes"].values()),
    }


def remove_stale(directory: Path, manifest: dict[str, Any]) -> None:
    """Delete the cache files ``manifest`` does not name (an older save's, a crash's)."""
    keep = _named(manifest)
    for path in directory.glob("cache-*"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


def _manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _unreadable(directory, exc) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _unreadable(directory, f"format {raw.get('format')!r} is not {FORMAT}")
    for name in _named(raw):
        if Path(name).name != name or not name.startswith("cache-"):
            raise _unreadable(directory, f"it names {name!r}")
    return raw


def _unreadable(directory: Path, why: object) -> ProjectionError:
    return ProjectionError(
        f"the semantic cache in {directory} is unreadable ({why}); delete the directory to "
        "rebuild it by replay"
    )


def _read_state(directory: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], SeenIds]:
    body = json.loads(gzip.decompress((directory / manifest["state"]).read_bytes()))
    seen = SeenIds.from_bytes(
        (directory / manifest["seen"]).read_bytes(), duplicates=int(body["duplicates"])
    )
    restore_owners(seen, body.get("owners"), body.get("owner_duplicates"))
    return body, seen


def load(directory: Path, params: IndexParams, embedder: str, dimension: int) -> Loaded | None:
    """The saved cache in ``directory`` (None: nothing saved). Indexes built by another
    embedder are not loaded (``Loaded.reembed``: the caller embeds the prompts again). Raises
    ProjectionError (or IndexCorruptError) when the files are unreadable: never silently
    starts over."""
    manifest = _manifest(directory)
    if manifest is None:
        return None
    same = manifest["embedder"] == embedder and int(manifest["dimension"]) == dimension
    try:
        body, seen = _read_state(directory, manifest)
        state = CacheState(dimension, params, seen=seen, applied=int(manifest["watermark"]))
        state.clocks = {str(ns): float(t) for ns, t in body["clocks"].items()}
        for namespace, raw in body["namespaces"].items():
            cache = NamespaceCache(dimension, params)
            cache.counters = {name: int(raw["counters"].get(name, 0)) for name in COUNTERS}
            for item in raw["entries"]:
                cache.add_entry(CacheEntry.from_json(item))
            cache.expiries = sorted((e.expires_at, e.sequence) for e in cache.entries.values())
            state.namespaces[str(namespace)] = cache
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise _unreadable(directory, exc) from None
    saved = SavedIndexes()
    if same:
        for namespace, entry in manifest["indexes"].items():
            cache = state.namespaces[namespace]
            cache.index = PromptIndex.load(
                directory / str(entry["file"]),
                dimension,
                params,
                int(entry["count"]),
                int(entry["deleted"]),
            )
            if cache.index.live != len(cache.entries):
                raise _unreadable(
                    directory, f"{namespace}'s index holds {cache.index.live} live prompts"
                )
            saved.files[namespace] = dict(entry)
            saved.mutations[namespace] = cache.mutations
    remove_stale(directory, manifest)
    return Loaded(state, saved, str(manifest["embedder"]), reembed=not same)


def holds_namespace(directory: Path, namespace: str) -> bool:
    """Whether the cache saved in ``directory`` holds anything of ``namespace`` (entries,
    counters, its clock, an index, ids its events used first); False when nothing is saved.
    Raises ProjectionError when it cannot be read to tell."""
    manifest = _manifest(directory)
    if manifest is None:
        return False
    if namespace in manifest["indexes"]:
        return True
    try:
        body, seen = _read_state(directory, manifest)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise _unreadable(directory, exc) from None
    return (
        namespace in body["namespaces"]
        or namespace in body["clocks"]
        or (namespace in seen.owners())
    )
