"""Waiting between attempts: exponential backoff and a pause that a stop event cuts short."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["retry_delay", "wait_or_stop"]


def retry_delay(attempt: int, first_s: float, cap_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): ``first_s`` doubled per failure in a
    row, at most ``cap_s`` (pure)."""
    return min(cap_s, first_s * 2.0 ** min(max(attempt, 1) - 1, 30))


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set, whichever comes first; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
