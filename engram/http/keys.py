"""API keys of the HTTP gateway: a file of hashed keys, each naming the namespaces it may use.

A key is ``egk_<id>_<secret>``: ``id`` is 12 hex digits (public, how a key is found), ``secret``
is 32 random bytes in base64url (256 bits). The file stores, per key, its name, id, namespaces,
whether it may call operator verbs, and the SHA-256 of the whole key, never the key itself: a
key is shown once, when it is made. A key holds 256 random bits, so one SHA-256 is enough (a
slow password hash protects guessable secrets; nothing here is guessable); the digests are
compared with ``hmac.compare_digest``.

The file is JSON, mode 0600, replaced atomically (written beside it, fsynced, renamed), and
changed under an advisory lock, so two ``engram http keys`` commands at once lose nothing. The
gateway re-reads it when it changes (``KeyRing``): a revoked key stops working at its next
request, without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from engine.errors import ConfigurationError, UsageError
from engine.events.envelope import check_namespace

__all__ = ["KEY_PREFIX", "ApiKey", "KeyFile", "KeyRecord", "KeyRing", "digest"]

log = structlog.get_logger(__name__)

KEY_PREFIX = "egk"
FORMAT_VERSION = 1
_ID_HEX = 12
_SECRET_BYTES = 32
_KEY = re.compile(rf"^{KEY_PREFIX}_(?P<id>[0-9a-f]{{{_ID_HEX}}})_(?P<secret>[A-Za-z0-9_\-]{{43}})$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_DUMMY_DIGEST = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """Who an authenticated request is: what ``request.state.engram_key`` holds."""

    name: str
    namespaces: tuple[str, ...]
    """The namespaces the key may read and write (possibly none for an operator key)."""
    operator: bool
    """May call operator verbs (``status``, ``checkpoints``, ``sql``, ``export``, and
    ``metrics`` / ``workflows`` over every namespace)."""

    def allows(self, namespace: str) -> bool:
        """True when the key may use ``namespace`` (exact match: no patterns)."""
        return namespace in self.namespaces


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key as the file stores it (its digest, never the key)."""

    name: str
    key_id: str
    sha256: str
    namespaces: tuple[str, ...]
    operator: bool
    created_at: str

    @property
    def key(self) -> ApiKey:
        return ApiKey(self.name, self.namespaces, self.operator)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.key_id,
            "sha256": self.sha256,
            "namespaces": list(self.namespaces),
            "operator": self.operator,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> KeyRecord:
        if not isinstance(value, dict):
            raise ConfigurationError(f"{where}: each key must be an object")
        try:
            record = cls(
                name=_checked_name(value["name"]),
                key_id=str(value["id"]),
                sha256=str(value["sha256"]),
                namespaces=tuple(check_namespace(str(ns)) for ns in value["namespaces"]),
                operator=bool(value.get("operator", False)),
                created_at=str(value.get("created_at", "")),
            )
        except (KeyError, TypeError, UsageError) as exc:
            raise ConfigurationError(f"{where}: a key is malformed ({exc})") from None
        if not re.fullmatch(rf"[0-9a-f]{{{_ID_HEX}}}", record.key_id) or not re.fullmatch(
            r"[0-9a-f]{64}", record.sha256
        ):
            raise ConfigurationError(f"{where}: key {record.name!r} has a malformed id or sha256")
        return record


