"""The query surface of a running engine, attacked over NATS: every request gets one bounded
reply in time, and no request can stall the engine, grow its log or fill its disk.

One engine (sql on, export left at its default) serves the whole module on the session's
nats-server; requests are sent raw, the way any NATS client can send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from consumers.queries import sandbox
from consumers.queries.dispatch import EXPORTS_DIR
from engine import MemoryClient
from engine.connection import connect
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine
from engram.cli.main import build_parser
from tests.engines import running, settle
from tests.query_subjects import raw_subject

TASK_TYPES = ["deployment_of_services", "incident_followup_work", "code_generation_review"]
BIG_TEXT = 150_000
"""Characters of each memory in namespace ``big``: a few of them make a reply over 1 MB."""


@dataclass
class Served:
    engine: Engine
    nc: NatsClient
    settings: Settings


async def _history(memory: MemoryClient) -> None:
    for i in range(12):
        await memory.store_workflow(
            task_type=TASK_TYPES[i % 3],
            workflow_steps=["plan", "ship"],
            success=i % 4 != 0,
            duration=1.0 + i,
        )
        await memory.store_execution(
            task_id=f"t-{i}",
            execution_summary=f"deploy the release {i} to production",
            success=i % 3 != 0,
            task_type=TASK_TYPES[i % 3],
        )
    for i in range(8):
        await memory.store_execution(
            task_id=f"big-{i}",
            execution_summary=f"deploy {i} " + " ".join(f"w{i}n{j}" for j in range(BIG_TEXT // 8)),
            success=True,
            namespace="big",
        )


@pytest.fixture(scope="module")
async def served(
    nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """One engine with sql on and export at its default (off), with a small history."""
    base = tmp_path_factory.mktemp("query-hardening")
    settings = Settings(
        data_dir=base / "data",
        nats=NatsSettings(url=nats_server.url),
        stream=StreamSettings(name="T_query_hardening"),
        query_sql=True,
    )
    nc = await connect(NatsSettings(), nats_server.url)
    log = EventLog(nc, settings.stream)
    await log.ensure()
    try:
        async with running(settings, nc, settings.data_dir) as engine:
            async with MemoryClient(settings=settings) as memory:
                await _history(memory)
            await settle(engine)
            yield Served(engine, nc, settings)
    finally:
        for stream in ("T_query_hardening", "T_query_hardening_DLQ"):
            with contextlib.suppress(NotFoundError):
                await log.js.delete_stream(stream)
        await nc.drain()


async def ask(
    nc: NatsClient, verb: str, payload: dict[str, Any] | bytes, wait_s: float = 5.0
) -> tuple[dict[str, Any], float, int]:
    """The engine's raw reply, the seconds it took and its size in bytes."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    started = time.perf_counter()
    msg = await nc.request(raw_subject(verb, body), body, timeout=wait_s)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply, time.perf_counter() - started, len(msg.data)


# -- 1. a user-supplied pattern cannot freeze the engine ---------------------------------------


async def test_a_catastrophic_task_type_pattern_answers_at_once_while_others_answer(
    served: Served,
) -> None:
    """``(((.+)+)+)+X`` held the whole engine for minutes under Python's re: now it answers in
    under a second, and other verbs answer meanwhile; an ordinary pattern still pools."""
    hostile = asyncio.create_task(
        ask(served.nc, "extract_pattern", {"task_type_pattern": "((((.+)+)+)+)+X"}, wait_s=5)
    )
    for _ in range(3):
        reply, took, _size = await ask(served.nc, "learning", {}, wait_s=2)
        assert reply["total_workflows_executed"] == 12 and took < 1.0
    reply, took, _size = await hostile
    assert reply.pop("consistency")["stale"] is False
    assert reply == {"pattern": None} and took < 1.0

    reply, _took, _size = await ask(
        served.nc,
        "extract_pattern",
        {"task_type_pattern": ".*_(of|followup)_.*", "pattern_type": "workflow", "min_samples": 1},
    )
    assert reply["pattern"]["task_types"] == ["deployment_of_services", "incident_followup_work"]
    reply, _took, _size = await ask(served.nc, "extract_pattern", {"task_type_pattern": "(a)\\1"})
    assert reply["kind"] == "usage" and "backreference" in reply["error"]


# -- 2. replies fit in one message; requests and sql are bounded --------------------------------


async def test_a_reply_over_max_payload_is_an_error_naming_its_size(served: Served) -> None:
    """A search whose hits exceed the server's max_payload is answered with a usage error
    saying how large the reply was and what to lower (it used to vanish: a timeout)."""
    reply, took, size = await ask(
        served.nc, "search", {"text": "deploy", "namespace": "big", "top_k": 8}
    )
    assert reply["kind"] == "usage", reply
    assert "lower top_k" in reply["error"] and "max_payload" in reply["error"]
    assert took < 5.0 and size < 1_000
    reply, _took, size = await ask(
        served.nc, "search", {"text": "deploy", "namespace": "big", "top_k": 2}
    )
    assert len(reply["hits"]) == 2 and size <= served.nc.max_payload


