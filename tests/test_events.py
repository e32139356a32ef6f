"""The event model: envelope and per-type validation, the codec, and its invariants."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.errors import InvalidEventError, UnknownEventTypeError, UpcastError
from engine.events import (
    EVENT_TYPES,
    Event,
    KnowledgeAdded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    decode_event,
    encode_event,
    make_event,
    validate_event,
)

# -- sample payloads, one minimal and one full per event type ---------------------------------

MINIMAL: dict[str, dict[str, Any]] = {
    "workflow.executed": {"workflow_steps": ["plan", "code"], "success": True, "duration": 12.5},
    "task.executed": {"task_id": "t-1", "execution_summary": "Fixed the bug", "success": False},
    "decision.logged": {"decision_id": "d-1", "actor": "planner", "decision": "use a cache"},
    "decision.outcome": {"decision_id": "d-1", "success": True},
    "pattern.feedback": {"pattern_id": "p-1", "helpful": True},
    "session.started": {"session_id": "s-1"},
    "session.ended": {"session_id": "s-1"},
    "knowledge.added": {"kind": "procedure", "title": "Deploy", "content": "Run the script."},
    "item.put": {"path": ["users", "u1"], "key": "prefs", "value": {"theme": "dark"}},
    "item.deleted": {"path": ["users", "u1"], "key": "prefs"},
    "cache.put": {"prompt": "What is NATS?", "response": "a message bus", "ttl": 3600},
    "cache.evicted": {"prompt": "What is NATS?"},
    "pattern.learned": {
        "pattern_id": "p-1",
        "version": 1,
        "pattern_type": "workflow",
        "task_type": "code_review",
        "caused_by_sequence": 7,
        "success_rate": 0.8,
        "confidence": 0.6,
        "sample_size": 10,
    },
    "session.compacted": {
        "session_id": "s-1",
        "original_size_bytes": 1000,
        "compressed_size_bytes": 200,
        "compression_ratio": 0.2,
        "num_memories": 5,
        "num_patterns_extracted": 1,
        "compaction_duration_ms": 3.5,
    },
    "snapshot.created": {
        "snapshot_id": "snap-1",
        "sequence": 100,
        "files": 3,
        "total_bytes": 4096,
        "location": "snapshots/snap-1",
    },
    "memory.recalled": {"memory_ids": ["m-1", "m-2"]},
    "context.suggested": {"task_description": "fix the login bug", "task_type": "debugging"},
    "pattern.matched": {"pattern_id": "p-1", "task_type": "debugging"},
    "namespace.purged": {
        "namespace": "default",
        "reason": "erasure request 42",
        "first_sequence": 1,
        "last_sequence": 10,
        "messages": 4,
        "subject_filter": "memory.*.*.default",
    },
}

OPTIONAL: dict[str, dict[str, Any]] = {
    "workflow.executed": {
        "task_type": "code_review",
        "request": "Review PR 12",
        "cost": 0.03,
        "metadata": {"model": "m-1", "tokens": 1200, "nested": {"ok": [1, None, "x"]}},
    },
    "task.executed": {
        "task_type": "bug_fix",
        "error_patterns": ["timeout", "flaky test"],
        "embedding": [0.1, -0.2, 0.3],
        "metadata": {"attempt": 2},
    },
    "decision.logged": {
        "rationale": "reads dominate",
        "context": "service A",
        "alternatives": ["no cache", "CDN"],
        "task_id": "t-1",
    },
    "decision.outcome": {"notes": "latency halved"},
    "pattern.feedback": {"confidence_adjustment": -0.25},
    "session.started": {"goal": "ship the release"},
    "session.ended": {"success": True},
    "knowledge.added": {"knowledge_id": "k-1", "tags": ["ops", "deploy"], "metadata": {"v": 3}},
    "item.put": {"index": ["theme"], "ttl": 60.0},
    "item.deleted": {},
    "cache.put": {"model": "gpt-x", "metadata": {"tokens": 12}},
    "cache.evicted": {"model": "gpt-x", "reason": "wrong answer"},
    "pattern.learned": {"pattern": {"steps": ["plan", "code"]}},
    "session.compacted": {},
    "snapshot.created": {"embedder": "hashing-256"},
    "memory.recalled": {"query": "login bug", "verb": "search_similar"},
    "context.suggested": {
        "similar_memory_ids": ["m-1"],
        "pattern_ids": ["p-1"],
        "recommendations": ["Use the workflow plan -> code."],
    },
    "pattern.matched": {"task_description": "fix the login bug"},
    "namespace.purged": {"legacy_filter": "memory.*.*"},
}


def envelope(event_type: str, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A valid raw envelope of ``event_type`` around ``data`` (fields override)."""
    raw: dict[str, Any] = {
        "id": "0193a6f0-6c1e-7cc2-9d1a-3f2b9c1d4e5f",
        "type": event_type,
        "schema_version": 1,
        "namespace": "default",
        "occurred_at": "2026-11-20T12:00:00Z",
        "agent_id": "planner-1",
        "session_id": "session_abc123",
        "data": data,
    }
    raw.update(fields)
    return raw


