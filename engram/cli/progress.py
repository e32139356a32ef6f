"""A small progress line on stderr (no dependency): redrawn on a terminal, sparse otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``with Progress("ingest", total) as bar: bar.advance(n)``; shows count, rate and ETA."""

    def __init__(
        self, label: str, total: int | None = None, *, stream: TextIO | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.count = 0
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._interval = 0.1 if self._tty else 5.0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.count / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(final=False)

    def _draw(self, *, final: bool) -> None:
        rate = self.rate
        if self.total:
            pct = 100.0 * self.count / self.total
            eta = (self.total - self.count) / rate if rate > 0 else 0.0
            text = (
                f"{self.label}: {self.count}/{self.total} ({pct:5.1f}%) "
                f"{rate:,.0f} events/s eta {eta:.0f}s"
            )
        else:
            text = f"{self.label}: {self.count} events {rate:,.0f} events/s"
        if self._tty:
            self._stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tty or self.count:
            self._draw(final=True)
