"""A three-node JetStream cluster on loopback, from the shipped deploy/cluster configs.

Each node runs ``deploy/cluster/nats-<n>.conf`` as shipped, with only what a single host forces
rewritten: the client, monitoring and route ports (free loopback ports), the route host names
(``engram-nats-<n>`` becomes ``127.0.0.1``) and the store directory (one per node). Every
rewrite must find the line it rewrites, so a changed template fails here rather than being
silently tested as something else. A node is killed with SIGKILL and restarted with the same
config and store, as a crashed host would be.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.server import find_nats_server

__all__ = ["CONFIG_DIR", "Cluster", "Node", "free_ports", "render_config"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "deploy" / "cluster"
SIZE = 3


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together while they are picked)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@dataclass(frozen=True, slots=True)
class Ports:
    client: int
    cluster: int
    http: int


def _replace(text: str, old: str, new: str, *, count: int = 1) -> str:
    found = text.count(old)
    if found != count:
        raise AssertionError(f"the cluster template has {found} times {old!r}, expected {count}")
    return text.replace(old, new)


def render_config(template: str, index: int, ports: list[Ports], store: Path) -> str:
    """The shipped config of node ``index`` (1-based) with loopback ports and its own store."""
    own = ports[index - 1]
    text = _replace(template, 'listen: "0.0.0.0:4222"', f'listen: "127.0.0.1:{own.client}"')
    text = _replace(text, 'http: "0.0.0.0:8222"', f'http: "127.0.0.1:{own.http}"')
    text = _replace(text, 'store_dir: "/var/lib/nats"', f'store_dir: "{store}"')
    text = _replace(text, 'listen: "0.0.0.0:6222"', f'listen: "127.0.0.1:{own.cluster}"')
    for peer, peer_ports in enumerate(ports, start=1):
        text = _replace(
            text, f'"nats://engram-nats-{peer}:6222"', f'"nats://127.0.0.1:{peer_ports.cluster}"'
        )
    return text


@dataclass
class Node:
    """One nats-server of the cluster."""

    index: int
    name: str
    ports: Ports
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.client}"

    @property
    def config(self) -> Path:
        return self.directory / "nats-server.conf"

    @property
    def log(self) -> Path:
        return self.directory / "nats-server.log"

    def start(self) -> None:
        """Start the server (again) on its config and store; returns once it listens."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        self.starts += 1
        if self.log.exists():  # keep the log of the previous life
            self.log.replace(self.directory / f"nats-server.log.{self.starts - 1}")
        self.process = subprocess.Popen(
            [str(find_nats_server()), "-c", str(self.config), "-l", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_listening(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process is not None and self.process.poll() is None, self._tail()
            try:
                with socket.create_connection(("127.0.0.1", self.ports.client), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} does not listen: {self._tail()}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a host losing power would look to its peers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def jsz(self) -> dict[str, Any] | None:
        """The node's JetStream monitoring page, or None when it does not answer."""
        url = f"http://127.0.0.1:{self.ports.http}/jsz"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                body: dict[str, Any] = json.loads(reply.read())
                return body
        except (OSError, ValueError):
            return None

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"


@dataclass
class Cluster:
    """Three nodes from ``deploy/cluster/nats-{1,2,3}.conf`` under ``directory``."""

    directory: Path
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        numbers = free_ports(3 * SIZE)
        ports = [Ports(*numbers[i * 3 : i * 3 + 3]) for i in range(SIZE)]
        for index in range(1, SIZE + 1):
            template = (CONFIG_DIR / f"nats-{index}.conf").read_text()
            node_dir = self.directory / f"nats-{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            node = Node(index, f"engram-nats-{index}", ports[index - 1], node_dir)
            node.config.write_text(render_config(template, index, ports, node_dir / "store"))
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (what ``--nats-url`` takes for a cluster)."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout_s: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_listening()
        self.wait_meta_leader(timeout_s)

    def wait_meta_leader(self, timeout_s: float = 30.0) -> str:
        """Wait until every live node names the same JetStream meta leader; returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            leaders = set()
            for node in self.nodes:
                if not node.alive:
                    continue
                page = node.jsz()
                meta = (page or {}).get("meta_cluster") or {}
                leaders.add(meta.get("leader") or "")
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            if time.monotonic() > deadline:
                raise AssertionError(f"no JetStream meta leader after {timeout_s} s: {leaders}")
            time.sleep(0.1)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
