"""Subjects derive from two prefixes (engine/subjects.py, ``StreamSettings.subject_prefix`` and
``service_prefix``): the defaults are the wire contract (``memory.<type>.<namespace>``,
``memory.>``, ``engram.deadletter.<kind>``); another prefix moves every subject with it; a
prefix that is not a plain token sequence, or that overlaps the other, is refused."""

from __future__ import annotations

import pytest

from consumers.deadletters import DEAD_LETTER_PREFIX, DeadLetterPublisher
from engine.errors import ConfigurationError, InvalidEventError
from engine.events import (
    EVENT_TYPES,
    SUBJECT_PREFIX,
    Event,
    decode_event,
    encode_event,
    subject_for,
    validate_event,
)
from engine.settings import Settings, StreamSettings
from engine.stream.append import encode_for_append
from engine.stream.setup import stream_config
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects, ServiceSubjects
from engine.verbs import QUERY_PREFIX
from tests.test_events import MINIMAL, envelope


def example_event(event_type: str) -> Event:
    return validate_event(envelope(event_type, MINIMAL[event_type]))


def test_the_defaults_are_the_documented_wire_contract() -> None:
    """Default settings: the stream captures exactly memory.>, each type is published on
    memory.<type>.<namespace> (as Event.subject and subject_for say), dead letters on
    engram.deadletter.<kind>, queries under engram.query. (engram.query.<namespace>.<verb>)."""
    stream = StreamSettings()
    assert stream.subjects == ("memory.>",)
    assert stream_config(stream).subjects == ["memory.>"]
    assert stream.events == DEFAULT_SUBJECTS
    assert SUBJECT_PREFIX == "memory."
    assert DEAD_LETTER_PREFIX == stream.service.dead_letter_prefix == "engram.deadletter."
    assert stream.service.query_prefix == QUERY_PREFIX == "engram.query."
    for event_type in EVENT_TYPES:
        event = example_event(event_type)
        _, subject, body = encode_for_append(event)
        assert subject == event.subject == subject_for(event_type, "default")
        assert subject == f"memory.{event_type}.default"
        assert body == encode_event(event)


def test_another_prefix_moves_every_subject_and_decoding_with_it() -> None:
    """With subject_prefix team-a.memory the stream captures team-a.memory.>, the appender
    encodes team-a.memory.<type>.<namespace>, and decoding accepts that subject (and the v1
    team-a.memory.<type>) for that prefix only
    (under the default one it is a subject that does not match, naming the expected one)."""
    stream = StreamSettings(name="TEAM_A", subject_prefix="team-a.memory", service_prefix="team-a")
    assert stream_config(stream).subjects == ["team-a.memory.>"]
    assert stream.service.dead_letter_prefix == "team-a.deadletter."
    event = example_event("task.executed")
    event_id, subject, body = encode_for_append(event, stream.events)
    assert (event_id, subject) == (event.id, "team-a.memory.task.executed.default")
    assert decode_event(body, subject, subjects=stream.events) == event
    assert decode_event(body, "team-a.memory.task.executed", subjects=stream.events) == event
    with pytest.raises(InvalidEventError, match=r"expected memory\.task\.executed\.default"):
        decode_event(body, subject)
    with pytest.raises(
        InvalidEventError, match=r"expected team-a\.memory\.task\.executed\.default"
    ):
        decode_event(body, "memory.task.executed", subjects=stream.events)


def test_the_prefix_comes_from_the_environment() -> None:
    """ENGRAM_STREAM__SUBJECT_PREFIX and ENGRAM_STREAM__SERVICE_PREFIX set the prefixes."""
    settings = Settings.load(
        {"ENGRAM_STREAM__SUBJECT_PREFIX": "b.memory", "ENGRAM_STREAM__SERVICE_PREFIX": "b"}
    )
    assert settings.stream.subjects == ("b.memory.>",)
    assert settings.stream.service == ServiceSubjects("b")


@pytest.mark.parametrize(
    "prefix",
    ["", "memory.>", "memory.*", "a..b", ".a", "a.", "a b", "$JS", "é", "a\tb", "x" * 101],
)
def test_a_prefix_that_is_not_plain_tokens_is_refused(prefix: str) -> None:
    """Wildcards, empty tokens, whitespace, $ (the server's own subjects), non-ASCII and an
    overlong prefix are refused as settings and as EventSubjects."""
    with pytest.raises(ConfigurationError, match=r"stream\.subject_prefix"):
        Settings.load({"ENGRAM_STREAM__SUBJECT_PREFIX": prefix})
    with pytest.raises(ConfigurationError, match="dot-separated tokens"):
        EventSubjects(prefix)


@pytest.mark.parametrize(
    ("subject_prefix", "service_prefix"),
    [("engram", "engram"), ("engram.query", "engram"), ("x", "x.y"), ("a.deadletter", "a")],
)
def test_prefixes_that_overlap_are_refused(subject_prefix: str, service_prefix: str) -> None:
    """A stream that would capture the engine's dead-letter or query subjects (or the other
    way round) is refused, naming both prefixes."""
    with pytest.raises(ConfigurationError, match="overlap"):
        Settings.load(
            {
                "ENGRAM_STREAM__SUBJECT_PREFIX": subject_prefix,
                "ENGRAM_STREAM__SERVICE_PREFIX": service_prefix,
            }
        )


def test_subjects_is_derived_not_a_setting() -> None:
    """The captured subjects cannot be set apart from the prefix (they could only disagree)."""
    with pytest.raises(ConfigurationError, match=r"stream\.subjects"):
        Settings.load({"ENGRAM_STREAM__SUBJECTS": "memory.>"})
    assert StreamSettings(subject_prefix="x").subjects == ("x.>",)


def test_the_dead_letter_stream_takes_the_service_prefix() -> None:
    """A stream's dead-letter stream captures <service prefix>.deadletter.>."""
    publisher = DeadLetterPublisher(None, StreamSettings(name="S", service_prefix="t1"))  # type: ignore[arg-type]
    assert publisher.stream_name == "S_DLQ"
    assert publisher._config.subjects == ["t1.deadletter.>"]
