"""The engine's HTTP endpoint for operators: ``/metrics`` (Prometheus), ``/healthz`` and
``/readyz`` on one port (``engram serve --metrics HOST:PORT``).

A deliberately tiny HTTP/1.1 server on the engine's own event loop (asyncio streams, one request
per connection, GET and HEAD only): no web framework needed, and ``/healthz`` is answered by the
very loop it vouches for. A loop blocked for good answers nothing, which a liveness probe counts
as a failure; a loop that stalls now and then is caught by ``LoopProbe``, which measures how late
its timer fires and makes ``/healthz`` answer 503 while a recent delay exceeded the limit.
No authentication: bind it to loopback, or to a port only the scraper reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from engine.errors import ConfigurationError
from engram.observability.prometheus import EngineMetrics

__all__ = ["LoopProbe", "MetricsEndpoint", "parse_listen"]

log = structlog.get_logger(__name__)

_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    400: "Bad Request",
    503: "Service Unavailable",
}
_READ_TIMEOUT_S = 5.0
_MAX_HEADERS = 100


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; an empty host is every interface) as (host, port); raises
    ConfigurationError naming the form."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65_535:
        raise ConfigurationError(f"--metrics {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]") or "0.0.0.0", int(port)  # ":PORT" asks for every one


class LoopProbe:
    """Measures how late the event loop runs a timer (``interval_s`` apart) and keeps the delays
    of the last ``window_s`` seconds: ``recent_lag_s`` is their maximum."""

    def __init__(self, interval_s: float = 0.25, window_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._lags: deque[tuple[float, float]] = deque()
        self._last_tick = time.monotonic()

    def recent_lag_s(self) -> float:
        now = time.monotonic()
        while self._lags and now - self._lags[0][0] > self.window_s:
            self._lags.popleft()
        # A probe that has not ticked for long was held up too (it is about to say by how much).
        overdue = max(0.0, now - self._last_tick - self.interval_s)
        return max([overdue, *(lag for _, lag in self._lags)])

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._last_tick = time.monotonic()
        while not stop.is_set():
            started = loop.time()
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - started - self.interval_s)
            self._last_tick = time.monotonic()
            self._lags.append((self._last_tick, lag))
            self.recent_lag_s()  # drops what left the window


class MetricsEndpoint:
    """Serves one engine's metrics, health and readiness until ``stop``.

    ``/healthz``: 200 ``{"alive": true, "loop_lag_s": ...}`` while the loop's recent delay is at
    most ``max_loop_lag_s``, else 503 (``alive`` false). ``/readyz``: 200 ``{"ready": true,
    "reasons": []}`` or 503 with the reasons (``engram.observability.readiness``).
    """

    def __init__(self, metrics: EngineMetrics, listen: str, *, max_loop_lag_s: float = 1.0) -> None:
        self.metrics = metrics
        self.host, self.port = parse_listen(listen)
        self.max_loop_lag_s = max_loop_lag_s
        self.probe = LoopProbe()
        self._server: asyncio.Server | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0 picks a free one, then ``port`` says which); raises
        ConfigurationError when the address cannot be bound."""
        try:
            self._server = await asyncio.start_server(self._connection, self.host, self.port)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._probe_task = asyncio.create_task(self.probe.run(self._stop), name="loop-probe")
        log.info("metrics endpoint listening", url=self.url, paths="/metrics /healthz /readyz")

    async def stop(self) -> None:
        self._stop.set()
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(_READ_TIMEOUT_S):
                    method, path = await _request(reader)
            except (
                ValueError,
                TimeoutError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ):
                await _respond(writer, 400, b"bad request\n", "text/plain", head=False)
                return
            status, body, content_type = await self._route(method, path)
            await _respond(writer, status, body, content_type, head=method == "HEAD")
        except (ConnectionError, OSError):  # the client went away
            pass
        except Exception as exc:  # never let one request take the endpoint down
            log.error("metrics endpoint request failed", error=repr(exc))
            with contextlib.suppress(Exception):
                await _respond(writer, 503, b"internal error\n", "text/plain", head=False)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[int, bytes, str]:
        if method not in ("GET", "HEAD"):
            return 405, b"GET or HEAD only\n", "text/plain"
        if path == "/metrics":
            self.metrics.loop_lag_s = self.probe.recent_lag_s()
            return 200, await self.metrics.exposition(), CONTENT_TYPE_LATEST
        if path == "/healthz":
            return self._health()
        if path == "/readyz":
            verdict = await self.metrics.verdict()
            return (200 if verdict.ready else 503), _json(verdict.as_json()), "application/json"
        return 404, b"not found: /metrics, /healthz, /readyz\n", "text/plain"

    def _health(self) -> tuple[int, bytes, str]:
        lag = self.probe.recent_lag_s()
        alive = lag <= self.max_loop_lag_s
        body: dict[str, Any] = {"alive": alive, "loop_lag_s": round(lag, 4)}
        if not alive:
            body["reason"] = (
                f"the event loop ran {lag:.2f} s late within the last {self.probe.window_s:.0f} s "
                f"(more than {self.max_loop_lag_s} s)"
            )
        return (200 if alive else 503), _json(body), "application/json"


async def _request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """The method and path of one request; its headers are read and ignored."""
    line = (await reader.readuntil(b"\n")).decode("latin-1").strip()
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError(f"not an HTTP request line: {line[:80]!r}")
    for _ in range(_MAX_HEADERS):
        if (await reader.readuntil(b"\n")).strip() == b"":
            return parts[0], parts[1].split("?", 1)[0]
    raise ValueError("too many headers")


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, *, head: bool
) -> None:
    header = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(header.encode("latin-1") + (b"" if head else body))
    await writer.drain()


def _json(value: dict[str, Any]) -> bytes:
    return (json.dumps(value) + "\n").encode()
