"""The identity of an event: its envelope id. Which ids a projection has applied, kept compactly.

Every projection applies the first occurrence of an envelope id (the lowest stream sequence) and
ignores later ones, counting them: a repeat reaches the stream when it is published without
``Nats-Msg-Id``, after JetStream's duplicate window, or from two publishers. ``SeenIds`` is the
record each projection keeps of the ids it applied, saved with its state and checkpoint.

An id is kept as its 64-bit key (the first 8 bytes of its blake2b digest), in a sorted numpy
``uint64`` array plus a small set of recent additions merged into the array when the set passes
1/64 of it: about 8.7 MB per million ids (a merge briefly needs a second array: 18 MB at the
peak), against about 127 MB for a Python set of the id strings. Checking an id costs one hash and
one binary search: about 1.2 us (``bench/bench_identity.py`` measures all three).

Each key can also be attributed to the namespace (its *owner*) whose event first used it, with
the repeats each namespace's events made: ``forget(owner)`` then takes a tenant's ids and
repeats out when it is purged (``projections.purging``), so its events published again later
are first occurrences, as they are to a replay of the purged stream. The attribution costs 8
more bytes per id; a record saved before it existed loads with its ids unattributed (kept by
every purge: rebuild by replay to attribute them).

Two different ids with the same key would make the later one look like a repeat: with n distinct
ids the chance that this happens at all is about n**2 / 2**65 (3e-8 at a million, 3e-6 at ten
million). Keys are not keyed hashes: whoever can publish can repeat an id outright anyway.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from array import array
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "KEY_BYTES",
    "CountsDuplicates",
    "IdHistory",
    "SeenIds",
    "dump_owner_duplicates",
    "dump_owners",
    "duplicates_seen",
    "event_key",
    "restore_owners",
]

KEY_BYTES = 8
_DTYPE = np.dtype("<u8")
_MIN_MERGE = 4_096

Keys = npt.NDArray[np.uint64]


def event_key(event_id: str) -> int:
    """The 64-bit key of an envelope id (deterministic: the same on every engine and replay)."""
    return _from_bytes(_blake2b(event_id.encode(), digest_size=KEY_BYTES).digest(), "little")


_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes
_bisect = bisect.bisect_left


def _keys(values: Iterable[int]) -> Keys:
    return np.fromiter(values, dtype=_DTYPE)


class SeenIds:
    """The keys of the envelope ids a projection applied, and how many repeats it ignored.

    ``add`` records a key (recording one twice is harmless); ``in`` checks one; ``first``
    does both for a fold that applies an event only when it is a first occurrence. Saved with
    ``to_bytes`` (sorted keys, little-endian) or incrementally with the journal (the keys
    added since ``clear_journal``, in order; kept only when ``journal=True``).
    """

    __slots__ = (
        "_journal",
        "_merge_at",
        "_owner_duplicates",
        "_owners",
        "_recent",
        "_sorted",
        "_view",
        "duplicates",
    )

    def __init__(
        self, keys: Keys | None = None, *, duplicates: int = 0, journal: bool = False
    ) -> None:
        self._sorted: Keys = np.unique(keys.astype(_DTYPE)) if keys is not None else _keys(())
        self._view = self._sorted.data
        self._merge_at = max(_MIN_MERGE, len(self._sorted) >> 6)
        self._recent: set[int] = set()
        self._journal: dict[str | None, array[int]] | None = {} if journal else None
        """Keys added since the journal was cleared, by owner (None: unattributed)."""
        self._owners: dict[str, array[int]] = {}
        """owner -> the keys its events used first, in the order they were recorded."""
        self._owner_duplicates: dict[str, int] = {}
        """owner -> the repeats its events made (part of ``duplicates``)."""
        self.duplicates = duplicates
        """Later occurrences of a recorded id that were ignored."""

    @classmethod
    def from_bytes(cls, data: bytes, *, duplicates: int = 0, journal: bool = False) -> SeenIds:
        """Keys written by ``to_bytes`` or appended from ``journal_bytes`` (any order)."""
        if len(data) % KEY_BYTES:
            raise ValueError(f"{len(data)} bytes are not a whole number of {KEY_BYTES}-byte keys")
        return cls(np.frombuffer(data, dtype=_DTYPE), duplicates=duplicates, journal=journal)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, key: int) -> bool:
        if key in self._recent:
            return True
        view = self._view
        at = _bisect(view, key)
        return at < len(view) and view[at] == key

    def add(self, key: int, owner: str | None = None) -> None:
        """Record ``key``, first used by ``owner``'s events (already recorded: nothing
        changes)."""
        if key not in self:
            self._record(key, owner)

    def _record(self, key: int, owner: str | None) -> None:
        self._recent.add(key)
        if owner is not None:
            owned = self._owners.get(owner)
            if owned is None:
                owned = self._owners[owner] = array("Q")
            owned.append(key)
        if self._journal is not None:
            journal = self._journal.get(owner)
            if journal is None:
                journal = self._journal[owner] = array("Q")
            journal.append(key)
        if len(self._recent) > self._merge_at:
            self._merge()

    def extend(self, keys: Iterable[int], owner: str | None = None) -> None:
        for key in keys:
            self.add(key, owner)

    def count_duplicate(self, owner: str | None = None) -> None:
        """Count one repeat, made by ``owner``'s event."""
        self.duplicates += 1
        if owner is not None:
            self._owner_duplicates[owner] = self._owner_duplicates.get(owner, 0) + 1

    def first(self, event_id: str, owner: str | None = None) -> bool:
        """True (and the id recorded as ``owner``'s) for an id not seen before; False (and the
        repeat counted as ``owner``'s) for one seen before."""
        # The hot path of every projection's fold: ``event_key`` and ``in`` written out.
        key = _from_bytes(_blake2b(event_id.encode(), digest_size=KEY_BYTES).digest(), "little")
        view = self._view
        if key in self._recent or ((at := _bisect(view, key)) < len(view) and view[at] == key):
            self.duplicates += 1
            if owner is not None:
                self._owner_duplicates[owner] = self._owner_duplicates.get(owner, 0) + 1
            return False
        if owner is not None or self._journal is not None:
            self._record(key, owner)
            return True
        recent = self._recent
        recent.add(key)
        if len(recent) > self._merge_at:
            self._merge()
        return True

    # -- owners (namespaces) --------------------------------------------------------------------

    def owners(self) -> list[str]:
        """The owners with ids or repeats recorded, sorted."""
        return sorted(self._owners.keys() | self._owner_duplicates.keys())

    def owned(self, owner: str) -> Keys:
        """The keys ``owner``'s events used first, sorted."""
        owned = self._owners.get(owner)
        return np.unique(_keys(owned)) if owned is not None else _keys(())

    def duplicates_of(self, owner: str) -> int:
        """The repeats ``owner``'s events made."""
        return self._owner_duplicates.get(owner, 0)

    def attribute(self, owner: str, keys: Keys, duplicates: int = 0) -> None:
        """Record ``keys`` (recorded already or not) as first used by ``owner``, with
        ``duplicates`` repeats of its own (already counted in ``duplicates``): a saved
        attribution read back. Not journaled."""
        recorded = self._journal
        self._journal = None
        try:
            for key in keys.tolist():
                if key not in self:
                    self._record(key, None)
        finally:
            self._journal = recorded
        owned = self._owners.setdefault(owner, array("Q"))
        owned.extend(keys.tolist())
        if duplicates:
            self._owner_duplicates[owner] = self._owner_duplicates.get(owner, 0) + duplicates

    def forget(self, owner: str) -> int:
        """Take out every key ``owner``'s events used first, and its repeats from
        ``duplicates``; returns how many keys went."""
        self.duplicates -= self._owner_duplicates.pop(owner, 0)
        owned = self._owners.pop(owner, None)
        if self._journal is not None:
            self._journal.pop(owner, None)
        if owned is None or not len(owned):
            return 0
        gone = np.unique(_keys(owned))
        self._recent.difference_update(gone.tolist())
        self._sorted = np.setdiff1d(self._sorted, gone, assume_unique=True).astype(_DTYPE)
        self._view = self._sorted.data
        self._merge_at = max(_MIN_MERGE, len(self._sorted) >> 6)
        return len(gone)

    def fresh(self, keys: Sequence[int]) -> list[bool]:
        """For each key of a batch, in order: is it a first occurrence (not recorded, and not
        earlier in ``keys``)? Records nothing (the caller adds the keys once it applied them)."""
        if not keys:
            return []
        batch = _keys(keys)
        at = np.searchsorted(self._sorted, batch)
        found = np.zeros(len(batch), dtype=bool)
        inside = at < len(self._sorted)
        found[inside] = self._sorted[at[inside]] == batch[inside]
        earlier: set[int] = set()
        verdicts = []
        for key, stored in zip(keys, found.tolist(), strict=True):
            new = not stored and key not in self._recent and key not in earlier
            earlier.add(key)
            verdicts.append(new)
        return verdicts

    def keys(self) -> Keys:
        """Every recorded key, sorted (a new array: the record itself is not changed)."""
        if not self._recent:
            return self._sorted.copy()
        return np.union1d(self._sorted, _keys(self._recent)).astype(_DTYPE)

    def to_bytes(self) -> bytes:
        """Every recorded key, sorted, 8 little-endian bytes each (deterministic)."""
        return self.keys().tobytes()

    def journal_bytes(self) -> bytes:
        """The keys added since the journal was last cleared, 8 bytes each (each owner's in
        the order they were added)."""
        return b"".join(self.journal_by_owner().values())

    def journal_by_owner(self) -> dict[str | None, bytes]:
        """The keys added since the journal was last cleared, by owner (None: unattributed),
        each owner's in order, 8 bytes each."""
        if self._journal is None:
            raise ValueError("this record keeps no journal")
        return {owner: _keys(keys).tobytes() for owner, keys in self._journal.items() if keys}

    def clear_journal(self) -> None:
        if self._journal is not None:
            self._journal.clear()

    def _merge(self) -> None:
        recent = np.sort(_keys(self._recent))
        self._sorted = np.insert(self._sorted, np.searchsorted(self._sorted, recent), recent)
        self._view = self._sorted.data
        self._merge_at = max(_MIN_MERGE, len(self._sorted) >> 6)
        self._recent.clear()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeenIds):
            return NotImplemented
        return self.duplicates == other.duplicates and np.array_equal(self.keys(), other.keys())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SeenIds({len(self)} ids, {self.duplicates} duplicates)"


