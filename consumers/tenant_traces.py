"""What of one tenant a stored snapshot holds, file by file (after a purge, a snapshot that holds
anything of the purged tenant from before the purge must go).

``packing.namespace_rows`` counts the tenant's rows in the tables with a namespace column. Two
more places hold a tenant's state and are checked here:

- the tables' ``dead_letters`` (no namespace column: a dead letter is the tenant's by the purge's
  own rule, ``projections.purging.belongs_to``, on its subject and raw bytes), counted by
  ``dead_letter_rows``;
- the projections whose files are not tables (``projection_traces``): the learner's state file
  (``LearnerState.holds``), the session compactor's state file and record log
  (``SessionState.holds``), and the vector projection's files (its index set's indexes of the
  tenant, its memory records, its lexical files and its record of envelope ids by namespace),
  and the semantic cache's files (``projections.cache.holds_namespace``).
  Each is read with the projection's own loader where it has one, so what "holds" means is what
  the projection's ``forget`` removes.

Every projection records the envelope ids of the events it applied, by namespace, so a snapshot
taken before a purge that ever applied one of the tenant's events shows it in each of them;
one taken after the purge point applied the purge (its record holds the purge event's own id as
the tenant's, and whatever the tenant published since): those are judged by their tables'
rows below the purge point only (see ``consumers.purge_snapshots.holds_namespace``).
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path, PurePosixPath

import duckdb

from engine.errors import ProjectionError
from engine.events.derived import NamespacePurged
from engine.settings import Settings, StreamSettings
from projections.cache import holds_namespace as cache_holds
from projections.file_names import directory_name
from projections.learning.projection import LearnerProjection
from projections.purging import belongs_to
from projections.sessions.projection import SessionCompactor
from projections.vectors.index_set import MANIFEST_NAME
from projections.vectors.memories import Memory
from projections.vectors.persistence import read_seen

__all__ = ["dead_letter_rows", "projection_traces", "purge_probe"]

_STATE_DIRS = {"patterns": "learner", "sessions": "sessions"}


def dead_letter_rows(files: dict[str, bytes], purge: NamespacePurged, below: int | None) -> int:
    """How many dead letters of the tables (``tables/dead_letters.parquet``) belong to the tenant
    ``purge`` names (stored below ``below`` only, when given)."""
    body = files.get("tables/dead_letters.parquet")
    if body is None:
        return 0
    connection = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch) / "dead_letters.parquet"
            source.write_bytes(body)
            literal = "'" + str(source).replace("'", "''") + "'"
            rows = connection.execute(
                f"SELECT sequence, subject, raw FROM read_parquet({literal})"
            ).fetchall()
    finally:
        connection.close()
    return sum(
        1
        for sequence, subject, raw in rows
        if (below is None or int(sequence) < below) and belongs_to(purge, str(subject), bytes(raw))
    )


def _place(root: Path, name: str, body: bytes) -> None:
    """Write a snapshot file under ``root`` (a name that is no plain relative path is refused:
    the snapshot cannot be read to tell)."""
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in path.parts):
        raise ProjectionError(f"snapshot file name {name!r} is not a relative path")
    target = root.joinpath(*path.parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)


def _vector_traces(directory: Path, namespace: str) -> bool:
    """Whether one embedder's vector files (``vectors/<embedder>``) hold ``namespace``: an index
    of it listed or a directory of it present, a memory record of it, a lexical index of it, or
    envelope ids recorded as its."""
    if (directory / directory_name(namespace)).exists():
        return True
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.exists():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if any(entry["namespace"] == namespace for entry in manifest["indexes"]):
            return True
        extra = manifest.get("extra", {})
        records = extra.get("memories")
        if records is not None:
            raw = json.loads(
                gzip.decompress((directory / PurePosixPath(records).name).read_bytes())
            )
            if any(Memory.from_json(entry).namespace == namespace for entry in raw):
                return True
        if namespace in (extra.get("lexical") or {}).get("files", {}):
            return True
        return namespace in read_seen(directory, extra).owners()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
        raise ProjectionError(f"vector files in {directory.name} unreadable: {exc}") from None


def projection_traces(files: dict[str, bytes], namespace: str) -> list[str]:
    """The projections beside the tables (``learner``, ``sessions``, ``vectors``, ``cache``)
    whose files in a snapshot's ``files`` hold anything of ``namespace``. Raises ProjectionError
    (or IndexCorruptError) when a file cannot be read to tell."""
    found: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for name, body in files.items():
            if name.split("/", 1)[0] in (*_STATE_DIRS, "vectors", "cache"):
                _place(root, name, body)
        if (root / "patterns").is_dir():
            learner = LearnerProjection(root / "patterns")
            if learner.read(lambda state: state.holds(namespace)):
                found.append("learner")
        if (root / "sessions").is_dir():
            sessions = SessionCompactor(root / "sessions")
            if sessions.read(lambda state: state.holds(namespace)):
                found.append("sessions")
        vectors = root / "vectors"
        if vectors.is_dir() and any(
            _vector_traces(embedder, namespace)
            for embedder in vectors.iterdir()
            if embedder.is_dir()
        ):
            found.append("vectors")
        if (root / "cache").is_dir() and cache_holds(root / "cache", namespace):
            found.append("cache")
    return found


def purge_probe(settings: Settings | None, namespace: str) -> NamespacePurged:
    """A purge's rule for the scans (its counts do not matter there); the default stream's
    subjects without ``settings``."""
    subjects = (settings.stream if settings is not None else StreamSettings()).events
    return NamespacePurged(
        namespace=namespace,
        reason="plan",
        first_sequence=0,
        last_sequence=0,
        messages=0,
        subject_filter=subjects.of_namespace(namespace),
        legacy_filter=subjects.legacy,
    )
