"""Schema evolution: old event versions are upgraded on read, one step at a time.

Events in the stream are never rewritten. An upcaster takes the JSON object of an envelope at
version ``n`` of its type and returns it at version ``n + 1``; the registry chains them until the
type's current version. Upcasters must be pure functions of their input (replay determinism).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import UpcastError

__all__ = ["DEFAULT_UPCASTERS", "Upcaster", "UpcasterRegistry"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UpcasterRegistry:
    """Upcasters keyed by (event type, from version)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: register ``fn`` as the step from ``from_version`` to ``from_version + 1``."""

        def decorate(fn: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValueError(f"an upcaster for {event_type} v{from_version} already exists")
            self._steps[key] = fn
            return fn

        return decorate

    def upcast(self, envelope: Mapping[str, Any], current_version: int) -> dict[str, Any]:
        """Return ``envelope`` brought to ``current_version`` (a new dict; input untouched).

        Raises UpcastError when the version is newer than this engine knows, or when a step
        in the chain is missing.
        """
        event_type = str(envelope.get("type"))
        version = envelope.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise UpcastError(
                f"schema_version of {event_type} must be an integer, got {version!r}",
                ("schema_version",),
            )
        if version > current_version:
            raise UpcastError(
                f"{event_type} schema_version {version} is newer than this engine knows "
                f"(current {current_version}); upgrade engram to read it",
                ("schema_version",),
            )
        # A deep copy: a step that edits nested data in place must not reach the caller's
        # dict (a stored message read again, or replayed, must upcast the same way).
        result = copy.deepcopy(dict(envelope)) if version < current_version else dict(envelope)
        while version < current_version:
            step = self._steps.get((event_type, version))
            if step is None:
                raise UpcastError(
                    f"no upcaster from {event_type} v{version} to v{version + 1}",
                    ("schema_version",),
                )
            result = step(dict(result))
            version += 1
            result["schema_version"] = version
        return result

    def known_steps(self) -> Mapping[tuple[str, int], Upcaster]:
        return dict(self._steps)


DEFAULT_UPCASTERS = UpcasterRegistry()
"""The engine's registry. Every type is at version 1 so far: no step is registered yet."""