def rejection(raw: Any) -> InvalidEventError:
    """The InvalidEventError validating ``raw`` raises (fails the test when none)."""
    with pytest.raises(InvalidEventError) as info:
        validate_event(raw)
    return info.value


def assert_names(error: InvalidEventError, field: str) -> None:
    assert field in str(error), str(error)
    assert any(problem.startswith(field) for problem in error.problems), error.problems


REQUIRED = [
    (name, field)
    for name, spec in EVENT_TYPES.items()
    for field, info in spec.model.model_fields.items()
    if info.is_required()
]


# -- valid events -------------------------------------------------------------------------------


def test_samples_cover_every_event_type() -> None:
    """The sample tables hold one payload for every type in the registry."""
    assert set(MINIMAL) == set(EVENT_TYPES) == set(OPTIONAL)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_minimal_payload_validates_to_its_model(event_type: str) -> None:
    """A payload with only the required fields validates into its type's model."""
    event = validate_event(envelope(event_type, MINIMAL[event_type]))
    assert type(event.data) is EVENT_TYPES[event_type].model
    assert event.type == event_type
    assert event.subject == f"memory.{event_type}.default"
    assert event.occurred_at == datetime(2026, 11, 20, 12, tzinfo=UTC)
    for field, value in MINIMAL[event_type].items():
        assert getattr(event.data, field) == value


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_full_payload_round_trips_through_the_codec(event_type: str) -> None:
    """A payload with every optional field survives encode_event -> decode_event unchanged."""
    data = {**MINIMAL[event_type], **OPTIONAL[event_type]}
    event = validate_event(envelope(event_type, data))
    body = encode_event(event)
    decoded = decode_event(body, subject=f"memory.{event_type}")
    assert decoded == event
    assert encode_event(decoded) == body
    wire = json.loads(body)["data"]
    for field, value in data.items():
        assert wire[field] == value


def test_encoding_omits_absent_optionals_and_is_compact() -> None:
    """The wire form has no null optionals and no whitespace between tokens."""
    event = validate_event(
        envelope("session.ended", {"session_id": "s-1"}, agent_id=None, session_id=None)
    )
    body = encode_event(event)
    raw = json.loads(body)
    assert "agent_id" not in raw
    assert "session_id" not in raw
    assert "success" not in raw["data"]
    assert b", " not in body
    assert b": " not in body


def test_namespace_defaults_to_default() -> None:
    """An envelope without a namespace belongs to the "default" namespace."""
    raw = envelope("session.started", {"session_id": "s-1"})
    del raw["namespace"]
    assert validate_event(raw).namespace == "default"


def test_timestamp_with_offset_is_kept() -> None:
    """An RFC 3339 time with a non-UTC offset validates and keeps its instant."""
    event = validate_event(
        envelope("session.started", {"session_id": "s"}, occurred_at="2026-11-20T14:00:00+02:00")
    )
    assert event.occurred_at == datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(hours=2)