def digest(token: str) -> str:
    """The SHA-256 (hex) the file stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"key name {name!r} must match {_NAME.pattern}")
    return name


def _new_token() -> tuple[str, str]:
    key_id = secrets.token_hex(_ID_HEX // 2)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).decode().rstrip("=")
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}"


class KeyFile:
    """The keys file at ``path``: list, add and revoke keys (each change atomic and locked)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[KeyRecord]:
        """Every key in the file (none when it does not exist); ConfigurationError when it is
        not a keys file, or when others than its owner may write it."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return []
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigurationError(
                f"keys file {self.path} is writable by others than its owner (mode "
                f"{stat.S_IMODE(info.st_mode):o}): anyone who may write it may grant "
                f"themselves any namespace; chmod 600 {self.path}"
            )
        if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("keys file readable by others (it holds digests only)", path=str(self.path))
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"keys file {self.path} cannot be read: {exc}") from None
        if not isinstance(content, dict) or not isinstance(content.get("keys"), list):
            raise ConfigurationError(f"keys file {self.path} is not an engram keys file")
        if content.get("version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"keys file {self.path} has version {content.get('version')!r}; this engram "
                f"reads version {FORMAT_VERSION}"
            )
        records = [KeyRecord.from_json(item, str(self.path)) for item in content["keys"]]
        names = [r.name for r in records]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"keys file {self.path} names a key twice")
        return records

    def add(
        self, name: str, namespaces: Sequence[str], *, operator: bool = False
    ) -> tuple[KeyRecord, str]:
        """Make a new key; returns its record and the key (shown once: only its digest is
        kept). UsageError for a taken or malformed name, a malformed namespace, or a key with
        no namespace that is not an operator key."""
        _checked_name(name)
        spaces = tuple(dict.fromkeys(check_namespace(ns) for ns in namespaces))
        if not spaces and not operator:
            raise UsageError("a key needs at least one --namespace (or --operator)")
        with self._locked():
            records = self.records()
            if any(r.name == name for r in records):
                raise UsageError(f"a key named {name!r} exists: revoke it first or pick another")
            key_id, token = _new_token()
            while any(r.key_id == key_id for r in records):  # 48 bits: never, but be sure
                key_id, token = _new_token()
            record = KeyRecord(
                name=name,
                key_id=key_id,
                sha256=digest(token),
                namespaces=spaces,
                operator=operator,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self._write([*records, record])
        return record, token

    def revoke(self, name: str) -> KeyRecord:
        """Remove the key ``name``; UsageError when there is none."""
        with self._locked():
            records = self.records()
            kept = [r for r in records if r.name != name]
            if len(kept) == len(records):
                raise UsageError(f"no key named {name!r} in {self.path}")
            self._write(kept)
        return next(r for r in records if r.name == name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)

    def _write(self, records: Sequence[KeyRecord]) -> None:
        body = json.dumps(
            {"version": FORMAT_VERSION, "keys": [r.to_json() for r in records]}, indent=2
        )
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)  # mkstemp makes it 0600 already; say so for the reader
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class KeyRing:
    """The gateway's view of a keys file: verifies bearer keys, re-reading the file whenever it
    changed (so ``keys add`` and ``keys revoke`` apply at the next request).

    A file that becomes unreadable or malformed after the start leaves the gateway with no keys
    (every request is refused, and the reason is logged): failing closed, never keeping a key
    that may have been revoked."""

    def __init__(self, path: Path) -> None:
        self._file = KeyFile(path)
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, KeyRecord] = {}
        self.reload(strict=True)

    @property
    def path(self) -> Path:
        return self._file.path

    def reload(self, *, strict: bool = False) -> None:
        """Read the file now. ``strict``: raise ConfigurationError when it is missing or bad
        (at the start); otherwise log it and refuse every key until it is good again."""
        try:
            info = self.path.stat()
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            records = self._file.records()
        except (OSError, ConfigurationError) as exc:
            if strict:
                if isinstance(exc, FileNotFoundError):
                    raise ConfigurationError(
                        f"keys file {self.path} does not exist: make a key with "
                        f"engram http keys add NAME --namespace NS --keys {self.path}"
                    ) from None
                raise ConfigurationError(str(exc)) from None
            log.error("keys file unusable: refusing every key until it is fixed", error=str(exc))
            self._by_id, self._stamp = {}, None
            return
        self._by_id = {r.key_id: r for r in records}
        self._stamp = stamp

    def _fresh(self) -> None:
        try:
            info = self.path.stat()
        except OSError:
            if self._stamp is not None:
                self.reload()
            return
        if (info.st_ino, info.st_mtime_ns, info.st_size) != self._stamp:
            self.reload()

    def verify(self, token: str) -> ApiKey | None:
        """The key ``token`` is, or None (unknown, revoked or malformed). The stored digest is
        compared in constant time; an unknown id is compared against a dummy digest, so both
        refusals cost the same."""
        self._fresh()
        match = _KEY.fullmatch(token)
        record = self._by_id.get(match["id"]) if match else None
        expected = record.sha256 if record is not None else _DUMMY_DIGEST
        same = hmac.compare_digest(digest(token), expected)
        if record is None or not same:
            return None
        return record.key
