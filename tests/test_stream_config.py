"""Only ``engram serve`` / ``engram stream apply`` create or change the stream, and they never
lower its limits unless told to; every other verb and the SDK only look it up (issue 10,
finding 4)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from engine import MemoryClient
from engine.errors import ConfigurationError, EngramError, StreamNotFoundError
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog, merge_stream_config, stream_config
from engram.cli._common import exit_code_for, settings_from_args
from engram.cli.main import build_parser

MiB = 1024 * 1024
# What an operator set on the stream: stronger than engram's defaults everywhere they compare
# (the defaults' max_age/max_bytes/max_msg_size are "no limit": that is *more*, so the operator's
# finite values are what a careless update would "raise" and a lower setting could shrink).
OPERATOR = {"duplicate_window": 600.0, "max_age": 7 * 86_400.0, "max_bytes": 64 * MiB}
LIMITS = ("num_replicas", "duplicate_window", "max_age", "max_bytes", "max_msg_size", "subjects")


def limits_of(config: StreamConfig) -> dict[str, Any]:
    return {field: getattr(config, field) for field in LIMITS}


# -- the pure decision ---------------------------------------------------------------------


def _config(**fields: Any) -> StreamConfig:
    base: dict[str, Any] = {
        "name": "S",
        "subjects": ["memory.>"],
        "num_replicas": 1,
        "duplicate_window": 120.0,
        "max_age": 0.0,
        "max_bytes": -1,
        "max_msg_size": -1,
    }
    return StreamConfig(**{**base, **fields})


@pytest.mark.parametrize(
    ("field", "existing", "wanted", "kept"),
    [
        ("num_replicas", 3, 1, True),  # R3 -> R1: the first reproduction
        ("num_replicas", 1, 3, False),
        ("num_replicas", None, 1, False),  # absent means R1: no change at all
        ("duplicate_window", 600.0, 120.0, True),  # the second reproduction
        ("duplicate_window", 120.0, 600.0, False),
        ("max_age", 3_600.0, 60.0, True),
        ("max_age", 0.0, 3_600.0, True),  # 0 is "forever": a finite age is lower
        ("max_age", 3_600.0, 0.0, False),  # ... and raising to forever is fine
        ("max_bytes", -1, 1_000, True),  # -1 is unlimited
        ("max_bytes", 0, 1_000, True),  # so is 0
        ("max_bytes", 1_000, -1, False),
        ("max_bytes", 1_000, 2_000, False),
        ("max_msg_size", -1, 4_096, True),
        ("max_msg_size", 8_192, 4_096, True),
        ("max_msg_size", 4_096, -1, False),
    ],
)
def test_merge_never_lowers_a_limit_unless_allowed(
    field: str, existing: Any, wanted: Any, kept: bool
) -> None:
    """A lower wanted limit (unlimited counting as the largest) keeps the existing value and is
    reported; a higher one is applied; allow_downgrade applies either."""
    have = _config(**{field: existing})
    want = _config(**{field: wanted})
    plan = merge_stream_config(have, want)
    if kept:
        assert getattr(plan.config, field) == existing
        assert [(k.field, k.existing, k.wanted) for k in plan.kept] == [(field, existing, wanted)]
        assert not plan.changed
        lowered = merge_stream_config(have, want, allow_downgrade=True)
        assert getattr(lowered.config, field) == wanted
        assert lowered.changed and not lowered.kept
    else:
        assert not plan.kept
        assert getattr(plan.config, field) == (wanted if plan.changed else existing)


def test_merge_reports_every_kept_field_and_keeps_what_engram_does_not_manage() -> None:
    """Several lower limits are each reported (existing vs wanted) while a raised one and new
    subjects are applied; fields engram does not set (description, max_msgs) stay as they are;
    the same settings twice change nothing."""
    have = _config(
        num_replicas=3,
        duplicate_window=600.0,
        max_bytes=10 * MiB,
        description="operator's",
        max_msgs=1_000_000,
    )
    want = _config(
        num_replicas=1, duplicate_window=120.0, max_bytes=20 * MiB, subjects=["memory.>", "x.>"]
    )
    plan = merge_stream_config(have, want)
    assert {k.field: (k.existing, k.wanted) for k in plan.kept} == {
        "num_replicas": (3, 1),
        "duplicate_window": (600.0, 120.0),
    }
    assert "num_replicas: existing 3, wanted 1" in [k.describe() for k in plan.kept]
    assert plan.changed
    assert (plan.config.num_replicas, plan.config.duplicate_window) == (3, 600.0)
    assert plan.config.max_bytes == 20 * MiB
    assert plan.config.subjects == ["memory.>", "x.>"]
    assert (plan.config.description, plan.config.max_msgs) == ("operator's", 1_000_000)
    assert not merge_stream_config(plan.config, plan.config).changed


# -- against a real server -----------------------------------------------------------------


@pytest.fixture
async def operator_stream(nc: NatsClient, stream_name: str) -> AsyncIterator[StreamConfig]:
    """This test's stream as an operator configured it (600 s duplicate window, a week's
    max_age, 64 MiB max_bytes, 512 KiB max_msg_size); deleted afterwards."""
    js = nc.jetstream()
    config = dataclasses.replace(
        stream_config(StreamSettings(name=stream_name)),
        duplicate_window=OPERATOR["duplicate_window"],
        max_age=OPERATOR["max_age"],
        max_bytes=int(OPERATOR["max_bytes"]),
        max_msg_size=512 * 1024,
    )
    info = await js.add_stream(config)
    yield info.config
    for name in (stream_name, stream_name + "_DLQ"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)


async def run_verb(*argv: str) -> tuple[int, str]:
    """``engram ARGV`` in-process (parsed by the real parser, settings from the flags only,
    errors mapped to exit codes as ``main`` does); its exit code and stdout."""
    args = build_parser().parse_args(list(argv))
    settings = settings_from_args(args, environ={})
    out = io.StringIO()
    # capture_logs: log lines stay out of the verb's stdout (structlog's default prints there).
    with contextlib.redirect_stdout(out), structlog.testing.capture_logs():
        try:
            outcome = args.handler(args, settings)
            code = outcome if isinstance(outcome, int) else await outcome
        except EngramError as exc:
            code = exit_code_for(exc)
    return code, out.getvalue()


async def test_no_client_verb_or_the_sdk_changes_an_existing_stream(
    nc: NatsClient, operator_stream: StreamConfig, nats_url: str, stream_name: str, tmp_path: Path
) -> None:
    """Every verb that reads (or appends to) the stream, and the SDK storing and asking with
    default settings, leave the operator's stream configuration exactly as it was (before,
    status alone reset the 600 s duplicate window to 120 s and the week to forever)."""
    before = limits_of(operator_stream)
    conn = ["--nats-url", nats_url, "--stream", stream_name, "--data-dir", str(tmp_path / "d")]
    event = json.dumps({"workflow_steps": ["a"], "success": True, "duration": 1.0})
    ingest_file = tmp_path / "events.jsonl"
    ingest_file.write_text(json.dumps({"type": "session.started", "data": {"session_id": "s"}}))
    verbs: list[list[str]] = [
        ["status", "--json"],
        ["publish", "workflow.executed", "--data", event, "--json"],
        ["ingest", str(ingest_file), "--json"],
        ["tail", "--json"],
        ["stream", "info", "--json"],
        ["metrics", "--json"],
        ["patterns", "--json"],
        ["best-workflow", "--task-type", "t", "--json"],
        ["search", "x", "--json"],
        ["context", "x", "--json"],
        ["task-context", "x", "--json"],
        ["sessions", "--json"],
        ["learning", "--json"],
    ]
    codes = {}
    for verb in verbs:
        codes[verb[0]], _ = await run_verb(*verb, *conn)
        after = limits_of((await nc.jetstream().stream_info(stream_name)).config)
        assert after == before, f"engram {verb[0]} changed the stream"
    # The appending and reading verbs worked against the existing stream (the query verbs find
    # no engine here, which is theirs to report: what matters is that nothing changed).
    assert [codes[v] for v in ("status", "publish", "ingest", "tail", "stream")] == [0] * 5

    settings = Settings(
        data_dir=tmp_path / "sdk",
        nats=NatsSettings(url=nats_url),
        stream=StreamSettings(name=stream_name),
    )
    async with MemoryClient(settings=settings) as memory:
        await memory.store_workflow(workflow_steps=["a"], success=True, duration=1.0)
        with contextlib.suppress(EngramError):  # no engine answers: the query is refused
            await memory.get_learning_metrics()
    info = await nc.jetstream().stream_info(stream_name)
    assert limits_of(info.config) == before
    assert info.state.messages == 3  # publish, ingest, the SDK


async def test_a_missing_stream_is_reported_not_created(
    nc: NatsClient, nats_url: str, stream_name: str, tmp_path: Path
) -> None:
    """With no stream, the SDK and the verbs that need it fail with an error naming the stream,
    the server and how to create it (CLI exit 1), and the stream still does not exist."""
    settings = Settings(
        data_dir=tmp_path / "sdk",
        nats=NatsSettings(url=nats_url),
        stream=StreamSettings(name=stream_name),
    )
    with pytest.raises(StreamNotFoundError) as refused:
        async with MemoryClient(settings=settings):
            pass
    message = str(refused.value)
    assert f"stream {stream_name} does not exist on {nats_url}" in message
    assert "engram serve" in message and "engram stream apply" in message

    conn = ["--nats-url", nats_url, "--stream", stream_name, "--data-dir", str(tmp_path / "d")]
    event = json.dumps({"workflow_steps": ["a"], "success": True, "duration": 1.0})
    for verb in (["publish", "workflow.executed", "--data", event], ["tail"], ["status"]):
        code, _ = await run_verb(*verb, *conn)
        assert code == 1, verb
    with pytest.raises(NotFoundError):
        await nc.jetstream().stream_info(stream_name)


async def test_serve_side_apply_keeps_stronger_limits_unless_allowed(
    nc: NatsClient, operator_stream: StreamConfig, stream_name: str
) -> None:
    """The engine's apply with lower settings keeps the operator's duplicate window, max_age,
    max_bytes and max_msg_size and warns once naming each (existing vs wanted); with
    allow_downgrade it lowers them; a higher setting is applied either way."""
    lower = StreamSettings(
        name=stream_name,
        duplicate_window_s=120.0,
        max_age_s=3_600.0,
        max_bytes=16 * MiB,
        max_msg_size=256 * 1024,
    )
    before = limits_of(operator_stream)
    with structlog.testing.capture_logs() as logs:
        applied = await EventLog(nc, lower).apply()
    assert applied.action == "unchanged"
    assert limits_of((await nc.jetstream().stream_info(stream_name)).config) == before
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["kept"] == {
        "duplicate_window": {"existing": "600 s", "wanted": "120 s"},
        "max_age": {"existing": "604800 s", "wanted": "3600 s"},
        "max_bytes": {"existing": "67108864", "wanted": "16777216"},
        "max_msg_size": {"existing": "524288", "wanted": "262144"},
    }

    higher = lower.model_copy(update={"duplicate_window_s": 900.0})
    raised = await EventLog(nc, higher).apply()
    assert raised.action == "updated"
    config = (await nc.jetstream().stream_info(stream_name)).config
    assert (config.duplicate_window, config.max_age, config.max_bytes) == (
        900.0,
        7 * 86_400.0,
        64 * MiB,
    )

    allowed = lower.model_copy(update={"allow_downgrade": True})
    lowered = await EventLog(nc, allowed).apply()
    assert (lowered.action, lowered.kept) == ("updated", ())
    config = (await nc.jetstream().stream_info(stream_name)).config
    assert (config.duplicate_window, config.max_age, config.max_bytes, config.max_msg_size) == (
        120.0,
        3_600.0,
        16 * MiB,
        256 * 1024,
    )


async def test_stream_apply_verb_creates_then_keeps_then_lowers_with_the_flag(
    nc: NatsClient, nats_url: str, stream_name: str, tmp_path: Path
) -> None:
    """``engram stream apply`` creates the stream with its flags' limits; run again with a
    lower duplicate window it keeps the stream's and says so (while raising max_bytes to the
    default, unlimited); with --allow-stream-downgrade it lowers the window."""
    conn = ["--nats-url", nats_url, "--stream", stream_name, "--data-dir", str(tmp_path / "d")]
    try:
        code, out = await run_verb(
            "stream", "apply", "--duplicate-window", "600", "--max-bytes", str(64 * MiB), *conn
        )
        assert code == 0
        assert f"stream {stream_name} created on {nats_url}" in out.splitlines()
        code, out = await run_verb("stream", "apply", "--duplicate-window", "60", "--json", *conn)
        reply = json.loads(out)
        # The default max_bytes (unlimited) is a raise, applied; the lower window is kept.
        assert (code, reply["action"], reply["duplicate_window"]) == (0, "updated", 600.0)
        assert reply["max_bytes"] == -1
        assert reply["kept"] == {"duplicate_window": {"existing": 600.0, "wanted": 60.0}}
        code, out = await run_verb(
            "stream",
            "apply",
            "--duplicate-window",
            "60",
            "--allow-stream-downgrade",
            "--json",
            *conn,
        )
        assert (code, json.loads(out)["action"]) == (0, "updated")
        config = (await nc.jetstream().stream_info(stream_name)).config
        assert config.duplicate_window == 60.0
    finally:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(stream_name)


def test_only_serve_and_stream_apply_take_the_downgrade_flag() -> None:
    """``--allow-stream-downgrade`` reaches the settings of serve and stream apply; no other
    verb accepts it, and without it the settings never allow a downgrade."""
    parser = build_parser()
    for argv in (["serve"], ["stream", "apply"]):
        assert settings_from_args(
            parser.parse_args([*argv, "--allow-stream-downgrade"]), environ={}
        ).stream.allow_downgrade
        assert not settings_from_args(parser.parse_args(argv), environ={}).stream.allow_downgrade
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(["status", "--allow-stream-downgrade"])


def test_a_changed_subject_prefix_does_not_silently_change_the_streams_subjects() -> None:
    """Settings that would drop a subject the stream captures (a mistyped or reused
    ENGRAM_STREAM__SUBJECT_PREFIX) are refused, naming both lists and the way out; with the
    downgrade flag the subjects change; adding a subject needs no flag."""
    have = _config(subjects=["memory.>"])
    with pytest.raises(ConfigurationError, match=r"captures \['memory.>'\].*dropping") as info:
        merge_stream_config(have, _config(subjects=["foo.>"]))
    assert "ENGRAM_STREAM__SUBJECT_PREFIX" in str(info.value)
    assert "--allow-stream-downgrade" in str(info.value)
    changed = merge_stream_config(have, _config(subjects=["foo.>"]), allow_downgrade=True)
    assert changed.config.subjects == ["foo.>"]
    wider = merge_stream_config(have, _config(subjects=["memory.>", "x.>"]))
    assert wider.config.subjects == ["memory.>", "x.>"]