def test_knowledge_tags_are_deduplicated_in_order() -> None:
    """Repeated knowledge tags are stored once, first occurrence first."""
    data = KnowledgeAdded(kind="incident", title="t", content="c", tags=["b", "a", "b"])
    assert data.tags == ["b", "a"]


def test_make_event_wraps_a_payload_at_the_current_version() -> None:
    """make_event builds an envelope with a fresh UUIDv7, UTC now, the type and version."""
    before = datetime.now(UTC)
    first = make_event(SessionStarted(session_id="s-1"), agent_id="a-1")
    second = make_event(SessionStarted(session_id="s-1"))
    assert first.type == "session.started"
    assert first.schema_version == EVENT_TYPES["session.started"].version
    assert first.namespace == "default"
    assert first.agent_id == "a-1"
    assert before <= first.occurred_at <= datetime.now(UTC)
    assert uuid.UUID(first.id).version == 7
    assert first.id != second.id


def test_make_event_with_fixed_id_and_time_is_byte_identical() -> None:
    """The same id and time give the identical event and bytes (a retry is the same message)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    data = WorkflowExecuted(workflow_steps=["a"], success=True, duration=1.0)
    one = make_event(data, event_id="fixed", occurred_at=at, namespace="team-a")
    two = make_event(data, event_id="fixed", occurred_at=at, namespace="team-a")
    assert one == two
    assert encode_event(one) == encode_event(two)


def test_make_event_refuses_a_non_payload() -> None:
    """make_event rejects a model that is not an event payload, naming it."""
    with pytest.raises(InvalidEventError, match="SessionThing is not an event payload"):
        make_event(type("SessionThing", (SessionStarted,), {})(session_id="s"))


def test_event_data_must_match_its_type() -> None:
    """The base Event refuses a payload model that is not its type's model."""
    with pytest.raises(ValidationError, match="must be a TaskExecuted"):
        Event(
            id="x",
            type="task.executed",
            schema_version=1,
            occurred_at=datetime.now(UTC),
            data=SessionStarted(session_id="s"),
        )


# -- invalid envelopes ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "occurred_at", "data"])
def test_missing_envelope_field_is_named(field: str) -> None:
    """A missing required envelope field is reported by name."""
    raw = envelope("session.started", {"session_id": "s"})
    del raw[field]
    error = rejection(raw)
    assert_names(error, f"{field}: required field is missing")


def test_missing_type_is_named() -> None:
    """An envelope without a type string is rejected, naming `type`."""
    raw = envelope("session.started", {"session_id": "s"})
    del raw["type"]
    assert_names(rejection(raw), "type")
    assert_names(rejection({**raw, "type": 7}), "type")


def test_missing_schema_version_is_named() -> None:
    """An envelope without an integer schema_version is rejected, naming it."""
    raw = envelope("session.started", {"session_id": "s"})
    del raw["schema_version"]
    error = rejection(raw)
    assert isinstance(error, UpcastError)
    assert "schema_version" in str(error)
    assert isinstance(rejection({**raw, "schema_version": "1"}), UpcastError)


def test_negative_schema_version_is_refused() -> None:
    """A schema_version below any known version is refused as an UpcastError on that field."""
    error = rejection(envelope("session.started", {"session_id": "s"}, schema_version=-1))
    assert isinstance(error, UpcastError)
    assert error.problems == ("schema_version",)


def test_unknown_type_is_rejected() -> None:
    """An event type engram does not know gives UnknownEventTypeError naming it."""
    error = rejection(envelope("workflow.exploded", {}))
    assert isinstance(error, UnknownEventTypeError)
    assert "'workflow.exploded'" in str(error)
    assert error.problems == ("type: unknown event type 'workflow.exploded'",)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "has space"),
        ("namespace", ""),
        ("namespace", "n" * 65),
        ("namespace", "a.b"),
        ("id", ""),
        ("id", "has space"),
        ("id", 42),
        ("agent_id", ""),
        ("session_id", 5),
        ("occurred_at", "yesterday"),
        ("occurred_at", "2026-11-20T12:00:00"),
    ],
)
def test_bad_envelope_value_is_named(field: str, value: Any) -> None:
    """A malformed envelope value (namespace, id, labels, time, version) names its field."""
    error = rejection(envelope("session.started", {"session_id": "s"}, **{field: value}))
    assert_names(error, field)


