"""A task's ``embedding`` is its content: a vector the float32 index cannot hold is an invalid
event (refused by the SDK before sending, dead-lettered as ``invalid_event`` at decode), never
an ``application_failed`` of the vectors projection with a numpy overflow warning."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from consumers.decoding import decode_batch
from engine import InvalidEventError, MemoryClient, Settings
from engine.events import TaskExecuted, validate_event
from engine.events.agent import FLOAT32_MAX
from engine.stream import EventLog, StoredMessage
from projections.vectors.index import VectorIndex

OVERFLOWING = [1e308] * 384
"""Finite as a Python float, infinite as float32: what the reviewer sent."""


def _raw(embedding: list[float]) -> dict[str, Any]:
    return {
        "id": "0193a6f0-6c1e-7cc2-9d1a-3f2b9c1d4e5f",
        "type": "task.executed",
        "schema_version": 1,
        "occurred_at": "2026-11-20T12:00:00Z",
        "data": {
            "task_id": "t-1",
            "execution_summary": "deployed",
            "success": True,
            "embedding": embedding,
        },
    }


def test_an_overflowing_embedding_is_one_problem_naming_data_embedding() -> None:
    """[1e308]*384 is refused with one problem for data.embedding that says float32 range and
    where the first bad value is (not 384 lines)."""
    with pytest.raises(InvalidEventError) as info:
        validate_event(_raw(OVERFLOWING))
    [problem] = info.value.problems
    assert problem.startswith("data.embedding: ")
    assert "float32 range" in problem
    assert "384 of 384 are not, the first at index 0: 1e+308" in problem


def test_the_float32_bounds_and_an_all_zero_vector_are_accepted() -> None:
    """±FLOAT32_MAX is still a float32 (it is kept as is); an all-zero vector is accepted by
    decision (finite; the index gives it similarity 0, never a failure)."""
    edge = validate_event(_raw([FLOAT32_MAX, -FLOAT32_MAX, 0.5]))
    assert isinstance(edge.data, TaskExecuted)
    assert edge.data.embedding == [FLOAT32_MAX, -FLOAT32_MAX, 0.5]
    assert np.isfinite(np.asarray(edge.data.embedding, dtype=np.float32)).all()
    zero = validate_event(_raw([0.0] * 384))
    assert isinstance(zero.data, TaskExecuted)
    assert zero.data.embedding == [0.0] * 384


def test_an_all_zero_vector_is_indexed_with_similarity_0() -> None:
    """Why zeros are accepted: the index takes a zero vector and scores it 0 against any
    query, finite, without a warning; the other vectors are found as usual."""
    index = VectorIndex(4, "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.add([1, 2], [[0.0] * 4, [1.0, 0.0, 0.0, 0.0]])
        hits = dict(index.search([1.0, 0.0, 0.0, 0.0], 2))
        similarities = index.similarities([1.0, 0.0, 0.0, 0.0], [1, 2])
    assert hits[2] == pytest.approx(1.0)
    assert hits[1] == 0.0
    assert similarities == [0.0, pytest.approx(1.0)]


def test_at_decode_it_is_an_invalid_event_dead_letter_without_a_warning() -> None:
    """A stored task.executed with [1e308]*384 becomes an ``invalid_event`` dead letter (the
    kind of content errors) naming data.embedding, and numpy is never reached (no warning)."""
    message = StoredMessage(
        sequence=7,
        subject="memory.task.executed",
        data=json.dumps(_raw(OVERFLOWING)).encode(),
        time=datetime(2026, 11, 20, tzinfo=UTC),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        events, dead = decode_batch([message], "vectors")
    assert events == []
    [letter] = dead
    assert (letter.sequence, letter.kind, letter.projection) == (7, "invalid_event", "vectors")
    assert "data.embedding" in letter.reason
    assert "float32" in letter.reason


async def test_the_sdk_refuses_it_before_sending(settings: Settings, event_log: EventLog) -> None:
    """MemoryClient.store_execution with an overflowing embedding raises InvalidEventError
    naming data.embedding, and nothing reaches the stream."""
    async with MemoryClient(settings=settings) as memory:
        with pytest.raises(InvalidEventError) as info:
            await memory.store_execution(
                task_id="t-1", execution_summary="deployed", success=True, embedding=OVERFLOWING
            )
    assert any(p.startswith("data.embedding") for p in info.value.problems)
    assert (await event_log.state()).messages == 0
