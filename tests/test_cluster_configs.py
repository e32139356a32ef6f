"""The shipped cluster configs (deploy/cluster) are what tests/test_cluster.py runs: rendered for
loopback by rewriting only ports, route hosts and the store, and accepted by nats-server."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.server import find_nats_server
from tests.cluster import CONFIG_DIR, Cluster


def test_the_shipped_configs_render_for_loopback_and_nats_server_accepts_them(
    tmp_path: Path,
) -> None:
    """Each node keeps its shipped name, cluster name and JetStream block; it listens on its own
    loopback ports, routes to the three cluster ports, and stores under its own directory; and
    `nats-server -t` accepts every rendered file (a changed template fails here, fast, before
    the slow cluster test would)."""
    cluster = Cluster(tmp_path)
    routes = sorted(f"nats://127.0.0.1:{node.ports.cluster}" for node in cluster.nodes)
    stores = set()
    for node in cluster.nodes:
        shipped = (CONFIG_DIR / f"nats-{node.index}.conf").read_text()
        text = node.config.read_text()
        assert f'server_name: "engram-nats-{node.index}"' in shipped
        assert f'server_name: "engram-nats-{node.index}"' in text
        assert 'name: "engram"' in text and "jetstream {" in text
        assert f'listen: "127.0.0.1:{node.ports.client}"' in text
        assert f'listen: "127.0.0.1:{node.ports.cluster}"' in text
        assert f'http: "127.0.0.1:{node.ports.http}"' in text
        own_routes = [line.strip().strip('"') for line in text.splitlines() if "nats://" in line]
        assert sorted(own_routes) == routes
        assert "0.0.0.0" not in text and "/var/lib/nats" not in text
        stores.add(next(line for line in text.splitlines() if "store_dir" in line))
        # Only the rewritten lines differ from the shipped file.
        kept = [line for line in shipped.splitlines() if "0.0.0.0" not in line]
        kept = [line for line in kept if "nats://" not in line and "store_dir" not in line]
        assert all(line in text.splitlines() for line in kept)
        checked = subprocess.run(
            [str(find_nats_server()), "-t", "-c", str(node.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(stores) == 3