def test_naive_timestamp_says_timezone() -> None:
    """A timestamp without a zone is refused with a message about the timezone."""
    error = rejection(
        envelope("session.started", {"session_id": "s"}, occurred_at="2026-11-20T12:00:00")
    )
    assert_names(error, "occurred_at")
    assert "timezone" in str(error)


def test_unknown_envelope_field_is_named() -> None:
    """An unknown top-level field (a typo) is refused, naming it."""
    error = rejection(envelope("session.started", {"session_id": "s"}, namespce="x"))
    assert_names(error, "namespce: unknown field")


# -- invalid payloads ------------------------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "field"), REQUIRED)
def test_missing_required_payload_field_is_named(event_type: str, field: str) -> None:
    """Every required payload field, when missing, is reported as data.<field>."""
    data = dict(MINIMAL[event_type])
    del data[field]
    error = rejection(envelope(event_type, data))
    assert_names(error, f"data.{field}: required field is missing")


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_unknown_payload_field_is_named(event_type: str) -> None:
    """A typo in any payload is refused as an unknown field, never silently dropped."""
    error = rejection(envelope(event_type, {**MINIMAL[event_type], "sucess": True}))
    assert_names(error, "data.sucess: unknown field")
    assert "metadata" in str(error)


WRONG_VALUES = [
    ("workflow.executed", "success", "yes"),
    ("workflow.executed", "success", 1),
    ("workflow.executed", "duration", "fast"),
    ("workflow.executed", "duration", -1),
    ("workflow.executed", "duration", math.nan),
    ("workflow.executed", "duration", math.inf),
    ("workflow.executed", "cost", -0.5),
    ("workflow.executed", "cost", math.nan),
    ("workflow.executed", "workflow_steps", "plan"),
    ("workflow.executed", "workflow_steps", []),
    ("workflow.executed", "workflow_steps", [1]),
    ("workflow.executed", "task_type", "has space"),
    ("workflow.executed", "metadata", [1, 2]),
    ("workflow.executed", "metadata", {"x": math.nan}),
    ("workflow.executed", "metadata", {"x": object()}),
    ("workflow.executed", "metadata", {"x": "lone \ud800 surrogate"}),
    ("task.executed", "task_id", 42),
    ("task.executed", "task_id", "   "),
    ("task.executed", "execution_summary", ""),
    ("task.executed", "embedding", []),
    ("task.executed", "embedding", ["a"]),
    ("task.executed", "embedding", [0.1, math.nan]),
    ("task.executed", "embedding", [1e308] * 384),  # finite, but infinite as float32
    ("task.executed", "embedding", [0.5, -3.5e38]),
    ("task.executed", "error_patterns", "timeout"),
    ("decision.logged", "actor", ""),
    ("decision.logged", "alternatives", "a"),
    ("decision.logged", "decision", None),
    ("decision.outcome", "success", "true"),
    ("decision.outcome", "notes", 5),
    ("pattern.feedback", "confidence_adjustment", 1.5),
    ("pattern.feedback", "confidence_adjustment", math.nan),
    ("pattern.feedback", "helpful", None),
    ("session.started", "session_id", ""),
    ("session.started", "goal", 3),
    ("session.ended", "success", "no"),
    ("knowledge.added", "kind", "memo"),
    ("knowledge.added", "content", ""),
    ("knowledge.added", "title", "x" * 1001),
    ("knowledge.added", "tags", [""]),
    ("item.put", "path", ["a.b"]),
    ("item.put", "path", []),
    ("item.put", "key", ""),
    ("item.put", "value", [1]),
    ("item.put", "index", True),
    ("item.put", "ttl", -1),
    ("item.deleted", "path", [""]),
    ("cache.put", "prompt", ""),
    ("cache.put", "prompt", "   "),
    ("cache.put", "response", None),
    ("cache.put", "ttl", 0),
    ("cache.put", "ttl", -5),
    ("cache.put", "ttl", 1e12),
    ("cache.put", "ttl", True),
    ("cache.evicted", "prompt", ""),
    ("pattern.learned", "version", 0),
    ("pattern.learned", "version", 1.0),
    ("pattern.learned", "pattern_type", "other"),
    ("pattern.learned", "success_rate", 1.5),
    ("pattern.learned", "confidence", math.nan),
    ("pattern.learned", "sample_size", -1),
    ("session.compacted", "compression_ratio", 2),
    ("session.compacted", "num_memories", -1),
    ("session.compacted", "compaction_duration_ms", -1),
    ("snapshot.created", "sequence", -1),
    ("snapshot.created", "files", "3"),
    ("snapshot.created", "location", ""),
]