async def test_sql_is_cut_to_fit_one_message_and_its_limit_is_bounded(served: Served) -> None:
    """A large result comes back cut to one message and marked truncated; a limit above
    10,000 is refused; a statement producing gigabytes is read only as far as needed."""
    wide = "SELECT repeat('x', 1000) AS pad, range AS i FROM range(5000)"
    reply, _took, size = await ask(served.nc, "sql", {"sql": wide})
    assert reply["truncated"] is True and "max_payload" in reply["note"]
    assert 100 < len(reply["rows"]) < 5000
    assert size <= served.nc.max_payload
    assert [row["i"] for row in reply["rows"]] == list(range(len(reply["rows"])))

    reply, _took, _size = await ask(served.nc, "sql", {"sql": "SELECT 1", "limit": 10_001})
    assert reply["kind"] == "usage" and "limit must be between 1 and 10000" in reply["error"]

    huge = "SELECT repeat('x', 100000) AS pad FROM range(100000)"  # 10 GB if read whole
    reply, took, _size = await ask(served.nc, "sql", {"sql": huge}, wait_s=20)
    assert reply["truncated"] is True and 0 < len(reply["rows"]) < 100
    assert took < 15


@pytest.mark.parametrize(
    ("verb", "payload", "named"),
    [
        ("task_context", {"task_description": "deploy", "task_type": "q" * 900_000}, "task_type"),
        ("search", {"text": "deploy", "namespace": "n" * 300}, "namespace has 300 characters"),
        ("task_context", {"task_description": "d" * 100_000}, "task_description has 100,000"),
        ("search", {"text": "t" * 70_000}, "text has 70,000 characters"),
        ("extract_pattern", {"task_type_pattern": "a" * 300}, "at most 256"),
        ("metrics", {"task_type": "x" * 257}, "task_type has 257 characters"),
    ],
)
async def test_over_long_parameters_are_refused_naming_them(
    served: Served, verb: str, payload: dict[str, Any], named: str
) -> None:
    """Identifiers over 256 characters and texts over 64 KB are usage errors naming the
    parameter (a 900 KB task_type used to get no reply at all)."""
    reply, took, _size = await ask(served.nc, verb, payload)
    assert reply["kind"] == "usage", reply
    assert named in reply["error"] and took < 5.0


# -- 3. read-only queries do not grow the log with what they ask -------------------------------


async def _stream_growth(served: Served, description: str, times: int) -> int:
    before = (await served.engine.log.state()).bytes
    for i in range(times):
        reply, _took, _size = await ask(
            served.nc,
            "task_context",
            {"task_description": f"{description} {i}", "task_type": TASK_TYPES[0]},
        )
        assert reply["patterns"], "the task type has patterns: pattern.matched is recorded too"
    await settle(served.engine)
    return (await served.engine.log.state()).bytes - before


async def test_usage_events_record_an_excerpt_not_the_whole_query(served: Served) -> None:
    """task_context with a 60 KB description adds hardly more to the stream than with a short
    one (usage events carry its first 200 characters, not up to 10,000), a few KB a request."""
    short = await _stream_growth(served, "deploy the release", 5)
    long = await _stream_growth(served, "deploy the release " + "y" * 60_000, 5)
    assert long - short < 5 * 1_000, (short, long)
    assert long < 5 * 5_000


# -- 4. export is an operator verb --------------------------------------------------------------


async def test_export_over_nats_is_off_unless_enabled(served: Served) -> None:
    """By default an engine refuses a remote export, saying how to enable it, and writes
    nothing; ENGRAM_QUERY_EXPORT=true and engram serve --enable-export turn it on."""
    for payload in ({"to": "nightly"}, {"to": "n" * 300}, {}):
        reply, _took, _size = await ask(served.nc, "export", payload)
        assert reply["kind"] == "forbidden", reply
        assert "--enable-export" in reply["error"]
        assert "ENGRAM_QUERY_EXPORT=true" in reply["error"]
    assert not (served.settings.data_dir / EXPORTS_DIR).exists()
    assert Settings().query_export is False
    assert Settings.load({"ENGRAM_QUERY_EXPORT": "true"}).query_export is True
    assert build_parser().parse_args(["serve", "--enable-export"]).enable_export is True
    assert not build_parser().parse_args(["serve"]).enable_export


# -- 5. every bad request gets an error reply ---------------------------------------------------

NESTED = b"[" * 100_000 + b"]" * 100_000

