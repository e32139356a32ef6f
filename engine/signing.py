"""Proof that the engine produced a derived event: an HMAC-SHA256 over the exact message body.

Only engines hold the key. The engine signs every event it publishes (``pattern.learned``,
``session.compacted``, ``snapshot.created`` and the usage events) and carries the proof in the
``Engram-Signature: v1=<hex>`` header; on reading, a derived event whose signature is missing or
wrong is a ``forged`` dead letter with no effect on any projection (consumers.decoding).

The body covers the envelope whole (id, type, namespace, data), so nothing signed can be changed.
A genuine event copied and published again verifies, but has the id of the original: the
first occurrence of an id wins in every projection, so the copy changes nothing.

The ``Nats-Msg-Id`` of a signed event is its message id (``<namespace>:<id>`` on a v2 subject:
engine.stream.append.message_id) plus a tag made with the key (``<namespace>:<id>.<tag>``). A
deterministic id (``pattern-<hash>-v<version>``) is predictable, and a forger who published
first under that message id would otherwise take the stream's deduplication slot, so that
JetStream dropped the engine's real event as a duplicate. Engines sharing a key still derive the
same message id, so a repeated announcement is stored once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Protocol

from engine.errors import EngineKeyError

__all__ = [
    "MIN_KEY_LENGTH",
    "NO_KEY",
    "SIGNATURE_HEADER",
    "EngineKey",
    "Verifier",
]

SIGNATURE_HEADER = "Engram-Signature"
SCHEME = "v1"
MIN_KEY_LENGTH = 32
"""Characters of a key (a generated one is 64 hex characters: 256 bits)."""

_PREFIX = SCHEME + "="


class Verifier(Protocol):
    """Says whether a stored message was signed by an engine of this stream."""

    def genuine(self, body: bytes, headers: Mapping[str, str]) -> bool: ...


class EngineKey:
    """One stream's engine key: signs bodies and message ids, verifies signatures.

    The secret is text (``ENGRAM_ENGINE_KEY`` or a generated 64-hex-character string) and its
    UTF-8 bytes are the HMAC key, so a generated key can be moved into the environment as is.
    Its ``fingerprint`` identifies it without revealing it; the secret is never in ``repr``.
    """

    __slots__ = ("_secret", "fingerprint")

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise EngineKeyError(
                f"the engine key must have at least {MIN_KEY_LENGTH} characters "
                "(e.g. `openssl rand -hex 32`)"
            )
        self._secret = secret.encode()
        self.fingerprint = self._mac(b"engram engine key fingerprint")[:16]

    @classmethod
    def generate(cls) -> EngineKey:
        """A fresh random key (256 bits)."""
        return cls(secrets.token_hex(32))

    @property
    def secret(self) -> str:
        """The key itself: only for storing it where engines read it (engine.stream.engine_key)."""
        return self._secret.decode()

    def _mac(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def sign(self, body: bytes) -> str:
        """The ``Engram-Signature`` header value of ``body``."""
        return _PREFIX + self._mac(body)

    def message_id(self, event_id: str) -> str:
        """The ``Nats-Msg-Id`` of a signed event: its message id (``<namespace>:<id>`` on a v2
        subject) and a tag only a key holder can make."""
        return f"{event_id}.{self._mac(b'msg-id:' + event_id.encode())[:16]}"

    def genuine(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """True when ``headers`` carry this key's signature of exactly ``body``."""
        claimed = headers.get(SIGNATURE_HEADER)
        if claimed is None or not claimed.startswith(_PREFIX):
            return False
        return hmac.compare_digest(claimed, self.sign(body))

    def __repr__(self) -> str:
        return f"EngineKey(fingerprint={self.fingerprint!r})"


class _NoKey:
    """No engine ever signed on this stream: no derived event on it can be genuine."""

    def genuine(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return False

    def __repr__(self) -> str:
        return "NO_KEY"


NO_KEY: Verifier = _NoKey()
