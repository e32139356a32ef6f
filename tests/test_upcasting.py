"""Schema evolution: upcasters bring old event versions to the current one on read."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from engine.errors import InvalidEventError, UpcastError
from engine.events import (
    DEFAULT_UPCASTERS,
    EVENT_TYPES,
    UpcasterRegistry,
    WorkflowExecuted,
    decode_event,
    validate_event,
)


def v0_workflow() -> dict[str, Any]:
    """A workflow.executed as a hypothetical v0 publisher wrote it: steps, milliseconds."""
    return {
        "id": "old-1",
        "type": "workflow.executed",
        "schema_version": 0,
        "occurred_at": "2025-03-01T08:30:00Z",
        "data": {"steps": ["plan", "code", "test"], "success": True, "duration_ms": 2500},
    }


def workflow_v0_to_v1(envelope: dict[str, Any]) -> dict[str, Any]:
    """v0 -> v1: ``steps`` became ``workflow_steps``, ``duration_ms`` became ``duration`` (s)."""
    data = dict(envelope["data"])
    data["workflow_steps"] = data.pop("steps")
    data["duration"] = data.pop("duration_ms") / 1000
    return {**envelope, "data": data}


@pytest.fixture
def registry() -> UpcasterRegistry:
    """A fresh registry with the v0 -> v1 workflow step (never the engine's default one)."""
    fresh = UpcasterRegistry()
    fresh.register("workflow.executed", 0)(workflow_v0_to_v1)
    return fresh


def test_default_registry_is_empty_while_every_type_is_v1() -> None:
    """The engine ships no upcaster yet: every type is at its first version."""
    assert dict(DEFAULT_UPCASTERS.known_steps()) == {}
    assert {spec.version for spec in EVENT_TYPES.values()} == {1}


def test_v0_event_is_upcast_and_validated(registry: UpcasterRegistry) -> None:
    """A v0 workflow.executed validates as v1 with its fields renamed and converted."""
    event = validate_event(v0_workflow(), registry)
    assert event.schema_version == 1
    assert isinstance(event.data, WorkflowExecuted)
    assert event.data.workflow_steps == ["plan", "code", "test"]
    assert event.data.duration == 2.5
    assert event.data.success is True
    assert event.id == "old-1"


def test_v0_bytes_decode_through_the_registry(registry: UpcasterRegistry) -> None:
    """decode_event applies the given registry to stored v0 bytes."""
    body = json.dumps(v0_workflow()).encode()
    event = decode_event(body, subject="memory.workflow.executed", upcasters=registry)
    assert event.data == WorkflowExecuted(
        workflow_steps=["plan", "code", "test"], success=True, duration=2.5
    )


def test_current_version_passes_through_untouched(registry: UpcasterRegistry) -> None:
    """An event already at the current version is returned equal, with no step run."""
    raw = {
        **v0_workflow(),
        "schema_version": 1,
        "data": {"workflow_steps": ["a"], "success": False, "duration": 1.0},
    }
    assert registry.upcast(raw, 1) == raw
    assert validate_event(raw, registry) == validate_event(raw)


def test_input_is_not_mutated(registry: UpcasterRegistry) -> None:
    """Upcasting returns a new object and leaves the caller's dict as it was."""
    raw = v0_workflow()
    before = copy.deepcopy(raw)
    upgraded = registry.upcast(raw, 1)
    validate_event(raw, registry)
    assert raw == before
    assert upgraded is not raw
    assert upgraded["schema_version"] == 1


def test_input_is_not_mutated_by_an_in_place_step() -> None:
    """Even a step that edits nested data in place cannot change the caller's (stored) dict."""
    fresh = UpcasterRegistry()

    @fresh.register("workflow.executed", 0)
    def in_place(envelope: dict[str, Any]) -> dict[str, Any]:
        data = envelope["data"]
        data["workflow_steps"] = data.pop("steps")
        data["duration"] = data.pop("duration_ms") / 1000
        return envelope

    raw = v0_workflow()
    before = copy.deepcopy(raw)
    event = validate_event(raw, fresh)
    assert isinstance(event.data, WorkflowExecuted)
    assert event.data.duration == 2.5
    assert raw == before
    assert validate_event(raw, fresh) == event  # a second read sees the same stored event


def test_missing_step_is_named() -> None:
    """A version with no step to the next one gives UpcastError naming type and versions."""
    with pytest.raises(UpcastError) as info:
        validate_event(v0_workflow(), UpcasterRegistry())
    assert str(info.value) == "no upcaster from workflow.executed v0 to v1"
    assert info.value.problems == ("schema_version",)
    assert isinstance(info.value, InvalidEventError)


def test_too_new_version_says_upgrade(registry: UpcasterRegistry) -> None:
    """A version newer than the engine knows gives UpcastError telling to upgrade engram."""
    raw = {**v0_workflow(), "schema_version": 2}
    with pytest.raises(
        UpcastError, match="schema_version 2 is newer than this engine knows"
    ) as info:
        validate_event(raw, registry)
    assert "current 1" in str(info.value)
    assert "upgrade engram" in str(info.value)


@pytest.mark.parametrize("version", ["1", True, None, 1.0])
def test_non_integer_version_is_refused(version: Any, registry: UpcasterRegistry) -> None:
    """A schema_version that is not an integer (bools included) is refused, showing it."""
    with pytest.raises(UpcastError, match="must be an integer") as info:
        validate_event({**v0_workflow(), "schema_version": version}, registry)
    assert repr(version) in str(info.value)


def test_steps_chain_in_order_to_the_target_version() -> None:
    """Steps run one after another, each seeing the previous result and its version."""
    fresh = UpcasterRegistry()
    seen: list[int] = []

    def step(envelope: dict[str, Any]) -> dict[str, Any]:
        seen.append(envelope["schema_version"])
        return {
            **envelope,
            "data": {
                **envelope["data"],
                "trail": [*envelope["data"]["trail"], envelope["schema_version"]],
            },
        }

    for version in (0, 1, 2):
        fresh.register("thing.happened", version)(step)
    raw = {"type": "thing.happened", "schema_version": 0, "data": {"trail": []}}
    result = fresh.upcast(raw, 3)
    assert seen == [0, 1, 2]
    assert result["data"]["trail"] == [0, 1, 2]
    assert result["schema_version"] == 3


def test_a_gap_in_the_chain_names_the_missing_step() -> None:
    """With steps 0->1 and 2->3 only, reading v0 at v3 fails on the missing 1->2."""
    fresh = UpcasterRegistry()
    fresh.register("thing.happened", 0)(lambda envelope: envelope)
    fresh.register("thing.happened", 2)(lambda envelope: envelope)
    with pytest.raises(UpcastError, match=r"no upcaster from thing.happened v1 to v2"):
        fresh.upcast({"type": "thing.happened", "schema_version": 0}, 3)


def test_registering_a_step_twice_is_refused(registry: UpcasterRegistry) -> None:
    """A second step for the same type and version is refused; the first stays."""
    with pytest.raises(ValueError, match=r"workflow.executed v0 already exists"):
        registry.register("workflow.executed", 0)(lambda envelope: envelope)
    assert registry.known_steps()[("workflow.executed", 0)] is workflow_v0_to_v1


def test_upcast_result_is_still_validated() -> None:
    """A step producing an invalid payload is caught by validation, naming the field."""
    fresh = UpcasterRegistry()
    fresh.register("workflow.executed", 0)(
        lambda envelope: {
            **envelope,
            "data": {"workflow_steps": envelope["data"]["steps"], "success": True, "duration": -1},
        }
    )
    with pytest.raises(InvalidEventError, match=r"data\.duration"):
        validate_event(v0_workflow(), fresh)