HOSTILE: list[tuple[str, bytes, str]] = [
    ("search", b'{"text":"deploy","top_k":Infinity}', "Infinity"),
    ("search", b'{"text":"deploy","top_k":NaN}', "NaN"),
    ("search", b'{"text":"deploy","similarity_threshold":-Infinity}', "-Infinity"),
    ("search", b'{"text":"deploy","top_k":1e400}', "overflows"),
    ("search", b'{"text":"deploy","top_k":1e308}', "top_k must be between 1 and 1000"),
    ("search", b'{"text":"deploy","top_k":-5}', "top_k must be between 1 and 1000"),
    ("search", b'{"text":"deploy","top_k":1' + b"0" * 5_000 + b"}", "not JSON"),
    ("assemble_context", b'{"task_description":"deploy","tiers":[[1]]}', "tiers"),
    ("extract_pattern", b'{"task_type_pattern":".*","min_samples":-5,"namespace":"e"}', "min"),
    ("extract_pattern", b'{"task_type_pattern":"(?P<a>x)(?P=b)"}', "(?"),
    ("metrics", NESTED, "nested too deeply"),
    ("metrics", b'{"namespace":' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}", "nested"),
    ("metrics", b"not json", "not JSON"),
    ("metrics", b"[]", "must be a JSON object, got an array"),
    ("metrics", b'{"namespace":["a"]}', "namespace must be a string"),
    ("sessions", b'{"limit":"1"}', "limit"),
    ("search", b'{"text":"deploy","success_only":"false"}', "success_only must be true or false"),
    ("best_workflow", b'{"task_type":"x","optimization_target":"__class__"}', "optimization"),
]


async def test_every_hostile_request_gets_an_error_reply_naming_the_problem(
    served: Served,
) -> None:
    """Each request gets a usage error within the timeout that names what is wrong (NaN,
    Infinity, deep nesting, a bad tiers list, min_samples below 1 used to get no reply at all);
    the engine answers an ordinary query afterwards."""
    for verb, body, named in HOSTILE:
        reply, took, _size = await ask(served.nc, verb, body)
        assert reply.get("kind") == "usage", (verb, body[:60], reply)
        assert named in reply["error"], (verb, body[:60], reply)
        assert took < 5.0
    reply, _took, _size = await ask(served.nc, "metrics", {})
    assert {row["task_type"] for row in reply["metrics"]} == set(TASK_TYPES)


async def test_an_unexpected_failure_is_answered_and_logged_once_with_the_verb(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler failing for a reason nobody planned for answers ``kind: failure`` and is
    logged once, with the verb and the error, never with the request's content."""
    learner = served.engine.set.learner

    def broken(_query: Any) -> Any:
        raise RuntimeError("the learner's state is unreadable")

    monkeypatch.setattr(learner, "read", broken)
    with structlog.testing.capture_logs() as logs:
        reply, _took, _size = await ask(
            served.nc, "patterns", {"task_type": "secret-task-type-4711"}
        )
    assert reply["kind"] == "failure"
    assert "RuntimeError: the learner's state is unreadable" in reply["error"]
    failures = [e for e in logs if e.get("verb") == "patterns"]
    assert len(failures) == 1 and failures[0]["log_level"] == "error", logs
    assert "secret-task-type-4711" not in json.dumps(logs, default=str)


# -- 6. one slow request does not hold up the next of its verb ---------------------------------


async def test_a_second_sql_is_refused_at_once_while_a_slow_one_runs(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a long statement runs, another sql is refused at once with the documented
    message (it used to wait in line behind it), and other verbs answer."""
    monkeypatch.setattr(sandbox, "SQL_TIMEOUT_S", 2.5)
    slow = asyncio.create_task(
        ask(served.nc, "sql", {"sql": "SELECT count(*) FROM range(1000000000000)"}, wait_s=10)
    )
    await asyncio.sleep(0.5)
    reply, took, _size = await ask(served.nc, "sql", {"sql": "SELECT 1 AS one"}, wait_s=5)
    assert "another sql statement is running" in reply.get("error", ""), reply
    assert took < 1.0
    reply, took, _size = await ask(served.nc, "metrics", {}, wait_s=5)
    assert reply["metrics"] and took < 1.0
    reply, _took, _size = await slow
    assert "ran longer than 2.5 s" in reply["error"]


async def test_a_slow_search_does_not_hold_up_the_next_search(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches are answered side by side: one taking 2 s does not delay another."""
    vectors = served.engine.set.vectors
    real = vectors.search

    def search(**kwargs: Any) -> Any:
        if kwargs.get("text") == "slow":
            time.sleep(2.0)
        return real(**kwargs)

    monkeypatch.setattr(vectors, "search", search)
    slow = asyncio.create_task(ask(served.nc, "search", {"text": "slow"}, wait_s=10))
    await asyncio.sleep(0.3)
    reply, took, _size = await ask(served.nc, "search", {"text": "deploy release"}, wait_s=5)
    assert reply["hits"] and took < 1.0
    reply, took, _size = await slow
    assert "hits" in reply and took >= 2.0
