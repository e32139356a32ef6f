"""Event ids: UUIDv7 (time-ordered, RFC 9562) without a dependency."""

from __future__ import annotations

import os
import time

__all__ = ["new_event_id"]

_VERSION_AND_VARIANT_MASK = (0xF << 76) | (0b11 << 62)
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


def new_event_id() -> str:
    """A new UUIDv7 string: 48 bits of Unix milliseconds, then 74 random bits.

    Layout (most significant first): unix_ts_ms (48), version 7 (4), rand_a (12), variant 0b10
    (2), rand_b (62); written as ``str(uuid.UUID)`` writes it. Formatted by hand because
    ``uuid.UUID`` costs more than the rest of building an event's envelope.
    """
    millis = (time.time_ns() // 1_000_000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 6 of them make way below
    value = (millis << 80) | (rand & ~_VERSION_AND_VARIANT_MASK) | _VERSION_AND_VARIANT
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
