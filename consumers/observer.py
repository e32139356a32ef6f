"""The instrumentation port of the bus side: what the runners and the query service report to
whoever watches them (``engram.observability`` wires a Prometheus implementation).

Both observers are optional: a runner or query service built without one does no extra work
beyond a ``None`` check. An implementation is called on the event loop, once per batch or per
request, never per event, and must return at once (increment a counter, observe a histogram):
no I/O, no locks held for long. What can be read when it is asked for (checkpoints, lag, the
connection, sizes) is not reported here but read at scrape time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["QueryObserver", "RunnerObserver"]


class RunnerObserver(Protocol):
    """Told by a ``consumers.runner.ProjectionRunner`` what it did."""

    def batch_applied(self, projection: str, events: int, apply_s: float, commit_s: float) -> None:
        """One batch went in and was acknowledged: ``events`` valid events applied (dead
        letters and redeliveries at or below the checkpoint not counted); ``apply_s`` the
        projection's ``apply`` (its store's commit included); ``commit_s`` from the batch's
        arrival to its acknowledgement."""
        ...

    def dead_lettered(self, projection: str, kinds: Sequence[str]) -> None:
        """Dead letters of these kinds (one item each) were published by ``projection``'s
        runner."""
        ...

    def announced(self, projection: str, new: int, duplicate: int, failed: int) -> None:
        """Derived events were published: ``new`` stored, ``duplicate`` already stored (the
        stream dropped them), ``failed`` not acknowledged (retried later)."""
        ...


class QueryObserver(Protocol):
    """Told by the query service about every request it answered."""

    def answered(self, verb: str, seconds: float, error_kind: str | None) -> None:
        """``verb`` (as the subject named it: possibly not a catalogued one) was answered in
        ``seconds``; ``error_kind`` is the error reply's ``kind`` (usage, forbidden, failure),
        None for an answer."""
        ...