@pytest.mark.parametrize(("event_type", "field", "value"), WRONG_VALUES)
def test_wrong_payload_value_is_named(event_type: str, field: str, value: Any) -> None:
    """A wrong type, range, NaN or non-JSON value in a payload is refused as data.<field>."""
    error = rejection(envelope(event_type, {**MINIMAL[event_type], field: value}))
    assert_names(error, f"data.{field}")


def test_wrong_type_names_the_value_it_got() -> None:
    """The message says what value was given, so the publisher can find it."""
    data = {**MINIMAL["workflow.executed"], "success": "yes"}
    error = rejection(envelope("workflow.executed", data))
    assert "(got 'yes')" in str(error)


def test_every_problem_is_listed() -> None:
    """Several problems in one event are all reported, one line each."""
    error = rejection(
        envelope("workflow.executed", {"success": "maybe", "duration": -3}, namespace="a b")
    )
    named = {problem.split(":")[0] for problem in error.problems}
    assert named == {"namespace", "data.workflow_steps", "data.success", "data.duration"}


# -- decoding bytes ----------------------------------------------------------------------------


def body_of(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw).encode()


def test_decode_reads_valid_bytes() -> None:
    """Valid bytes decode to the typed event, with or without a matching subject."""
    raw = envelope("decision.outcome", MINIMAL["decision.outcome"])
    event = decode_event(body_of(raw), subject="memory.decision.outcome")
    assert event.data.model_dump() == {"decision_id": "d-1", "success": True, "notes": ""}
    assert decode_event(body_of(raw).decode()) == event


def test_decode_refuses_a_subject_type_mismatch() -> None:
    """A body whose type disagrees with its subject is refused, naming both."""
    body = body_of(envelope("decision.outcome", MINIMAL["decision.outcome"]))
    with pytest.raises(InvalidEventError) as info:
        decode_event(body, subject="memory.task.executed")
    assert "memory.task.executed" in str(info.value)
    assert "memory.decision.outcome" in str(info.value)
    assert info.value.problems == ("type: does not match the subject",)
    with pytest.raises(InvalidEventError, match="does not match"):
        decode_event(body, subject="elsewhere.decision.outcome")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"id": ', "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object, got list"),
        (b'"event"', "JSON object, got str"),
        (b"42", "JSON object, got int"),
        (b"null", "JSON object, got NoneType"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_decode_refuses_malformed_bodies(body: bytes, expected: str) -> None:
    """Bodies that are not UTF-8, not JSON, too deep or not an object are refused clearly."""
    with pytest.raises(InvalidEventError) as info:
        decode_event(body)
    assert type(info.value) is InvalidEventError
    assert expected in str(info.value)


def test_decode_refuses_nan_literals() -> None:
    """A NaN literal in the body (not JSON, but Python accepts it) is refused by field."""
    body = body_of(envelope("workflow.executed", MINIMAL["workflow.executed"])).replace(
        b'"duration": 12.5', b'"duration": NaN'
    )
    assert b"NaN" in body
    with pytest.raises(InvalidEventError, match=r"data\.duration"):
        decode_event(body)


def test_encode_refuses_nothing_it_validated() -> None:
    """An event that validated always encodes to UTF-8 JSON that decodes back equal."""
    data = TaskExecuted(
        task_id="t", execution_summary="ünïcødé ✓ 日本", success=True, metadata={"k": [1.5, "é"]}
    )
    event = make_event(data)
    assert decode_event(encode_event(event)) == event


# -- properties ----------------------------------------------------------------------------------

TEXT = st.text(max_size=40)
LABEL = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
FINITE = st.floats(allow_nan=False, allow_infinity=False)
FINITE_32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
NON_NEGATIVE = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
METADATA = st.dictionaries(TEXT, JSON_VALUES, max_size=4)
TASK_TYPE = st.from_regex(r"\A[A-Za-z0-9_.:\-]{1,40}\Z")
ZONES = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-23 * 60, 23 * 60)
)
ENVELOPE = {
    "event_id": st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64
    ),
    "namespace": st.from_regex(r"\A[A-Za-z0-9_\-]{1,64}\Z"),
    "agent_id": st.none() | LABEL,
    "session_id": st.none() | LABEL,
    "occurred_at": st.datetimes(timezones=ZONES),
}

