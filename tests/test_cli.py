"""The ``engram`` CLI end to end: real subprocesses against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine import MemoryClient
from engine.events import SessionStarted, WorkflowExecuted, encode_event, make_event
from engine.server import RECORD_FILE
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog
from tests.cli_runs import ENGRAM, cli_env, engram

WORKFLOW = {"workflow_steps": ["plan", "code"], "success": True, "duration": 1.5}


@pytest.fixture
async def stream(nc: NatsClient, stream_name: str) -> AsyncIterator[str]:
    """This test's stream, created as ``engram serve`` would (the verbs only look it up); it
    and its dead-letter stream are deleted afterwards (every stream captures memory.>, so two
    cannot coexist on the session server)."""
    await EventLog(nc, StreamSettings(name=stream_name)).ensure()
    yield stream_name
    js = nc.jetstream()
    for name in (stream_name, stream_name + "_DLQ"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(name)


@pytest.fixture
def conn(nats_url: str, stream: str, tmp_path: Path) -> list[str]:
    """The flags that point a verb at the session server and this test's stream."""
    return ["--nats-url", nats_url, "--stream", stream, "--data-dir", str(tmp_path / "cli")]


# -- publish ---------------------------------------------------------------------------------


async def test_publish_prints_the_sequence_and_stores_a_retry_once(
    conn: list[str], tmp_path: Path
) -> None:
    """publish prints the sequence; --json gives id, sequence and duplicate; the same --id
    published again is stored once and the reply says duplicate."""
    data = json.dumps(WORKFLOW)
    first = await engram(
        "publish", "workflow.executed", "--data", data, "--id", "retry-1", *conn, cwd=tmp_path
    )
    assert first.code == 0, first.err
    assert first.out == "stored workflow.executed retry-1 at sequence 1\n"

    again = await engram(
        "publish",
        "workflow.executed",
        "--data",
        data,
        "--id",
        "retry-1",
        "--json",
        *conn,
        cwd=tmp_path,
    )
    assert again.code == 0, again.err
    assert again.json() == {"id": "retry-1", "sequence": 1, "duplicate": True}

    other = await engram(
        "publish",
        "session.started",
        "--data",
        '{"session_id": "s-1"}',
        "--session-id",
        "s-1",
        "--json",
        *conn,
        cwd=tmp_path,
    )
    assert other.code == 0, other.err
    reply = other.json()
    assert (reply["sequence"], reply["duplicate"]) == (2, False)
    assert reply["id"] not in ("", "retry-1")

    events = (await engram("tail", "--json", *conn, cwd=tmp_path)).json_lines()
    assert [e["event"]["id"] for e in events] == ["retry-1", reply["id"]]
    assert events[1]["event"]["session_id"] == "s-1"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["workflow.executed", "--data", "{not json"], "--data is not JSON"),
        (
            ["workflow.executed", "--data", '{"workflow_steps": ["a"], "duration": 1}'],
            "data.success",
        ),
        (
            [
                "workflow.executed",
                "--data",
                '{"workflow_steps": "a", "success": true, "duration": 1}',
            ],
            "data.workflow_steps",
        ),
        (
            ["workflow.executed", "--data", json.dumps({**WORKFLOW, "duration": -1})],
            "data.duration",
        ),
        *(
            (
                ["workflow.executed", "--data", json.dumps(WORKFLOW), "--namespace", namespace],
                "namespace: String should match pattern '^[A-Za-z0-9_\\-]{1,64}$'",
            )
            for namespace in ("a.b", "a*", "a>", "a b")
        ),
    ],
    ids=[
        "bad-json",
        "missing-field",
        "wrong-type",
        "out-of-range",
        *("ns-dot", "ns-star", "ns-gt", "ns-space"),
    ],
)
async def test_publish_bad_input_exits_2_naming_the_field(
    args: list[str], needle: str, conn: list[str], stream: str, nc: NatsClient, tmp_path: Path
) -> None:
    """Bad JSON or an invalid field exits 2 with one stderr line naming it, before anything
    is sent (the stream stays empty); a namespace that is not one subject token (a dot, a
    wildcard, a space) is refused naming the allowed pattern."""
    result = await engram("publish", *args, *conn, cwd=tmp_path)
    assert (await nc.jetstream().stream_info(stream)).state.messages == 0
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("engram: ")
    assert needle in lines[0]