def dump_owners(seen: SeenIds) -> dict[str, str]:
    """Which namespace used each of ``seen``'s keys first, JSON-ready and canonical: owner ->
    its keys, sorted, base64 of 8 little-endian bytes each (owners with keys only, sorted)."""
    owned = {owner: seen.owned(owner) for owner in seen.owners()}
    return {
        owner: base64.b64encode(keys.tobytes()).decode()
        for owner, keys in owned.items()
        if len(keys)
    }


def dump_owner_duplicates(seen: SeenIds) -> dict[str, int]:
    """The repeats each namespace's events made (owners with some only, sorted)."""
    counts = {owner: seen.duplicates_of(owner) for owner in seen.owners()}
    return {owner: n for owner, n in counts.items() if n}


def restore_owners(
    seen: SeenIds, keys: dict[str, Any] | None, duplicates: dict[str, Any] | None = None
) -> SeenIds:
    """``seen`` with the attribution ``dump_owners`` and ``dump_owner_duplicates`` wrote (None:
    none was saved)."""
    keys, duplicates = keys or {}, duplicates or {}
    for owner in sorted(keys.keys() | duplicates.keys()):
        owned = np.frombuffer(base64.b64decode(keys.get(owner, "")), dtype=_DTYPE)
        seen.attribute(str(owner), owned, int(duplicates.get(owner, 0)))
    return seen


class IdHistory(Protocol):
    """Where a projection that starts mid-stream learns the ids first seen before its start."""

    def seen_through(self, sequence: int) -> tuple[SeenIds, int]:
        """The ids first seen at or below some ``s <= sequence``, and ``s``."""
        ...


@runtime_checkable
class CountsDuplicates(Protocol):
    """A projection that ignores repeated envelope ids and counts them."""

    def duplicates_seen(self) -> int: ...


def duplicates_seen(projection: object) -> int | None:
    """The repeats ``projection`` ignored so far; None for a projection that keeps no count."""
    return projection.duplicates_seen() if isinstance(projection, CountsDuplicates) else None
