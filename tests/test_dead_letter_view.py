"""Every projection's dead letters in one place: ``engram dead-letters`` reads the dead-letter
stream and lists each (sequence, kind, projection) once, with the projection that refused it,
across engine restarts and copies republished after the duplicate window. Against a real
nats-server, a running engine and the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from consumers.deadletters import DEAD_LETTER_PREFIX
from engine import MemoryClient
from engine.settings import Settings
from engine.stream import EventLog
from tests.engines import running, settle

REPO = Path(__file__).resolve().parent.parent
EVERY_PROJECTION = {"tables", "patterns", "vectors", "sessions", "recent", "cache"}


async def dead_letters(settings: Settings, *flags: str) -> dict[str, Any]:
    """``engram dead-letters --json FLAGS`` in a subprocess, its reply parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "engram.cli.main", "dead-letters", "--json", *flags),
        "--nats-url",
        str(settings.nats.url),
        "--stream",
        settings.stream.name,
        "--data-dir",
        str(settings.data_dir / "cli"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    reply: dict[str, Any] = json.loads(out)
    return reply


def _keys(reply: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(d["sequence"], d["kind"], d["projection"]) for d in reply["dead_letters"]]


async def test_every_projections_dead_letters_are_listed_once_with_their_refuser(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """A task.executed with a 3-d embedding (only the vectors projection refuses it) and a
    malformed JSON message (every projection's decoder refuses it) are listed by
    ``engram dead-letters --json``: the first once, as vectors' dimension_mismatch; the second
    once per projection, each naming itself. After an engine restart, and after a copy is
    republished under another message id (as after the 24 h duplicate window), the list is
    the same, the copy counted as folded. Filters by projection and kind narrow it."""
    data_dir = settings.data_dir / "engine"
    async with (
        running(settings, nc, data_dir) as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1.0)
        wrong = await memory.store_execution(
            task_id="t-1", execution_summary="a 3-d vector", success=True, embedding=[0.1] * 3
        )
        ack = await event_log.js.publish(
            "memory.task.executed", b"{not json", stream=settings.stream.name
        )
        malformed = ack.seq
        await memory.store_execution(task_id="t-2", execution_summary="fine", success=True)
        await settle(engine)

    expected = sorted(
        [(wrong, "dimension_mismatch", "vectors")]
        + [(malformed, "invalid_json", p) for p in EVERY_PROJECTION]
    )
    first = await dead_letters(settings)  # the engine is stopped: the stream alone answers
    assert first["exists"] is True
    assert _keys(first) == expected, first["dead_letters"]
    assert first["total"] == len(expected) and first["collapsed"] == 0
    vectors_letter = next(d for d in first["dead_letters"] if d["sequence"] == wrong)
    assert "3-d embedding" in vectors_letter["reason"]
    assert vectors_letter["subject"] == "memory.task.executed.default"  # v2: its namespace

    # A restart re-reads the recent tier's window and republishes its dead letters.
    async with running(settings, nc, data_dir) as engine:
        await settle(engine)
        during = await dead_letters(settings)  # and the engine running changes nothing
    assert _keys(during) == expected and during["collapsed"] == 0  # JetStream dropped them

    # A copy stored again under another id (the duplicate window has passed) is folded.
    original = await event_log.js.get_msg(first["stream"], vectors_letter["dead_letter_sequence"])
    await event_log.js.publish(
        DEAD_LETTER_PREFIX + "dimension_mismatch",
        original.data or b"",
        stream=first["stream"],
        headers={"Nats-Msg-Id": "republished-after-the-window"},
    )
    again = await dead_letters(settings)
    assert _keys(again) == expected
    assert again["collapsed"] == 1

    only_vectors = await dead_letters(settings, "--projection", "vectors")
    assert _keys(only_vectors) == [
        (wrong, "dimension_mismatch", "vectors"),
        (malformed, "invalid_json", "vectors"),
    ]
    only_kind = await dead_letters(settings, "--kind", "dimension_mismatch")
    assert _keys(only_kind) == [(wrong, "dimension_mismatch", "vectors")]
    newest = await dead_letters(settings, "--limit", "1")
    assert _keys(newest) == [expected[-1]] and newest["truncated"] is True


async def test_no_dead_letter_stream_lists_nothing(settings: Settings, event_log: EventLog) -> None:
    """Before any engine created the dead-letter stream, the verb says so and lists nothing
    (it never creates a stream)."""
    reply = await dead_letters(settings)
    assert reply["exists"] is False and reply["dead_letters"] == []
    streams = await event_log.js.streams_info()
    assert settings.stream.name + "_DLQ" not in {s.config.name for s in streams}