async def test_publish_unknown_type_exits_2(conn: list[str], tmp_path: Path) -> None:
    """An unknown event type is refused with exit 2 and the known types listed."""
    result = await engram("publish", "workflow.exploded", "--data", "{}", *conn, cwd=tmp_path)
    assert result.code == 2
    assert "workflow.exploded" in result.err
    assert "workflow.executed" in result.err
    assert result.out == ""


# -- ingest ----------------------------------------------------------------------------------


INGEST_LINES = [
    json.dumps({"id": "ev-1", "type": "workflow.executed", "namespace": "a", "data": WORKFLOW}),
    "",
    '{"type": "workflow.executed", "data": {',
    json.dumps(
        {
            "id": "ev-4",
            "type": "workflow.executed",
            "data": {"workflow_steps": ["x"], "duration": 2},
        }
    ),
    json.dumps({"id": "ev-5", "type": "workflow.exploded", "data": {}}),
    "   ",
    json.dumps(
        {
            "id": "ev-7",
            "type": "session.started",
            "session_id": "s-1",
            "data": {"session_id": "s-1"},
        }
    ),
    "[1, 2]",
    json.dumps(
        {
            "id": "ev-9",
            "type": "task.executed",
            "data": {"task_id": "t-1", "execution_summary": "ran", "success": "maybe"},
        }
    ),
]


async def test_ingest_reports_accepted_and_rejected_lines(conn: list[str], tmp_path: Path) -> None:
    """ingest stores the good lines, names each bad line and its reason, ignores blank lines,
    exits 2 when any line was rejected; re-ingesting stores nothing twice."""
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(INGEST_LINES) + "\n")

    text = await engram("ingest", path, *conn, cwd=tmp_path)
    assert text.code == 2
    lines = text.out.splitlines()
    assert lines[0] == "accepted 2 (of which 0 already stored), rejected 5"
    assert lines[1].startswith("  line 3: not JSON")
    assert lines[2].startswith("  line 4: ")
    assert "data.success" in lines[2]
    assert lines[3].startswith("  line 5: ")
    assert "workflow.exploded" in lines[3]
    assert lines[4].startswith("  line 8: ")
    assert "not an object" in lines[4]
    assert lines[5].startswith("  line 9: ")
    assert "data.success" in lines[5]
    assert len(lines) == 6

    again = await engram("ingest", path, "--json", *conn, cwd=tmp_path)
    assert again.code == 2
    report = again.json()
    assert report["accepted"] == 2
    assert report["duplicates"] == 2
    assert report["rejected"] == 5
    assert [e["line"] for e in report["errors"]] == [3, 4, 5, 8, 9]
    assert "not JSON" in report["errors"][0]["reason"]
    assert "required" in report["errors"][1]["reason"]
    assert "unknown event type" in report["errors"][2]["reason"]

    stored = (await engram("tail", "--json", *conn, cwd=tmp_path)).json_lines()
    assert [(e["sequence"], e["event"]["id"]) for e in stored] == [(1, "ev-1"), (2, "ev-7")]
    assert stored[0]["event"]["namespace"] == "a"
    assert stored[1]["event"]["session_id"] == "s-1"


