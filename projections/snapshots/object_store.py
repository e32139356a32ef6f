"""Snapshots in a JetStream Object Store bucket, objects named ``<snapshot id>/<file>``.

nats-py writes an object's chunks, then its meta (name, size, digest, chunk subject) as the
commit point, and purges the chunks of a write that failed; a replaced object's old chunks are
purged after its new meta is written. Reading is done here rather than by ``ObjectStore.get``,
which waits forever when an object's chunks are gone (a reader that raced a replacement, or a
damaged bucket) and raises its own digest error: this one reads the chunks the meta names,
rereads the meta when they are not all there or fail the digest, follows a replacement, and
otherwise raises SnapshotInvalidError.

Writing and deleting are guarded by ``engine.permissions.refused_or``: a broker that refuses
this user the bucket (an operator without its permissions) is a PermissionDeniedError at once,
not a JetStream timeout per chunk.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Awaitable
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectInfo
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from engine.errors import SnapshotInvalidError
from engine.permissions import connection_of, refused_or
from projections.snapshots.manifest import MANIFEST

__all__ = ["ObjectStoreSnapshots"]

_FETCH = 16
"""Chunks (128 KiB each) asked for at once."""
_FETCH_WAIT_S = 2.0
"""After this long without a chunk, count what the stream holds (slow, or gone?)."""
_ATTEMPTS = 5
"""Reads of one object that may each find it replaced before giving up."""

T = TypeVar("T")


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _recorded_digest(info: ObjectInfo) -> bytes | None:
    text = info.digest or ""
    if not text.upper().startswith("SHA-256="):
        return None
    encoded = text[len("SHA-256=") :]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


class ObjectStoreSnapshots:
    """Snapshots in a JetStream Object Store bucket, objects named ``<snapshot id>/<file>``."""

    def __init__(self, js: JetStreamContext, bucket: str, replicas: int = 1) -> None:
        self._js = js
        self.bucket = bucket
        self.replicas = replicas
        self.location = f"nats-object-store://{bucket}"
        self._stream = f"OBJ_{bucket}"
        self._store: ObjectStore | None = None

    async def _guarded(self, operation: Awaitable[T], what: str) -> T:
        """``operation`` on this bucket; PermissionDeniedError as soon as the broker refuses a
        publish it makes (the bucket's stream API, its ``$O.<bucket>.>`` subjects)."""
        return await refused_or(
            connection_of(self._js),
            operation,
            publishes=[
                f"$JS.API.STREAM.{call}.{self._stream}"
                for call in ("INFO", "CREATE", "PURGE", "MSG.GET")
            ],
            under=[f"$O.{self.bucket}", f"$JS.API.DIRECT.GET.{self._stream}"],
            what=what,
        )

    async def _obs(self) -> ObjectStore:
        if self._store is None:
            try:
                self._store = await self._guarded(
                    self._js.object_store(self.bucket), f"opening bucket {self.bucket}"
                )
            except (BucketNotFoundError, NotFoundError):
                self._store = await self._guarded(
                    self._js.create_object_store(self.bucket, replicas=self.replicas),
                    f"creating bucket {self.bucket}",
                )
        return self._store

    async def put(self, snapshot_id: str, name: str, data: bytes) -> None:
        obs = await self._obs()
        await self._guarded(
            obs.put(f"{snapshot_id}/{name}", data), f"storing {snapshot_id}/{name} in {self.bucket}"
        )

    async def get(self, snapshot_id: str, name: str) -> bytes | None:
        obs, key = await self._obs(), f"{snapshot_id}/{name}"
        for _ in range(_ATTEMPTS):
            info = await self._info(obs, key)
            if info is None:
                return None
            body = await self._chunks(info)
            if (
                body is not None
                and len(body) == info.size
                and _digest(body) == _recorded_digest(info)
            ):
                return body
            again = await self._info(obs, key)
            if again is None:
                return None  # deleted while it was read
            if again.nuid == info.nuid:
                raise SnapshotInvalidError(f"snapshot {snapshot_id}: {name} fails its checksum")
            # replaced while it was read: read the new one
        raise SnapshotInvalidError(
            f"snapshot {snapshot_id}: {name} was replaced {_ATTEMPTS} times while it was read"
        )

    async def _info(self, obs: ObjectStore, key: str) -> ObjectInfo | None:
        try:
            return await obs.get_info(key)
        except (ObjectNotFoundError, NotFoundError):
            return None

    async def _chunks(self, info: ObjectInfo) -> bytes | None:
        """The object's chunks in order, or None when the stream no longer holds them all."""
        wanted = info.chunks or 0
        if not info.size or not wanted:
            return b"" if not info.size else None
        subject = f"$O.{self.bucket}.C.{info.nuid}"
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
        )
        sub = await self._js.pull_subscribe(subject, stream=self._stream, config=config)
        parts: list[bytes] = []
        try:
            while len(parts) < wanted:
                try:
                    messages = await sub.fetch(min(_FETCH, wanted - len(parts)), _FETCH_WAIT_S)
                except TimeoutError:
                    if await self._stored(subject) < wanted:
                        return None
                    continue  # all there: the server is slow
                parts.extend(m.data for m in messages)
        finally:
            with contextlib.suppress(Exception):  # the consumer expires on its own anyway
                consumer = await sub.consumer_info()
                await sub.unsubscribe()
                await self._js.delete_consumer(self._stream, consumer.name)
        return b"".join(parts[:wanted])

    async def _stored(self, subject: str) -> int:
        info = await self._js.stream_info(self._stream, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)

    async def delete(self, snapshot_id: str) -> None:
        """The manifest's object first, then every other object of the snapshot: nats-py's
        delete purges an object's chunks (its bytes) and leaves a meta marked deleted, which
        holds the name only."""
        try:
            obs = await self._guarded(
                self._js.object_store(self.bucket), f"opening bucket {self.bucket}"
            )
        except (BucketNotFoundError, NotFoundError):
            return  # nothing was ever stored
        prefix = f"{snapshot_id}/"
        doing = f"deleting snapshot {snapshot_id} from {self.bucket}"
        with contextlib.suppress(ObjectNotFoundError, NotFoundError):
            await self._guarded(obs.delete(prefix + MANIFEST), doing)
        try:
            entries = await obs.list()
        except (NotFoundError, ObjectNotFoundError):
            return
        for entry in entries:
            if entry.name and entry.name.startswith(prefix) and not entry.deleted:
                with contextlib.suppress(ObjectNotFoundError, NotFoundError):
                    await self._guarded(obs.delete(entry.name), doing)

    async def snapshot_ids(self) -> list[str]:
        try:
            entries = await (await self._obs()).list()
        except (NotFoundError, ObjectNotFoundError):
            return []
        return sorted(
            {
                e.name.split("/", 1)[0]
                for e in entries
                if e.name and e.name.endswith("/" + MANIFEST) and not e.deleted
            }
        )
