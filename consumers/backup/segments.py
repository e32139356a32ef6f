"""The segment file of a log backup: stored messages as one Parquet file, zstd-compressed.

A segment holds the messages of one contiguous range of stream sequences, in sequence order,
exactly as JetStream stored them: sequence, subject, the stream's timestamp (nanoseconds, UTC),
headers (``Nats-Msg-Id``, ``Engram-Signature`` ...) and the body, byte for byte. Sequences of the
range that the stream did not hold when it was read (deleted, purged) are simply absent.

Why Parquet with zstd: pyarrow (already a dependency) writes it, so no package is added; zstd
compresses JSON bodies about as well as lzma at a small fraction of its CPU time, and better
than gzip at the same speed; and a segment is a self-describing file that DuckDB or any Arrow
tool reads (``SELECT sequence, subject FROM 'seg-...parquet'``) without engram. The file's
SHA-256 (in the manifest) is its checksum; the format version is in its schema metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "FORMAT_VERSION",
    "SIGNATURE_HEADER",
    "SegmentBuilder",
    "SegmentContent",
    "StoredCopy",
    "decode_segment",
    "segment_name",
]

FORMAT_VERSION = 1
SIGNATURE_HEADER = "Engram-Signature"
"""engine.signing.SIGNATURE_HEADER (counted per segment: restoring signed events needs the key)."""
_COMPRESSION_LEVEL = 3

SCHEMA = pa.schema(
    [
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("subject", pa.string(), nullable=False),
        pa.field("stored_at", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("headers", pa.map_(pa.string(), pa.string()), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
    ],
    metadata={"engram.backup.format": str(FORMAT_VERSION)},
)


def segment_name(first_seq: int, last_seq: int) -> str:
    """The file name of the segment covering ``first_seq..last_seq`` (sorts in stream order)."""
    return f"seg-{first_seq:012d}-{last_seq:012d}.parquet"


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """One stored message as a backup holds it."""

    sequence: int
    subject: str
    stored_ns: int
    """The stream's timestamp of the message: nanoseconds since the epoch, UTC."""
    headers: tuple[tuple[str, str], ...]
    data: bytes

    def digest(self) -> str:
        """SHA-256 of the sequence, subject and body: tells the same message apart from another
        stored at the same sequence (a stream deleted and created again)."""
        h = hashlib.sha256(f"{self.sequence}\n{self.subject}\n".encode())
        h.update(self.data)
        return h.hexdigest()


@dataclass(slots=True)
class SegmentBuilder:
    """Collects messages column by column until ``full``, then ``encode`` writes the file."""

    limit_bytes: int
    sequences: list[int] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    headers: list[list[tuple[str, str]]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    raw_bytes: int = 0
    signed: int = 0

    def add(
        self, sequence: int, subject: str, stored_ns: int, headers: Mapping[str, str], data: bytes
    ) -> None:
        pairs = list(headers.items())
        self.sequences.append(sequence)
        self.subjects.append(subject)
        self.times.append(stored_ns)
        self.headers.append(pairs)
        self.bodies.append(data)
        self.raw_bytes += len(data) + len(subject) + sum(len(k) + len(v) for k, v in pairs)
        if SIGNATURE_HEADER in headers:
            self.signed += 1

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def full(self) -> bool:
        return self.raw_bytes >= self.limit_bytes

    def encode(self) -> bytes:
        """The Parquet bytes of what was added (one row group)."""
        table = pa.table(
            [
                pa.array(self.sequences, pa.int64()),
                pa.array(self.subjects, pa.string()),
                pa.array(self.times, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                pa.array(self.headers, pa.map_(pa.string(), pa.string())),
                pa.array(self.bodies, pa.binary()),
            ],
            schema=SCHEMA,
        )
        sink = pa.BufferOutputStream()
        pq.write_table(
            table,
            sink,
            compression="zstd",
            compression_level=_COMPRESSION_LEVEL,
            row_group_size=max(1, len(table)),
        )
        return bytes(sink.getvalue())

    def last(self) -> StoredCopy | None:
        if not self.sequences:
            return None
        return StoredCopy(
            self.sequences[-1],
            self.subjects[-1],
            self.times[-1],
            tuple(self.headers[-1]),
            self.bodies[-1],
        )


@dataclass(frozen=True, slots=True)
class SegmentContent:
    """A decoded segment, column by column (``messages`` builds the records)."""

    sequences: list[int]
    subjects: list[str]
    times: list[int]
    headers: list[list[tuple[str, str]]]
    bodies: list[bytes]

    def __len__(self) -> int:
        return len(self.sequences)

    def last(self) -> StoredCopy | None:
        if not self.sequences:
            return None
        return self.at(len(self.sequences) - 1)

    def at(self, index: int) -> StoredCopy:
        return StoredCopy(
            self.sequences[index],
            self.subjects[index],
            self.times[index],
            tuple(self.headers[index]),
            self.bodies[index],
        )

    def messages(self) -> list[StoredCopy]:
        return [
            StoredCopy(seq, subject, ns, tuple(pairs), body)
            for seq, subject, ns, pairs, body in zip(
                self.sequences, self.subjects, self.times, self.headers, self.bodies, strict=True
            )
        ]


def decode_segment(data: bytes) -> SegmentContent:
    """The messages of a segment file's bytes. Raises ValueError when the bytes are not a
    segment of this format (the caller names the file)."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"not a readable Parquet file ({exc})") from None
    version = (table.schema.metadata or {}).get(b"engram.backup.format")
    if version != str(FORMAT_VERSION).encode():
        raise ValueError(f"segment format {version!r}, expected {FORMAT_VERSION}")
    if table.schema.remove_metadata() != SCHEMA.remove_metadata():
        raise ValueError(f"unexpected columns {table.schema.names}")
    return SegmentContent(
        sequences=table.column("sequence").to_pylist(),
        subjects=table.column("subject").to_pylist(),
        times=table.column("stored_at").cast(pa.int64()).to_pylist(),
        headers=table.column("headers").to_pylist(),
        bodies=table.column("data").to_pylist(),
    )