async def test_ingest_of_only_good_lines_exits_0(conn: list[str], tmp_path: Path) -> None:
    """A file with only valid lines is all accepted with exit 0; a missing file exits 2."""
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(INGEST_LINES[i] for i in (0, 6)) + "\n")
    result = await engram("ingest", path, "--json", *conn, cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.json() == {"accepted": 2, "duplicates": 0, "rejected": 0, "errors": []}

    missing = await engram("ingest", tmp_path / "nope.jsonl", *conn, cwd=tmp_path)
    assert missing.code == 2
    assert "cannot read" in missing.err
    assert "nope.jsonl" in missing.err


# -- tail ------------------------------------------------------------------------------------


async def test_tail_filters_and_stops_at_the_end(
    conn: list[str], settings: Settings, tmp_path: Path
) -> None:
    """tail --json prints one object per event in order; --from-seq and --type filter; it
    exits 0 at the end of the stream."""
    empty = await engram("tail", "--json", *conn, cwd=tmp_path)
    assert (empty.code, empty.out) == (0, "")

    async with MemoryClient(settings=settings) as memory:
        await memory.start_session("s-1")
        await memory.store_workflow(workflow_steps=["a"], success=True, duration=1.0)
        await memory.store_workflow(workflow_steps=["b"], success=False, duration=2.0)
        await memory.end_session("s-1", success=False)

    everything = await engram("tail", "--json", *conn, cwd=tmp_path)
    assert everything.code == 0, everything.err
    entries = everything.json_lines()
    assert [e["sequence"] for e in entries] == [1, 2, 3, 4]
    assert [e["event"]["type"] for e in entries] == [
        "session.started",
        "workflow.executed",
        "workflow.executed",
        "session.ended",
    ]
    assert entries[1]["subject"] == "memory.workflow.executed.default"
    assert entries[1]["event"]["data"]["workflow_steps"] == ["a"]

    typed = await engram(
        "tail", "--json", "--type", "workflow.executed", "--from-seq", "3", *conn, cwd=tmp_path
    )
    assert [(e["sequence"], e["event"]["data"]["success"]) for e in typed.json_lines()] == [
        (3, False)
    ]

    human = await engram("tail", "--type", "session.ended", *conn, cwd=tmp_path)
    assert human.out.startswith("#4 ")
    assert "session.ended" in human.out


async def test_tail_by_type_shows_its_v1_and_v2_events(
    nc: NatsClient, conn: list[str], stream: str, tmp_path: Path
) -> None:
    """tail --type T shows T's events on the v1 subject (memory.T, from before wire contract
    v2) and on v2 subjects (memory.T.<namespace>) of every namespace, in stream order, and no
    other type's."""
    js = nc.jetstream()
    for n, (subject, namespace) in enumerate(
        [
            ("memory.workflow.executed", "alpha"),
            ("memory.workflow.executed.beta", "beta"),
            ("memory.session.started.beta", "beta"),
            ("memory.workflow.executed.alpha", "alpha"),
        ]
    ):
        event = make_event(
            SessionStarted(session_id="s")
            if subject.startswith("memory.session")
            else WorkflowExecuted(**WORKFLOW),
            namespace=namespace,
            event_id=f"e-{n}",
        )
        await js.publish(subject, encode_event(event), stream=stream)
    typed = await engram("tail", "--json", "--type", "workflow.executed", *conn, cwd=tmp_path)
    assert typed.code == 0, typed.err
    assert [(e["sequence"], e["subject"]) for e in typed.json_lines()] == [
        (1, "memory.workflow.executed"),
        (2, "memory.workflow.executed.beta"),
        (4, "memory.workflow.executed.alpha"),
    ]


async def test_plain_nats_client_event_is_readable_with_tail(
    nc: NatsClient, conn: list[str], stream: str, tmp_path: Path
) -> None:
    """A hand-written envelope published with nats-py (not the SDK) on its v2 subject
    (memory.<type>.<namespace>) and a Nats-Msg-Id header (<namespace>:<id>, as the README's
    example) is stored once and read back by tail --json; status counts it."""
    created = await engram("status", "--json", *conn, cwd=tmp_path)
    assert created.code == 0, created.err
    fresh = created.json()
    assert fresh["stream"] == stream
    assert fresh["subjects"] == ["memory.>"]
    assert (fresh["messages"], fresh["first_sequence"], fresh["last_sequence"]) == (0, 0, 0)

    envelope = {
        "id": "0193a6f0-6c1e-7cc2-9d1a-3f2b9c1d4e5f",
        "type": "workflow.executed",
        "schema_version": 1,
        "namespace": "default",
        "occurred_at": "2026-11-20T12:00:00Z",
        "agent_id": "planner-1",
        "session_id": "session_abc123",
        "data": {
            "task_type": "code_generation",
            "request": "write a parser",
            "workflow_steps": ["plan", "code", "test"],
            "success": True,
            "duration": 42.5,
            "cost": 0.12,
        },
    }
    js = nc.jetstream()
    body = json.dumps(envelope).encode()
    headers = {"Nats-Msg-Id": f"default:{envelope['id']}"}
    ack = await js.publish("memory.workflow.executed.default", body, headers=headers)
    retry = await js.publish("memory.workflow.executed.default", body, headers=headers)
    assert ack.stream == stream
    assert (ack.seq, retry.seq, retry.duplicate) == (1, 1, True)

    tail = await engram("tail", "--json", *conn, cwd=tmp_path)
    assert tail.code == 0, tail.err
    [entry] = tail.json_lines()
    assert entry["sequence"] == 1
    event = entry["event"]
    assert event["id"] == envelope["id"]
    assert event["agent_id"] == "planner-1"
    assert event["session_id"] == "session_abc123"
    assert event["occurred_at"].startswith("2026-11-20T12:00:00")
    assert event["data"]["workflow_steps"] == ["plan", "code", "test"]
    assert event["data"]["duration"] == 42.5

    status = (await engram("status", "--json", *conn, cwd=tmp_path)).json()
    assert (status["messages"], status["first_sequence"], status["last_sequence"]) == (1, 1, 1)
    assert status["bytes"] >= len(body)
    assert status["engine"] == "stopped"


# -- schema, failures ------------------------------------------------------------------------


async def test_schema_prints_json_schema(tmp_path: Path) -> None:
    """schema prints every type's JSON Schema, or one type's; an unknown type exits 2."""
    every = await engram("schema", "--json", cwd=tmp_path)
    assert every.code == 0, every.err
    schemas = every.json()
    assert "workflow.executed" in schemas
    assert "session.started" in schemas
    assert "pattern.learned" in schemas
    assert len(schemas) >= 11

    one = await engram("schema", "workflow.executed", cwd=tmp_path)
    assert one.code == 0, one.err
    schema = one.json()
    assert {"id", "type", "data", "occurred_at"} <= set(schema["properties"])
    assert "WorkflowExecuted" in json.dumps(schema["$defs"])

    unknown = await engram("schema", "workflow.exploded", cwd=tmp_path)
    assert unknown.code == 2
    assert unknown.out == ""
    assert "unknown event type 'workflow.exploded'" in unknown.err


async def test_server_down_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    """A NATS server that is down makes a verb exit 1 with one line naming the URL."""
    result = await engram(
        "status",
        "--json",
        "--nats-url",
        "nats://127.0.0.1:1",
        "--data-dir",
        tmp_path / "d",
        cwd=tmp_path,
    )
    assert result.code == 1
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert lines == [
        "engram: cannot reach NATS at nats://127.0.0.1:1: no server answered (is it running?)"
    ]


async def test_embedded_default_publish_and_tail(tmp_path: Path) -> None:
    """With no --nats-url the CLI starts nats-server under --data-dir, stores the event there
    and stops the server; the next verb finds the same store. publish does not create the
    stream (exit 1 saying how to); ``engram stream apply`` does."""
    data = tmp_path / "data"
    missing = await engram(
        "publish",
        "workflow.executed",
        "--data",
        json.dumps(WORKFLOW),
        "--data-dir",
        data,
        cwd=tmp_path,
    )
    assert missing.code == 1
    assert "stream ENGRAM does not exist" in missing.err
    assert "engram stream apply" in missing.err
    applied = await engram("stream", "apply", "--json", "--data-dir", data, cwd=tmp_path)
    assert applied.code == 0, applied.err
    assert applied.json()["action"] == "created"
    published = await engram(
        "publish",
        "workflow.executed",
        "--data",
        json.dumps(WORKFLOW),
        "--json",
        "--data-dir",
        data,
        cwd=tmp_path,
    )
    assert published.code == 0, published.err
    assert published.json()["sequence"] == 1
    assert (data / "nats" / "jetstream").is_dir()
    assert not (data / "nats" / RECORD_FILE).exists()  # the server was stopped on exit

    tail = await engram("tail", "--json", "--data-dir", data, cwd=tmp_path)
    assert tail.code == 0, tail.err
    [entry] = tail.json_lines()
    assert entry["event"]["id"] == published.json()["id"]
    assert entry["event"]["data"]["workflow_steps"] == ["plan", "code"]


# -- projections: serve, metrics, sql, export, replay ----------------------------------------


# (namespace, task_type, success, duration, cost); sequence = position + 1.
WORKFLOWS = [
    ("a", "code_generation", True, 10.0, 1.0),
    ("a", "code_generation", False, 20.0, 3.0),
    ("b", "testing", True, 5.0, None),
    ("a", "testing", True, 4.0, 0.5),
    ("a", "code_generation", True, 30.0, 2.0),
    ("b", "code_generation", False, 8.0, 1.0),
]
UNTIL = 4


def metric_rows(reply: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {
        (m["namespace"], m["task_type"]): (
            m["total_executions"],
            m["successful_executions"],
            pytest.approx(m["success_rate"]),
            pytest.approx(m["avg_duration"]),
            None if m["avg_cost"] is None else pytest.approx(m["avg_cost"]),
        )
        for m in reply["metrics"]
    }


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


async def _serving(proc: asyncio.subprocess.Process, log_path: Path) -> None:
    """Wait until ``engram serve`` says its engine runs (so status never races its start)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "engine running" in _text(log_path):
            return
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"engram serve did not start: {_text(log_path)}")


async def _status_until_caught_up(conn: list[str], cwd: Path, last: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = await engram("status", "--json", *conn, cwd=cwd)
        assert run.code == 0, run.err
        status = run.json()
        tables = status.get("projections", {}).get("tables")
        if (
            status.get("engine") == "running"
            and tables is not None
            and tables["last_sequence"] == last
            and tables["lag"] == 0
        ):
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"the engine did not catch up: {status}")


@pytest.mark.slow
async def test_serve_queries_export_and_replay(
    nats_url: str, stream: str, settings: Settings, tmp_path: Path
) -> None:
    """Through a running engine: metrics per namespace, read-only sql, Parquet export at the
    stream's sequence; then replay rebuilds the same metrics, and --until-seq the earlier ones."""
    engine_dir = tmp_path / "engine"
    conn = ["--nats-url", nats_url, "--stream", stream, "--data-dir", str(engine_dir)]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        serve = await asyncio.create_subprocess_exec(
            *ENGRAM,
            "serve",
            "--enable-sql",  # operator verbs: off over NATS unless enabled
            "--enable-export",
            *conn,
            cwd=tmp_path,
            env=cli_env(),
            stdout=log_file,
            stderr=log_file,
        )
    try:
        await _serving(serve, log_path)
        async with MemoryClient(settings=settings) as memory:
            for namespace, task_type, success, duration, cost in WORKFLOWS:
                await memory.store_workflow(
                    task_type=task_type,
                    workflow_steps=[task_type, "check"],
                    success=success,
                    duration=duration,
                    cost=cost,
                    namespace=namespace,
                )
        # Three runs of one workflow in namespace a make a pattern: the engine announces it
        # (one memory.pattern.learned), so the stream holds one event more than was published.
        last = len(WORKFLOWS) + 1
        status = await _status_until_caught_up(conn, tmp_path, last=last)
        assert status["stream"] == stream
        assert status["projections"]["tables"]["checkpoint"] == last

        only_a = await engram("metrics", "--json", "--namespace", "a", *conn, cwd=tmp_path)
        assert only_a.code == 0, only_a.err
        assert metric_rows(only_a.json()) == {
            ("a", "code_generation"): (3, 2, 2 / 3, 20.0, 2.0),
            ("a", "testing"): (1, 1, 1.0, 4.0, 0.5),
        }
        live = (await engram("metrics", "--json", *conn, cwd=tmp_path)).json()
        # An engine's answer says what it reflects; a data directory's has nothing to say.
        assert live.pop("consistency")["stale"] is False
        assert metric_rows(live) == {
            **metric_rows(only_a.json()),
            ("b", "testing"): (1, 1, 1.0, 5.0, None),
            ("b", "code_generation"): (1, 0, 0.0, 8.0, 1.0),
        }

        sql = await engram(
            "sql", "SELECT count(*) AS n FROM workflows", "--json", *conn, cwd=tmp_path
        )
        assert sql.code == 0, sql.err
        answer = sql.json()
        assert answer.pop("consistency")["stale"] is False  # what the tables had applied
        assert answer == {"columns": ["n"], "rows": [{"n": 6}], "truncated": False}
        refused = await engram("sql", "DELETE FROM workflows", *conn, cwd=tmp_path)
        assert refused.code == 2
        assert "read-only" in refused.err

        # Asked of the engine, an export is written under its <data dir>/exports only.
        export_dir = (engine_dir / "exports" / "export").resolve()
        exported = await engram("export", "--to", "export", "--json", *conn, cwd=tmp_path)
        assert exported.code == 0, exported.err
        manifest = json.loads((export_dir / "manifest.json").read_text())
        written = exported.json()
        assert written.pop("consistency") == {"sequence": last, "stale": False}
        assert {**manifest, "location": str(export_dir)} == written
        assert manifest["sequence"] == status["last_sequence"] == last
        for name, info in manifest["tables"].items():
            table = pq.read_table(export_dir / info["path"])
            assert table.num_rows == info["rows"], name
        workflows = pq.read_table(export_dir / manifest["tables"]["workflows"]["path"])
        assert workflows.num_rows == len(WORKFLOWS)
        namespaces = sorted(map(str, workflows.column("namespace").to_pylist()))
        assert namespaces == ["a"] * 4 + ["b"] * 2
        assert sorted(workflows.column("duration").to_pylist()) == sorted(w[3] for w in WORKFLOWS)

        # A point-in-time directory is read directly even with a NATS URL given and an engine
        # answering queries: its own state, not the engine's.
        earlier_dir = tmp_path / "earlier"
        earlier = await engram(
            "replay",
            "--json",
            "--until-seq",
            str(UNTIL),
            *conn[:4],
            "--data-dir",
            earlier_dir,
            cwd=tmp_path,
        )
        assert earlier.code == 0, earlier.err
        assert (earlier.json()["messages"], earlier.json()["last_sequence"]) == (UNTIL, UNTIL)
        as_of = await engram(
            "metrics", "--json", *conn[:4], "--data-dir", earlier_dir, cwd=tmp_path
        )
        assert as_of.code == 0, as_of.err
        assert metric_rows(as_of.json()) == {
            ("a", "code_generation"): (2, 1, 0.5, 15.0, 2.0),
            ("a", "testing"): (1, 1, 1.0, 4.0, 0.5),
            ("b", "testing"): (1, 1, 1.0, 5.0, None),
        }
    finally:
        if serve.returncode is None:
            serve.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(serve.wait(), 20)
        except TimeoutError:
            serve.kill()
            await serve.wait()
    assert serve.returncode == 0, _text(log_path)
    assert "projection failed" not in _text(log_path)  # an idle fetch is not a failure

    replayed_dir = tmp_path / "replayed"
    replayed = await engram("replay", "--json", *conn[:4], "--data-dir", replayed_dir, cwd=tmp_path)
    assert replayed.code == 0, replayed.err
    assert replayed.json()["messages"] == len(WORKFLOWS) + 1  # with the pattern.learned
    assert replayed.json()["dead_letters"] == 0

    direct = await engram("metrics", "--json", "--data-dir", replayed_dir, cwd=tmp_path)
    assert direct.code == 0, direct.err
    assert direct.json() == live
    stopped_engine = await engram("metrics", "--json", "--data-dir", engine_dir, cwd=tmp_path)
    assert stopped_engine.json() == live