WORKFLOWS = st.builds(
    WorkflowExecuted,
    task_type=st.none() | TASK_TYPE,
    request=st.none() | TEXT,
    workflow_steps=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6),
    success=st.booleans(),
    duration=NON_NEGATIVE,
    cost=st.none() | NON_NEGATIVE,
    metadata=METADATA,
)
TASKS = st.builds(
    TaskExecuted,
    task_id=LABEL,
    execution_summary=st.text(min_size=1, max_size=80),
    success=st.booleans(),
    task_type=st.none() | TASK_TYPE,
    error_patterns=st.lists(st.text(min_size=1, max_size=20), max_size=4),
    # float32 values: what the index holds (a larger finite float is refused).
    embedding=st.none() | st.lists(FINITE_32, min_size=1, max_size=8),
    metadata=METADATA,
)


@hsettings(max_examples=150, deadline=None)
@given(data=WORKFLOWS | TASKS, options=st.fixed_dictionaries(ENVELOPE))
def test_valid_events_round_trip(data: WorkflowExecuted | TaskExecuted, options: Any) -> None:
    """Any valid WorkflowExecuted or TaskExecuted survives encode -> decode unchanged."""
    event = make_event(data, **options)
    body = encode_event(event)
    decoded = decode_event(body, subject=event.subject)
    assert decoded == event
    assert decoded.data == data
    assert decoded.occurred_at.utcoffset() == event.occurred_at.utcoffset()
    assert encode_event(decoded) == body


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
EVENTISH = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=20)},
    optional={
        "id": ANY_JSON,
        "schema_version": st.integers(-3, 3) | ANY_JSON,
        "namespace": ANY_JSON,
        "occurred_at": st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00"]) | ANY_JSON,
        "agent_id": ANY_JSON,
        "data": st.dictionaries(st.text(max_size=25), ANY_JSON, max_size=6) | ANY_JSON,
    },
)


def decode_or_error(body: bytes) -> Event | InvalidEventError:
    """The decoded event, or the InvalidEventError (any other exception propagates)."""
    try:
        return decode_event(body)
    except InvalidEventError as exc:
        return exc


@hsettings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=12), ANY_JSON, max_size=6) | EVENTISH)
def test_arbitrary_json_objects_only_raise_invalid_event(obj: dict[str, Any]) -> None:
    """decode_event on any JSON object returns an Event or raises InvalidEventError only."""
    outcome = decode_or_error(json.dumps(obj).encode())
    if isinstance(outcome, InvalidEventError):
        assert str(outcome)
    else:
        assert outcome.type in EVENT_TYPES


@hsettings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_invalid_event(body: bytes) -> None:
    """decode_event on arbitrary bytes raises InvalidEventError with a message, nothing else."""
    with pytest.raises(InvalidEventError) as info:
        decode_event(body)
    assert str(info.value)
