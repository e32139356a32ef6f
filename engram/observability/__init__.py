"""What an operator watches: Prometheus metrics, health and readiness on one HTTP port
(``engram serve --metrics``), the readiness verdict ``engram status`` shares, and the stream's
durability."""

from __future__ import annotations

from engram.observability.durability import (
    power_loss_warning,
    server_sync_interval,
    stream_durability,
)
from engram.observability.endpoint import MetricsEndpoint
from engram.observability.prometheus import EngineMetrics
from engram.observability.readiness import Verdict, readiness

__all__ = [
    "EngineMetrics",
    "MetricsEndpoint",
    "Verdict",
    "power_loss_warning",
    "readiness",
    "server_sync_interval",
    "stream_durability",
]
