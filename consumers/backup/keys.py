"""The engine key and log backups: what a backup records of it, and what a restore writes.

Derived events (``pattern.learned``, ``session.compacted`` ...) are signed with the stream's
engine key (engine.signing), which lives outside the stream: ``ENGRAM_ENGINE_KEY``, or the KV
bucket ``ENGRAM_ENGINE`` under ``signing.<stream>`` (engine.stream.engine_key). A restored stream
replays to the same state only if its engines verify those signatures with the same key.

- A backup records the key's **fingerprint** only, never the key, unless asked
  (``--include-engine-key``): then ``engine-key.json`` holds the key in clear, mode 0600, and
  the backup directory is as secret as the key.
- A restore into stream NEW writes ``signing.NEW`` *before* creating the stream, so no engine
  of NEW can ever generate a key of its own and take the restored derived events for forgeries:
  with the key when it has it (from the backup's key file, or from the original stream's record
  on the same server), the original kept it on the broker and this broker has no credentials
  (a secured broker never keeps it); with the fingerprint only otherwise, or when the key comes
  from ``ENGRAM_ENGINE_KEY`` or is not at hand (engines of NEW then need ``ENGRAM_ENGINE_KEY``,
  and refuse to start with another key).

The record's format is engine.stream.engine_key's: ``{"scheme": "v1", "fingerprint": ...,
"secret": ...}`` (the secret only for a key kept on the broker).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from consumers.backup.errors import BackupCorruptError, RestoreRefusedError
from consumers.backup.manifest import KEY_FILE, BackupManifest
from engine.errors import EngineKeyError
from engine.settings import Settings
from engine.signing import EngineKey
from engine.stream.engine_key import BUCKET
from projections.atomic_files import write_atomic

__all__ = ["KeyChoice", "StreamKey", "choose_restore_key", "stream_key", "write_key_file"]


@dataclass(frozen=True, slots=True)
class StreamKey:
    """What signs a stream's derived events: its fingerprint, and the key when known."""

    fingerprint: str | None
    secret: str | None
    on_broker: bool
    """True when the stream's record keeps the key itself (a generated key)."""


def _record_key(stream: str) -> str:
    return f"signing.{stream}"


async def _bucket(js: JetStreamContext) -> KeyValue | None:
    try:
        return await js.key_value(BUCKET)
    except BucketNotFoundError:
        return None


async def _read_record(js: JetStreamContext, stream: str) -> dict[str, str] | None:
    kv = await _bucket(js)
    if kv is None:
        return None
    try:
        entry = await kv.get(_record_key(stream))
    except KeyNotFoundError:
        return None
    try:
        body = json.loads(entry.value or b"")
        return {k: str(v) for k, v in body.items() if k in ("fingerprint", "secret")}
    except (ValueError, AttributeError):
        raise EngineKeyError(
            f"the engine key record of stream {stream} in KV bucket {BUCKET} is unreadable"
        ) from None


async def stream_key(js: JetStreamContext, settings: Settings) -> StreamKey:
    """The key of ``settings.stream`` as a backup sees it: ``ENGRAM_ENGINE_KEY`` (which must be
    the one the stream records), else the stream's record, else none (no engine ever signed).
    Raises EngineKeyError when ``ENGRAM_ENGINE_KEY`` is another key than the stream's."""
    stream = settings.stream.name
    record = await _read_record(js, stream)
    if settings.engine_key is not None:
        key = EngineKey(settings.engine_key.get_secret_value())
        if record is not None and record.get("fingerprint") != key.fingerprint:
            raise EngineKeyError(
                f"ENGRAM_ENGINE_KEY (fingerprint {key.fingerprint}) is not the key stream "
                f"{stream}'s derived events are signed with (fingerprint "
                f"{record.get('fingerprint')})"
            )
        return StreamKey(key.fingerprint, key.secret, on_broker=False)
    if record is None:
        return StreamKey(None, None, on_broker=False)
    secret = record.get("secret")
    return StreamKey(record.get("fingerprint"), secret, on_broker=secret is not None)


def write_key_file(directory: Path, key: StreamKey) -> bytes:
    """Write ``engine-key.json`` (mode 0600, atomically) and return its bytes."""
    assert key.secret is not None
    assert key.fingerprint is not None
    data = json.dumps(
        {
            "scheme": "v1",
            "fingerprint": key.fingerprint,
            "secret": key.secret,
            "on_broker": key.on_broker,
            "note": "the engine key of the backed-up stream, in clear: keep this file secret",
        },
        indent=1,
    ).encode()
    write_atomic(directory / KEY_FILE, data, mode=0o600)
    return data


