"""The tenants an engine owns, named once for everything that must tell engine sets apart.

An engine owns every namespace (``Settings.namespaces`` None) or a set of them. Engines owning
the same set are replicas (one queue group, one announcer lease, one series of snapshots);
engines owning other sets must never share those, nor a data directory: ``set_key`` names the
set in lease keys and snapshot buckets and ids, ``bind_data_dir`` ties a data directory to the
set its projections hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from engine.errors import ConfigurationError

__all__ = ["ALL", "NAMESPACES_FILE", "bind_data_dir", "describe_set", "owns", "set_key"]

ALL = "all"
"""The key of the set of every namespace (an engine that does not split the tenants)."""
NAMESPACES_FILE = "namespaces.json"
"""In the data directory: the namespaces its projections hold (absent: every one)."""


def set_key(namespaces: Sequence[str] | None) -> str:
    """``all`` for every namespace, else ``ns-`` and 12 hex digits of the sorted set's SHA-256:
    the same for every engine owning the same set whatever the order it was given in, short
    enough for a KV key or a bucket name however many tenants the set has."""
    if namespaces is None:
        return ALL
    canonical = ",".join(sorted(set(namespaces)))
    return "ns-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def owns(namespaces: Sequence[str] | None, namespace: str) -> bool:
    """True when an engine owning ``namespaces`` (None: every one) owns ``namespace``."""
    return namespaces is None or namespace in namespaces


def describe_set(namespaces: Sequence[str] | None) -> str:
    """For messages: ``every namespace`` or ``namespaces alpha, beta`` (the first few)."""
    if namespaces is None:
        return "every namespace"
    names = sorted(set(namespaces))
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"namespaces {shown}"


def _recorded(data_dir: Path) -> tuple[str, ...] | None:
    path = data_dir / NAMESPACES_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None  # written before engines split the tenants: it holds every namespace
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"{path} is unreadable ({exc}): it names the namespaces this data directory's "
            "projections hold; repair it, or start on a new data directory"
        ) from None
    names = raw.get("namespaces") if isinstance(raw, dict) else None
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"{path} does not list namespaces: {raw!r}")
    return tuple(sorted(names))


def bind_data_dir(data_dir: Path, namespaces: Sequence[str] | None, *, has_state: bool) -> None:
    """Record which namespaces ``data_dir``'s projections hold; raise ConfigurationError when
    they hold another set (``has_state``: a projection has applied something).

    A projection's checkpoint is one stream sequence for all its tenants: resuming it with
    another set would skip every earlier event of a tenant added, and keep serving one removed.
    A data directory with nothing applied yet takes any set.
    """
    wanted = None if namespaces is None else tuple(sorted(set(namespaces)))
    path = data_dir / NAMESPACES_FILE
    held = _recorded(data_dir)
    if has_state and held != wanted:
        raise ConfigurationError(
            f"the data directory {data_dir} holds the projections of {describe_set(held)}, "
            f"not {describe_set(wanted)}: a projection resumed with another set would miss "
            "the earlier events of a namespace added (and keep one removed). Start this set on "
            "a new data directory (it restores its own snapshot or replays its tenants), or "
            "this directory with its own set"
        )
    if held == wanted and (path.exists() or wanted is None):
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {"namespaces": None if wanted is None else list(wanted), "key": set_key(wanted)}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
