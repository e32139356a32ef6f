"""Only the engine publishes derived events, and the engine ignores those it did not sign.

Issue 10, finding 8: ``engram publish pattern.learned`` was accepted, and because the learner
treats what it reads back as "already announced", a forged id could suppress a real version.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from pydantic import SecretStr

from consumers.decoding import FORGED, decode_batch
from consumers.replay import replay
from engine import MemoryClient
from engine.errors import EngineKeyError, ForbiddenEventTypeError
from engine.events import (
    ContextSuggested,
    EventData,
    MemoryRecalled,
    PatternLearned,
    PatternMatched,
    SessionCompacted,
    SnapshotCreated,
    TaskExecuted,
    WorkflowExecuted,
    encode_event,
    make_event,
)
from engine.events.derived import NamespacePurged
from engine.events.registry import DERIVED_TYPES, EVENT_TYPES, require_agent_type
from engine.settings import NatsSettings, Settings
from engine.signing import NO_KEY, SIGNATURE_HEADER, EngineKey
from engine.stream import EventLog, ReadRange, StoredMessage, read_stream
from engine.stream.append import Appender, encode_for_append
from engine.stream.engine_key import BUCKET, signing_key, verifying_key
from engram.app import Engine
from projections.learning.state import announcement_event_id, workflow_pattern_id
from projections.projection_set import open_projections
from projections.workflows import workflow_key
from tests.cli_runs import engram
from tests.engines import FAST, running, settle

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

DERIVED_PAYLOADS: dict[str, EventData] = {
    "pattern.learned": PatternLearned(
        pattern_id="workflow:default:testing:abc",
        version=7,
        pattern_type="workflow",
        task_type="testing",
        caused_by_sequence=1,
        success_rate=1.0,
        confidence=0.9,
        sample_size=50,
    ),
    "session.compacted": SessionCompacted(
        session_id="s-1",
        original_size_bytes=100,
        compressed_size_bytes=10,
        compression_ratio=0.1,
        num_memories=3,
        num_patterns_extracted=1,
        compaction_duration_ms=1.0,
    ),
    "snapshot.created": SnapshotCreated(
        snapshot_id="000000000001", sequence=1, files=1, total_bytes=1, location="x"
    ),
    "memory.recalled": MemoryRecalled(memory_ids=["t-1"]),
    "context.suggested": ContextSuggested(task_description="fix it", task_type="testing"),
    "pattern.matched": PatternMatched(pattern_id="workflow:default:testing:abc", task_type="t"),
    "namespace.purged": NamespacePurged(
        namespace="default",
        reason="erasure",
        first_sequence=1,
        last_sequence=1,
        messages=1,
        subject_filter="memory.*.*.default",
    ),
}
KEY = EngineKey("k" * 40)


def _stored(event_data: EventData, sequence: int, headers: dict[str, str]) -> StoredMessage:
    event = make_event(event_data, occurred_at=NOW, event_id=f"e-{sequence}")
    body = encode_event(event)
    signed = {k: (KEY.sign(body) if v == "SIGN" else v) for k, v in headers.items()}
    return StoredMessage(sequence, event.subject, body, NOW, signed)


def _workflows(success: list[bool], steps: tuple[str, ...] = ("plan", "code")) -> list[Any]:
    return [
        make_event(
            WorkflowExecuted(
                task_type="testing", workflow_steps=list(steps), success=ok, duration=1.0
            )
        )
        for ok in success
    ]


# -- who may publish what ----------------------------------------------------------------------


def test_the_derived_types_are_declared_once_in_the_registry() -> None:
    """The registry names exactly the six engine-published types, and refuses each of them
    (and nothing else) to agents."""
    assert set(DERIVED_PAYLOADS) == DERIVED_TYPES
    for name, spec in EVENT_TYPES.items():
        if spec.publisher == "engine":
            with pytest.raises(ForbiddenEventTypeError, match="published by the engine only"):
                require_agent_type(name)
        else:
            require_agent_type(name)


async def test_the_sdk_refuses_derived_types_and_sends_nothing(
    event_log: EventLog, settings: Settings
) -> None:
    """MemoryClient.publish raises ForbiddenEventTypeError for every derived type before
    sending; publish_many reports the derived one and stores the others."""
    async with MemoryClient(settings=settings) as memory:
        for name, data in DERIVED_PAYLOADS.items():
            with pytest.raises(ForbiddenEventTypeError, match=name):
                await memory.publish(memory.event(data))
        assert (await event_log.state()).messages == 0
        agent = memory.event(TaskExecuted(task_id="t", execution_summary="s", success=True))
        derived = memory.event(DERIVED_PAYLOADS["pattern.learned"])
        report = await memory.publish_many([agent, derived, agent.model_copy(update={"id": "b"})])
    assert report.accepted == 2
    assert isinstance(report.results[1], ForbiddenEventTypeError)
    assert report.sequences[0] is not None and report.sequences[1] is None
    assert (await event_log.state()).messages == 2


async def test_the_cli_refuses_derived_types(
    event_log: EventLog, settings: Settings, tmp_path: Path
) -> None:
    """``engram publish pattern.learned`` exits 2 saying only the engine publishes it, and
    ``engram ingest`` rejects such a line (naming it) while storing the agent's lines."""
    conn = ["--nats-url", str(settings.nats.url), "--stream", settings.stream.name]
    conn += ["--data-dir", str(tmp_path / "cli")]
    data = DERIVED_PAYLOADS["pattern.learned"].model_dump(mode="json")
    code, out, err = await engram(
        "publish", "pattern.learned", "--data", json.dumps(data), *conn, cwd=tmp_path
    )
    assert code == 2, err
    assert "pattern.learned is published by the engine only" in err
    assert out == ""
    assert (await event_log.state()).messages == 0

    lines = [
        {
            "type": "workflow.executed",
            "data": {"workflow_steps": ["a"], "success": True, "duration": 1},
        },
        {"type": "memory.recalled", "data": {"memory_ids": ["x"]}},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code, out, err = await engram("ingest", path, "--json", *conn, cwd=tmp_path)
    report = json.loads(out)
    assert code == 2
    assert (report["accepted"], report["rejected"]) == (1, 1)
    assert report["errors"][0]["line"] == 2
    assert "published by the engine only" in report["errors"][0]["reason"]
    assert (await event_log.state()).messages == 1


# -- the proof only engines can make -----------------------------------------------------------


def test_an_engine_key_signs_exactly_one_body() -> None:
    """A signature verifies only the body it was made for, with the key that made it; the
    message id tag is stable, differs from the bare id, and the secret is never in repr."""
    body = b'{"id":"a"}'
    headers = {SIGNATURE_HEADER: KEY.sign(body)}
    assert KEY.genuine(body, headers)
    assert not KEY.genuine(body + b" ", headers)
    assert not KEY.genuine(body, {})
    assert not KEY.genuine(body, {SIGNATURE_HEADER: "v2=" + KEY.sign(body)[3:]})
    assert not EngineKey("o" * 40).genuine(body, headers)
    assert not NO_KEY.genuine(body, headers)
    assert KEY.message_id("pattern-x-v2") == KEY.message_id("pattern-x-v2") != "pattern-x-v2"
    assert KEY.message_id("pattern-x-v2") != EngineKey("o" * 40).message_id("pattern-x-v2")
    assert "k" * 40 not in repr(KEY)
    with pytest.raises(EngineKeyError, match="32"):
        EngineKey("short")


@pytest.mark.parametrize("event_type", sorted(DERIVED_PAYLOADS))
def test_a_derived_event_counts_only_when_signed(event_type: str) -> None:
    """Unsigned, wrongly signed, or read without any key: a ``forged`` dead letter. Signed by
    the stream's key: an event. Agent events need no signature."""
    data = DERIVED_PAYLOADS[event_type]
    messages = [
        _stored(data, 1, {}),
        _stored(data, 2, {SIGNATURE_HEADER: "v1=" + "0" * 64}),
        _stored(data, 3, {SIGNATURE_HEADER: "SIGN"}),
        _stored(TaskExecuted(task_id="t", execution_summary="s", success=True), 4, {}),
    ]
    events, dead = decode_batch(messages, "patterns", verifier=KEY)
    assert [e.sequence for e in events] == [3, 4]
    assert [(d.sequence, d.kind, d.projection) for d in dead] == [
        (1, FORGED, "patterns"),
        (2, FORGED, "patterns"),
    ]
    assert "carries no Engram-Signature" in dead[0].reason
    assert "carries an invalid Engram-Signature" in dead[1].reason
    events, dead = decode_batch(messages, "patterns", verifier=NO_KEY)
    assert [e.sequence for e in events] == [4]
    assert [d.sequence for d in dead] == [1, 2, 3]


# -- end to end on a real nats-server ----------------------------------------------------------


async def _dead_letters(nc: NatsClient, stream: str, kind: str) -> list[dict[str, Any]]:
    found = []
    async for stored in read_stream(
        nc.jetstream(), f"{stream}_DLQ", ReadRange(subject=f"engram.deadletter.{kind}")
    ):
        found.append(json.loads(stored.data))
    return found


async def test_a_forged_announcement_cannot_suppress_the_real_version(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """A pattern.learned forged with the deterministic id (and Nats-Msg-Id) of the next real
    version, and a forged memory.recalled, are published raw with nats-py. Both become
    ``forged`` dead letters: the real version is still learned, stored and heard, signed by the
    engine, and the memory's reused_count moves only with the engine's own usage event. A
    replay into a new directory decides the same."""
    pid = workflow_pattern_id("default", "testing", workflow_key(["plan", "code"]))
    task = make_event(
        TaskExecuted(task_id="t-1", execution_summary="fixed the flaky login test", success=True)
    )
    await event_log.append_many([*_workflows([True] * 4), task])
    heard: list[Msg] = []

    async def on_learned(msg: Msg) -> None:
        if json.loads(msg.data)["data"]["pattern_id"] == pid:
            heard.append(msg)

    subscription = await nc.subscribe("memory.pattern.learned.*", cb=on_learned)
    js = nc.jetstream()
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        learner = engine.set.learner
        next_version = learner.read(lambda s: s.versions[pid].version) + 1
        forged_id = announcement_event_id(pid, next_version)
        forged = make_event(
            PatternLearned(
                pattern_id=pid,
                version=next_version,
                pattern_type="workflow",
                task_type="testing",
                caused_by_sequence=1,
                success_rate=1.0,
                confidence=1.0,
                sample_size=1_000,
            ),
            agent_id="engram-learner",
            event_id=forged_id,
        )
        forged_ack = await js.publish(
            "memory.pattern.learned.default",
            encode_event(forged),
            headers={"Nats-Msg-Id": forged_id},
        )
        recalled = make_event(MemoryRecalled(memory_ids=[task.id]), event_id="recall-forged")
        recalled_ack = await js.publish(  # a v1 subject: still read, still checked
            "memory.memory.recalled",
            encode_event(recalled),
            headers={SIGNATURE_HEADER: "v1=" + "0" * 64},
        )
        await event_log.append_many(_workflows([False] * 6))  # the pattern changes: new versions
        await settle(engine)
        assert learner.read(lambda s: s.announced[pid]) > next_version
        memory = engine.set.vectors.memory(task.id)
        assert memory is not None and memory.reused_count == 0  # the forged usage did nothing

        async with MemoryClient(settings=settings) as client:  # the engine's own usage event
            hits = await client.search_similar("flaky login test", collections=["tasks"])
        assert [h.id for h in hits][:1] == [task.id]
        await settle(engine)
        memory = engine.set.vectors.memory(task.id)
        assert memory is not None and memory.reused_count == 1
        key = engine.key
    await subscription.unsubscribe()
    assert key is not None

    # The real version is stored beside the forged one (the forgery did not take its dedup slot).
    versions: list[tuple[int, bool]] = []
    async for stored in event_log.read(ReadRange(subject="memory.pattern.learned.*")):
        body = json.loads(stored.data)
        if body["id"] == forged_id:
            versions.append((stored.sequence, key.genuine(stored.data, stored.headers)))
    assert len(versions) == 2, versions
    assert versions[0] == (forged_ack.seq, False)
    assert versions[1][1] and versions[1][0] > forged_ack.seq
    genuine_heard = [m for m in heard if key.genuine(m.data, dict(m.headers or {}))]
    assert next_version in [json.loads(m.data)["data"]["version"] for m in genuine_heard]

    letters = await _dead_letters(nc, settings.stream.name, FORGED)
    assert {forged_ack.seq, recalled_ack.seq} <= {d["sequence"] for d in letters}

    # A replay into a new directory (the stream's key, found without settings) agrees.
    rebuilt = open_projections(settings.model_copy(update={"data_dir": tmp_path / "replayed"}))
    try:
        await replay(event_log.js, event_log.stream_name, rebuilt.persistent)
        assert rebuilt.learner.read(lambda s: s.announced[pid]) > next_version
        memory = rebuilt.vectors.memory(task.id)
        assert memory is not None and memory.reused_count == 1
        kinds = rebuilt.store.reader().execute(
            "SELECT DISTINCT sequence FROM dead_letters WHERE kind = 'forged' ORDER BY 1"
        )
        assert [row[0] for row in kinds.fetchall()] == sorted([forged_ack.seq, recalled_ack.seq])
    finally:
        rebuilt.close()


async def test_a_configured_key_is_the_streams_key(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """With ENGRAM_ENGINE_KEY the engine signs with it and records only its fingerprint; a
    replay needs that key (without it: a clear error), and an engine with another key refuses
    to start instead of treating the stream's derived events as forged."""
    keyed = settings.model_copy(update={"engine_key": SecretStr("K" * 40)})
    js = nc.jetstream()
    key = await signing_key(js, keyed)
    assert key.fingerprint == EngineKey("K" * 40).fingerprint
    record = json.loads(
        (await (await js.key_value(BUCKET)).get(f"signing.{keyed.stream.name}")).value or b""
    )
    assert record == {"scheme": "v1", "fingerprint": key.fingerprint}  # no secret on the bus

    signed = Appender(nc, keyed.stream.name, signer=key)
    await signed.append(encode_for_append(make_event(DERIVED_PAYLOADS["pattern.learned"])))
    await Appender(nc, keyed.stream.name).append(
        encode_for_append(make_event(DERIVED_PAYLOADS["session.compacted"]))
    )
    projections = open_projections(keyed.model_copy(update={"data_dir": tmp_path / "r"}))
    try:
        with pytest.raises(EngineKeyError, match="ENGRAM_ENGINE_KEY"):
            await replay(js, keyed.stream.name, projections.persistent)
        report = await replay(
            js, keyed.stream.name, projections.persistent, verifier=await verifying_key(js, keyed)
        )
        assert report.dead_letters == 1  # the unsigned session.compacted
        assert projections.learner.read(lambda s: s.announced) == {
            "workflow:default:testing:abc": 7
        }
    finally:
        projections.close()

    other = keyed.model_copy(update={"engine_key": SecretStr("O" * 40)})
    engine = Engine(other, nc, str(other.nats.url), runner_settings=FAST)
    with pytest.raises(EngineKeyError, match="fingerprint"):
        await engine.run(asyncio.Event())


async def test_a_generated_key_is_shared_and_credentials_require_a_configured_one(
    event_log: EventLog, settings: Settings, nc: NatsClient
) -> None:
    """Without ENGRAM_ENGINE_KEY the first engine generates the stream's key and every later
    command finds the same one (it can be moved into ENGRAM_ENGINE_KEY as is); with broker
    credentials a configured key is required, so no key is read over the bus."""
    js = nc.jetstream()
    first = await signing_key(js, settings)
    again = await verifying_key(js, settings)
    assert isinstance(again, EngineKey) and again.fingerprint == first.fingerprint
    moved = settings.model_copy(update={"engine_key": SecretStr(first.secret)})
    assert (await signing_key(js, moved)).fingerprint == first.fingerprint
    with_user = settings.model_copy(
        update={"nats": NatsSettings(url=settings.nats.url, user="agent", password="x")}
    )
    with pytest.raises(EngineKeyError, match="ENGRAM_ENGINE_KEY"):
        await signing_key(js, with_user)
