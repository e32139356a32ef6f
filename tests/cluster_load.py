"""What runs against the loopback cluster in tests/test_cluster.py: engine processes, agents
publishing with retries, a background asker, plain listeners of pattern.learned, and a watch of
every durable consumer's ack floor (how far each projection has committed)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from consumers.instance import instance_id
from engine.client import MemoryClient
from engine.errors import EngramError
from engine.settings import Settings
from engine.stream import AppendResult, EventLog
from engram.cli.serve import serve_command
from tests.histories import realistic_history

__all__ = ["Asker", "EngineProcess", "FloorWatch", "Listener", "Publisher", "longest_gap"]


class EngineProcess:
    """``engram serve`` as a process of its own on the cluster, with its own data directory;
    its JSON log goes to ``<data dir>.log`` (one file per life)."""

    def __init__(self, url: str, settings: Settings, data_dir: Path) -> None:
        self.url = url
        self.settings = settings
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.lives = 0

    @property
    def instance(self) -> str:
        return instance_id(self.data_dir)

    @property
    def prefix(self) -> str:
        """What this engine's durable consumers' names start with (``consumers.instance``)."""
        return f"engram_{self.instance}_"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
        env["ENGRAM_STREAM__REPLICAS"] = str(self.settings.stream.replicas)
        env["ENGRAM_LOG_JSON"] = "true"
        env["ENGRAM_LOG_LEVEL"] = os.environ.get("CLUSTER_TEST_ENGINE_LOG_LEVEL", "info")
        self.lives += 1
        log = self.data_dir.with_name(f"{self.data_dir.name}.{self.lives}.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                serve_command(self.url, self.settings.stream.name, self.data_dir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def projections(self) -> list[str] | None:
        """The projections this life of the engine runs (its "engine running" log line), or
        None before it said so."""
        path = self.data_dir.with_name(f"{self.data_dir.name}.{self.lives}.log")
        for line in path.read_text(errors="replace").splitlines():
            if '"engine running"' in line:
                with contextlib.suppress(ValueError):
                    return list(json.loads(line)["projections"])
        return None

    def failed_announcements(self, projection: str) -> int:
        """Announcements of ``projection`` not acknowledged, over every life (from the log)."""
        failed = 0
        for path in self.data_dir.parent.glob(f"{self.data_dir.name}.*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if '"announced"' not in line:
                    continue
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("projection") == projection:
                        failed += int(entry.get("failed", 0))
        return failed

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and the exit status (the engine saves its projections on the way out)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Publisher:
    """Agents appending ``total`` events of the realistic history (ids ``e0`` ...) in batches,
    paced, each unacknowledged event sent again with the same id until acknowledged."""

    log: EventLog
    total: int
    batch: int = 100
    pause_s: float = 0.1
    acked: dict[str, int] = field(default_factory=dict)
    """Every acknowledged event id and the sequence its ack named."""
    ack_times: list[float] = field(default_factory=list)
    retries: int = 0

    async def run(self) -> None:
        for start in range(0, self.total, self.batch):
            todo = realistic_history(start, min(self.batch, self.total - start))
            while todo:
                try:
                    results: list[AppendResult | EngramError] = await self.log.append_many(todo)
                except (EngramError, NatsError, OSError, TimeoutError) as exc:
                    results = [EngramError(repr(exc))] * len(todo)
                again = []
                for event, result in zip(todo, results, strict=True):
                    if isinstance(result, AppendResult):
                        self.acked[event.id] = result.sequence
                    else:
                        again.append(event)
                if len(again) < len(todo):
                    self.ack_times.append(time.monotonic())
                self.retries += len(again)
                todo = again
                if todo:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(self.pause_s)


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch within [start, end] without an entry of ``times``."""
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


@dataclass
class Asker:
    """Asks the engines a patterns verb and a tables verb in turn, one at a time, each with a
    short timeout, and records when each answer came."""

    url: str
    settings: Settings
    answered: list[float] = field(default_factory=list)
    failed: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with MemoryClient(self.url, settings=self.settings) as client:
            turn = 0
            while not stop.is_set():
                turn += 1
                try:
                    if turn % 2:
                        await client.get_best_workflow_for_task("bug_fix")
                    else:
                        await client.workflow_metrics(namespace="default")
                except (EngramError, NatsError, OSError, TimeoutError):
                    self.failed += 1
                else:
                    self.answered.append(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.05)


class Listener:
    """A plain NATS subscriber of every tenant's pattern.learned on one node only (no other
    URL to fail over to): what a service reacting to announcements hears."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.heard: Counter[tuple[str, int]] = Counter()

    async def _on(self, msg: Msg) -> None:
        data = json.loads(msg.data)["data"]
        self.heard[(data["pattern_id"], data["version"])] += 1

    async def start(self, nc: NatsClient, subject: str) -> None:
        await nc.subscribe(subject, cb=self._on)
        await nc.flush()


@dataclass
class FloorWatch:
    """Polls the ack floor (stream sequence) of durable consumers: with AckPolicy.ALL and
    acks only after the projection took the batch, it is how far each projection got."""

    js: JetStreamContext
    stream: str
    period_s: float = 0.1
    names: set[str] = field(default_factory=set)
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    async def _floor(self, name: str) -> int | None:
        try:
            info = await self.js.consumer_info(self.stream, name, timeout=0.5)
        except (NatsError, TimeoutError):
            return None
        return int(info.ack_floor.stream_seq if info.ack_floor else 0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            names = sorted(self.names)
            floors = await asyncio.gather(*(self._floor(n) for n in names))
            now = time.monotonic()
            for name, floor in zip(names, floors, strict=True):
                if floor is not None:
                    self.samples.setdefault(name, []).append((now, floor))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.period_s)

    def passed_after(self, name: str, at: float, sequence: int) -> float | None:
        """Seconds from ``at`` until the floor of ``name`` passed ``sequence`` (None: not
        yet): with ``sequence`` the stream's last one when a node died at ``at``, the
        projection has applied an event stored after that."""
        for t, floor in self.samples.get(name, []):
            if t > at and floor > sequence:
                return t - at
        return None

    def stall(self, names: list[str], at: float, sequence: int) -> dict[str, float | None]:
        return {name: self.passed_after(name, at, sequence) for name in names}

    async def idle(self, names: list[str]) -> bool:
        """True when none of ``names`` has a message pending or unacknowledged."""
        for name in names:
            try:
                info = await self.js.consumer_info(self.stream, name, timeout=1.0)
            except (NatsError, TimeoutError):
                return False
            if info.num_pending or info.num_ack_pending:
                return False
        return True