def _key_file(directory: Path, manifest: BackupManifest) -> StreamKey | None:
    if not manifest.engine_key.included:
        return None
    try:
        body = json.loads((directory / KEY_FILE).read_bytes())
        return StreamKey(str(body["fingerprint"]), str(body["secret"]), bool(body["on_broker"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise BackupCorruptError(KEY_FILE, "unreadable") from None


KeySource = Literal["ENGRAM_ENGINE_KEY", "backup key file", "original stream's record", "none"]


@dataclass(frozen=True, slots=True)
class KeyChoice:
    """What a restore writes for the new stream's key, and where the key came from."""

    fingerprint: str | None
    secret_on_broker: str | None
    """The key to keep in the new stream's record (None: the fingerprint only)."""
    source: KeySource

    def describe(self, stream: str) -> str:
        if self.fingerprint is None:
            return "no engine key (no engine ever signed on the backed-up stream)"
        if self.secret_on_broker is not None:
            return (
                f"engine key {self.fingerprint} (from the {self.source}) kept in KV bucket "
                f"{BUCKET} for {stream}, as the original kept it"
            )
        return (
            f"engine key fingerprint {self.fingerprint} recorded for {stream}: its engines, "
            "replays and snapshots need ENGRAM_ENGINE_KEY set to that key"
        )


async def choose_restore_key(
    js: JetStreamContext, settings: Settings, directory: Path, manifest: BackupManifest
) -> KeyChoice:
    """Which key the restored stream's record gets (see the module docstring). Raises
    EngineKeyError when a key at hand is not the one the backup's events are signed with."""
    wanted = manifest.engine_key.fingerprint
    if wanted is None:
        return KeyChoice(None, None, "none")

    def check(fingerprint: str | None, where: str) -> None:
        if fingerprint != wanted:
            raise EngineKeyError(
                f"{where} has engine key fingerprint {fingerprint}, but the backup's derived "
                f"events are signed with {wanted}: restoring them with another key would make "
                "them forgeries"
            )

    if settings.engine_key is not None:
        key = EngineKey(settings.engine_key.get_secret_value())
        check(key.fingerprint, "ENGRAM_ENGINE_KEY")
        return KeyChoice(wanted, None, "ENGRAM_ENGINE_KEY")
    # On a broker with credentials the key is never kept on it (engine.stream.engine_key).
    keep = not _secured(settings)
    included = _key_file(directory, manifest)
    if included is not None:
        check(included.fingerprint, KEY_FILE)
        check(EngineKey(included.secret or "").fingerprint, f"the key in {KEY_FILE}")
        secret = included.secret if included.on_broker and keep else None
        return KeyChoice(wanted, secret, "backup key file")
    original = await _read_record(js, manifest.stream)
    if original is not None and original.get("fingerprint") == wanted:
        secret = original.get("secret") if keep else None
        return KeyChoice(wanted, secret, "original stream's record")
    return KeyChoice(wanted, None, "none")


def _secured(settings: Settings) -> bool:
    """True when the connection presents credentials (as engine.stream.engine_key decides)."""
    nats = settings.nats
    given = (nats.user, nats.password, nats.token, nats.creds_file, nats.tls_cert)
    if any(value is not None for value in given):
        return True
    return any(urlsplit(url.strip()).username for url in (nats.url or "").split(","))


async def write_restore_key(
    js: JetStreamContext, stream: str, choice: KeyChoice, *, replicas: int, replace: bool
) -> None:
    """Record ``choice`` as ``stream``'s key before the stream exists. An existing record with
    another fingerprint is refused unless ``replace``; one with the same is kept."""
    if choice.fingerprint is None:
        return
    kv = await _bucket(js)
    if kv is None:
        kv = await js.create_key_value(
            bucket=BUCKET,
            history=1,
            replicas=replicas,
            description="engram: the engine signing key (or its fingerprint) of each stream",
        )
    existing = await _read_record(js, stream)
    if (
        existing is not None
        and existing.get("fingerprint") == choice.fingerprint
        and (existing.get("secret") is not None or choice.secret_on_broker is None)
    ):
        return
    if existing is not None and existing.get("fingerprint") != choice.fingerprint and not replace:
        raise RestoreRefusedError(
            f"KV bucket {BUCKET} already records engine key {existing.get('fingerprint')} for "
            f"stream {stream}, not the backup's {choice.fingerprint}: restore into another "
            "stream name, or pass --replace"
        )
    body: dict[str, str] = {"scheme": "v1", "fingerprint": choice.fingerprint}
    if choice.secret_on_broker is not None:
        body["secret"] = choice.secret_on_broker
    await kv.put(_record_key(stream), json.dumps(body).encode())
