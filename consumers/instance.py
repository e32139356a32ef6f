"""The engine instance id: names this data directory's durable consumers on a shared stream."""

from __future__ import annotations

import secrets
from pathlib import Path

__all__ = ["durable_name", "instance_id"]

INSTANCE_FILE = "instance-id"


def instance_id(data_dir: Path) -> str:
    """A stable id for ``data_dir`` (created on first use). Two engines on one stream need
    different durables, or JetStream would split the messages between them."""
    path = data_dir / INSTANCE_FILE
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(6)
    path.write_text(value + "\n")
    return value


def durable_name(instance: str, projection: str) -> str:
    return f"engram_{instance}_{projection}"
