"""The lexical indexes of one projection, one per namespace, and how they are saved.

Namespaces never meet: a search walks the postings of its own namespace only (as the vector
indexes, one per namespace, see ``projections.vectors.index_set``). Collections share their
namespace's index, so a memory's score does not depend on which collections a search asks for;
the collection is a filter like the others.

Saving (inside the vector projection's save, before its manifest, which is the commit point):
each namespace whose index changed since the last save is written whole to
``lexical/<namespace>-<watermark>.bm25`` with ``write_atomic``; the manifest's ``extra`` lists the
file of every namespace (unchanged ones keep their older file). Files no manifest names are
removed after the commit. An index is a pure function of the memory records saved beside it
(every record, in label order), so a save without lexical files (made before they existed), one
made under another tokeniser version, or a damaged file is rebuilt from those records on load.

File format: ``ENGRAM-BM25 1\\n``, a JSON header line (terms, array lengths and dtypes), then the
arrays' little-endian bytes; all of it zlib-compressed.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from projections.atomic_files import write_atomic
from projections.file_names import directory_name
from projections.lexical.bm25 import BM25Params, LexicalIndex
from projections.lexical.tokens import TOKENISER_VERSION, tokenise

__all__ = ["FORMAT", "LEXICAL_DIR", "Document", "LexicalSet", "decode", "encode"]

log = structlog.get_logger(__name__)

FORMAT = 1
LEXICAL_DIR = "lexical"
_MAGIC = b"ENGRAM-BM25 1\n"
Document = tuple[str, int, str]  # namespace, label, text
_ARRAYS = (
    ("labels", "<i8"),
    ("lengths", "<i4"),
    ("offsets", "<i8"),
    ("docs", "<i4"),
    ("counts", "<i4"),
)


def encode(index: LexicalIndex) -> bytes:
    """The bytes of one saved index (deterministic: the same index gives the same bytes)."""
    state = index.export()
    arrays = [np.ascontiguousarray(state[name], dtype=dtype) for name, dtype in _ARRAYS]
    header = {
        "k1": state["k1"],
        "b": state["b"],
        "terms": state["terms"],
        "lengths": [len(a) for a in arrays],
    }
    body = b"".join(a.tobytes() for a in arrays)
    return zlib.compress(_MAGIC + json.dumps(header).encode() + b"\n" + body, 1)


def decode(data: bytes) -> LexicalIndex:
    """The index ``encode`` wrote; raises ValueError when the bytes are not one."""
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise ValueError(f"not a compressed lexical index: {exc}") from None
    if not raw.startswith(_MAGIC):
        raise ValueError("not a lexical index file")
    end = raw.index(b"\n", len(_MAGIC))
    header = json.loads(raw[len(_MAGIC) : end])
    arrays: dict[str, Any] = {}
    offset = end + 1
    for (name, dtype), count in zip(_ARRAYS, header["lengths"], strict=True):
        size = np.dtype(dtype).itemsize * int(count)
        if offset + size > len(raw):
            raise ValueError("lexical index file cut short")
        arrays[name] = np.frombuffer(raw, dtype=dtype, count=int(count), offset=offset)
        offset += size
    if offset != len(raw):
        raise ValueError("lexical index file has trailing bytes")
    params = BM25Params(float(header["k1"]), float(header["b"]))
    return LexicalIndex.restore(list(header["terms"]), **arrays, params=params)


class LexicalSet:
    """One ``LexicalIndex`` per namespace, created on first use."""

    def __init__(self, params: BM25Params | None = None) -> None:
        self.params = params or BM25Params()
        self._indexes: dict[str, LexicalIndex] = {}
        self._saved_at: dict[str, int] = {}  # namespace -> index.mutations at its last save
        self._files: dict[str, str] = {}  # namespace -> its file in the last save

    def get(self, namespace: str) -> LexicalIndex | None:
        """The index of ``namespace``, or None when it holds no memory yet."""
        return self._indexes.get(namespace)

    def namespaces(self) -> list[str]:
        return sorted(self._indexes)

    def add(self, namespace: str, label: int, text: str) -> None:
        """Index ``text`` under ``label`` in ``namespace`` (a label indexed before: no change)."""
        index = self._indexes.get(namespace)
        if index is None:
            index = self._indexes[namespace] = LexicalIndex(self.params)
        index.add(label, tokenise(text))

    def drop(self, namespace: str) -> None:
        """Forget ``namespace``'s index (a purged tenant); its file, which the next save's
        manifest entry no longer names, is deleted by ``remove_stale`` after that save."""
        self._indexes.pop(namespace, None)
        self._saved_at.pop(namespace, None)
        self._files.pop(namespace, None)

    @classmethod
    def rebuild(cls, documents: Iterable[Document], params: BM25Params | None = None) -> LexicalSet:
        """The set that adding ``documents`` (namespace, label, text) in label order builds:
        what the projection's replay builds."""
        built = cls(params)
        for namespace, label, text in sorted(documents, key=lambda d: d[1]):
            built.add(namespace, label, text)
        return built

    def save(self, directory: Path, watermark: int) -> dict[str, Any]:
        """Write the changed namespaces under ``directory/lexical``; returns the manifest entry
        naming every namespace's file. Raises the OSError of a failed write (nothing of this
        save is then named by any manifest)."""
        folder = directory / LEXICAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        files = dict(self._files)
        moved: dict[str, int] = {}
        for namespace in self.namespaces():
            index = self._indexes[namespace]
            if self._saved_at.get(namespace) == index.mutations and namespace in files:
                continue
            name = f"{directory_name(namespace)}-{watermark}.bm25"
            write_atomic(folder / name, encode(index))
            files[namespace] = name
            moved[namespace] = index.mutations
        self._files = files
        self._saved_at.update(moved)
        return {
            "format": FORMAT,
            "tokeniser": TOKENISER_VERSION,
            "k1": self.params.k1,
            "b": self.params.b,
            "files": dict(sorted(files.items())),
        }

    @staticmethod
    def remove_stale(directory: Path, entry: dict[str, Any]) -> None:
        """Delete the lexical files ``entry`` (``save``'s return) does not name."""
        keep = set(entry["files"].values())
        for path in (directory / LEXICAL_DIR).glob("*.bm25*"):
            if path.name not in keep:
                path.unlink(missing_ok=True)

    @classmethod
    def load(
        cls,
        directory: Path,
        entry: dict[str, Any] | None,
        documents: Iterable[Document],
        params: BM25Params | None = None,
    ) -> LexicalSet:
        """The set a manifest ``entry`` names; rebuilt from ``documents`` (the memory records
        saved with it) when there is no entry, it was made by another tokeniser or parameters,
        or a file is missing or damaged (a warning says why)."""
        wanted = params or BM25Params()
        reason = _incompatible(entry, wanted)
        if reason is None and entry is not None:
            loaded = cls(wanted)
            try:
                for namespace, name in entry["files"].items():
                    index = decode(_lexical_file(directory, name).read_bytes())
                    loaded._indexes[namespace] = index
                    loaded._saved_at[namespace] = index.mutations
                    loaded._files[namespace] = name
                return loaded
            except (OSError, ValueError, KeyError, TypeError) as exc:
                reason = f"unreadable: {exc}"
        log.warning("lexical index rebuilt from the memory records", reason=reason)
        return cls.rebuild(documents, wanted)

    def encoded(self) -> dict[str, bytes]:
        """Each namespace's index as the bytes a save writes (a comparable state)."""
        return {namespace: encode(self._indexes[namespace]) for namespace in self.namespaces()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LexicalSet):
            return NotImplemented
        return self._indexes == other._indexes

    __hash__ = None  # type: ignore[assignment]  # mutable


def _lexical_file(directory: Path, name: object) -> Path:
    path = directory / LEXICAL_DIR / str(name)
    if path.name != name:
        raise ValueError(f"the manifest names {name!r} as a lexical file")
    return path


def _incompatible(entry: dict[str, Any] | None, params: BM25Params) -> str | None:
    if entry is None:
        return "the saved state has no lexical index (saved before there was one)"
    if entry.get("format") != FORMAT or entry.get("tokeniser") != TOKENISER_VERSION:
        return f"saved with format {entry.get('format')}, tokeniser {entry.get('tokeniser')}"
    if (entry.get("k1"), entry.get("b")) != (params.k1, params.b):
        return f"saved with k1 {entry.get('k1')} and b {entry.get('b')}"
    return None
