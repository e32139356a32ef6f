"""Whether an engine is ready to serve: one pure function of its status, so ``/readyz`` and
``engram status`` cannot disagree.

Ready means: connected to NATS, the stream there (the engine could read its state), and every
projection within ``ready_max_lag`` events of the stream and not degraded. Failing scheduled
snapshots do not make an engine unready (its answers are still right; the metrics and alerts
say so), nor does a missing early history (the status says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.verbs.replies import StatusReply

__all__ = ["DEFAULT_MAX_LAG", "Verdict", "readiness"]

DEFAULT_MAX_LAG = 10_000
"""``Settings.ready_max_lag``'s default: used for a status that does not carry its own."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Ready or not, and every reason why not (empty when ready)."""

    ready: bool
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "reasons": list(self.reasons)}


def readiness(
    status: StatusReply | None,
    *,
    connected: bool | None = None,
    problem: str | None = None,
    max_lag: int = DEFAULT_MAX_LAG,
) -> Verdict:
    """The verdict on an engine whose status is ``status`` (None: it could not be had, because
    of ``problem``).

    ``connected``: whether the engine's NATS connection is up; None takes the status's own
    ``nats_connected`` (an engine that answered without saying is taken as connected). The lag
    limit is the status's ``ready_max_lag`` when it carries one, else ``max_lag``. Reasons come
    in a fixed order (connection, stream, then projections by name), so two callers with the
    same inputs print the same lines.
    """
    reasons: list[str] = []
    if connected is None:
        connected = (
            True if status is None or status.nats_connected is None else status.nats_connected
        )
    if not connected:
        reasons.append("NATS is not connected")
    if status is None:
        reasons.append(problem or "the engine's status could not be read")
        return Verdict(False, tuple(reasons))
    limit = status.ready_max_lag if status.ready_max_lag is not None else max_lag
    if not status.projections:
        reasons.append("no projection is running")
    for name in sorted(status.projections):
        projection = status.projections[name]
        if projection.degraded:
            reasons.append(
                f"projection {name} is degraded: {projection.reason or 'no reason given'}"
            )
        if projection.lag > limit:
            reasons.append(
                f"projection {name} lags {projection.lag:,} events behind the stream "
                f"(more than {limit:,})"
            )
    return Verdict(not reasons, tuple(reasons))
