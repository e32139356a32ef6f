"""The verb catalogue is the engine's contract: a running engine answers exactly the catalogued
verbs, validates each request with the verb's request model (errors naming the parameter), and
answers with what the verb's reply model describes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from consumers.queries.dispatch import QueryDispatcher
from engine import MemoryClient
from engine.connection import connect
from engine.errors import UsageError
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engine.verbs import CATALOGUE, validate_request
from engine.verbs.requests import (
    BestWorkflowRequest,
    PatternsRequest,
    SearchRequest,
    SqlRequest,
    TaskContextRequest,
)
from engram.app import Engine
from tests.engines import running, settle

MINIMAL: dict[str, dict[str, Any]] = {
    "status": {},
    "checkpoints": {},
    "metrics": {},
    "workflows": {"namespace": "default"},
    "sql": {"sql": "SELECT count(*) AS n FROM workflows"},
    "export": {"to": "nightly"},
    "patterns": {"min_success_rate": 0.0},
    "best_workflow": {"task_type": "deployment"},
    "task_metrics": {},
    "search_patterns": {},
    "list_patterns": {},
    "learning": {},
    "extract_pattern": {"task_type_pattern": ".*deploy.*", "min_samples": 1},
    "sessions": {},
    "search": {"text": "deploy the release"},
    "task_context": {"task_description": "deploy the release"},
    "assemble_context": {"task_description": "deploy the release", "max_tokens": 200},
    "items_get": {"path": ["users", "u1"], "keys": ["prefs"]},
    "items_search": {"prefix": ["users"], "query": "dark theme"},
    "items_namespaces": {"prefix": ["users"]},
    "cache_lookup": {"prompt": "how do I deploy the release?"},
}
"""A valid request for every verb (the test below fails when a verb is added without one)."""


@pytest.fixture(scope="module")
async def engine_nc(
    nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Engine, NatsClient]]:
    """One engine with both operator verbs on, and a small history of every kind."""
    base = tmp_path_factory.mktemp("verb-catalogue")
    settings = Settings(
        data_dir=base / "data",
        nats=NatsSettings(url=nats_server.url),
        stream=StreamSettings(name="T_verb_catalogue"),
        query_sql=True,
        query_export=True,
    )
    nc = await connect(NatsSettings(), nats_server.url)
    log = EventLog(nc, settings.stream)
    await log.ensure()
    try:
        async with running(settings, nc, settings.data_dir) as engine:
            async with MemoryClient(settings=settings) as memory:
                await memory.start_session("s1")
                for i in range(8):
                    await memory.store_workflow(
                        task_type="deployment",
                        workflow_steps=["plan", "ship"],
                        success=i % 4 != 0,
                        duration=1.0 + i,
                        session_id="s1",
                    )
                    await memory.store_execution(
                        task_id=f"t-{i}",
                        execution_summary=f"deploy the release {i} to production",
                        success=i % 3 != 0,
                        task_type="deployment",
                        session_id="s1",
                    )
                await memory.end_session("s1")
            await settle(engine)
            yield engine, nc
    finally:
        for stream in ("T_verb_catalogue", "T_verb_catalogue_DLQ"):
            with contextlib.suppress(NotFoundError):
                await log.js.delete_stream(stream)
        await nc.drain()


def test_every_verb_has_a_sample_request_that_its_model_accepts() -> None:
    """MINIMAL covers the catalogue exactly, and each sample is a valid request."""
    assert set(MINIMAL) == set(CATALOGUE)
    for name, payload in MINIMAL.items():
        validate_request(CATALOGUE[name].request, payload)


async def test_a_running_engine_answers_every_catalogued_verb_with_its_reply_model(
    engine_nc: tuple[Engine, NatsClient],
) -> None:
    """Over NATS, each verb on its catalogued subjects (the default namespace's, and the
    operator's for a verb that may be asked without a namespace) answers (no error) with a
    reply its reply model accepts; the engine subscribes to no query verb the catalogue lacks."""
    engine, nc = engine_nc
    for name, spec in CATALOGUE.items():
        asked = [spec.subject("default")] + ([spec.subject(None)] if spec.scope != "tenant" else [])
        for n, subject in enumerate(asked):
            body = dict(MINIMAL[name])
            if "to" in body:  # an export goes into a new directory each time
                body["to"] = f"{body['to']}-{n}"
            msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
            reply = json.loads(msg.data)
            assert "error" not in reply, (name, subject, reply)
            spec.reply.model_validate(reply)
    assert engine.dispatcher is not None
    assert engine.dispatcher.verbs == sorted(CATALOGUE)
    assert engine.dispatcher.unserved() == []


async def test_the_sample_history_reaches_the_replies(engine_nc: tuple[Engine, NatsClient]) -> None:
    """The replies are not empty shells: the history shows in searches, patterns, sessions."""
    _engine, nc = engine_nc

    async def ask(name: str) -> dict[str, Any]:
        msg = await nc.request(
            CATALOGUE[name].subject("default"), json.dumps(MINIMAL[name]).encode(), timeout=10
        )
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    assert (await ask("search"))["hits"]
    assert (await ask("patterns"))["patterns"][0]["task_type"] == "deployment"
    assert (await ask("sessions"))["sessions"][0]["session_id"] == "s1"
    assert (await ask("sql"))["rows"] == [{"n": 8}]
    assert (await ask("checkpoints"))["checkpoints"]["tables"] > 0


async def test_an_unknown_verb_is_refused_naming_the_catalogue() -> None:
    """A dispatcher refuses a verb the catalogue does not declare, to ask and to register."""
    dispatcher = QueryDispatcher(lambda: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(UsageError, match=r"unknown query verb .drop_tables.; known: .*search"):
        await dispatcher.handle("drop_tables", {})

    async def handler(_request: Any) -> dict[str, Any]:
        return {}

    with pytest.raises(UsageError, match="unknown query verb"):
        dispatcher.register("drop_tables", handler)
    with pytest.raises(UsageError, match="search is not answered here"):
        await dispatcher.handle("search", {"text": "x"})


@pytest.mark.parametrize(
    ("model", "payload", "message"),
    [
        (SearchRequest, {"text": "x", "top_k": 0}, "top_k must be between 1 and 1000, got 0"),
        (SearchRequest, {"success_only": "false"}, "success_only must be true or false, got str"),
        (SearchRequest, {"namespace": ["a"]}, "namespace must be a string, got list"),
        (SearchRequest, {"namespace": "n" * 300}, "namespace has 300 characters; at most 256"),
        (SearchRequest, {"vector": [1, "a"]}, "vector[1] must be a number, got str"),
        (SearchRequest, {"mode": "fuzzy"}, "mode must be 'hybrid', 'vector' or 'lexical'"),
        (SearchRequest, {"collections": ["memos"]}, "collections[0] must be 'tasks'"),
        (SqlRequest, {}, "sql is required"),
        (SqlRequest, {"sql": "SELECT 1", "limit": 1.5}, "limit must be an integer, got float"),
        (TaskContextRequest, {"task_description": 5}, "task_description must be a string"),
        (TaskContextRequest, {"task_description": ""}, "task_description is required"),
        (BestWorkflowRequest, {"task_type": ""}, "task_type is required"),
        (SearchRequest, {"text": "x", "top_k": 1000.5}, "top_k must be between 1 and 1000"),
        (SearchRequest, {"text": "x", "top_k": 0.5}, "top_k must be between 1 and 1000"),
        (SearchRequest, {"text": "x", "similarity_threshold": 2}, "between 0 and 1, got 2"),
        (SearchRequest, {}, "search needs text or a vector"),
        (SearchRequest, {"vector": [0.1], "mode": "lexical"}, "a lexical search needs text"),
    ],
)
def test_a_bad_request_is_a_usage_error_naming_the_parameter(
    model: Any, payload: dict[str, Any], message: str
) -> None:
    """Every rule of the request models reads as one sentence about the parameter."""
    with pytest.raises(UsageError) as info:
        validate_request(model, payload)
    assert message in str(info.value)


def test_defaults_are_the_ones_clients_have_always_had() -> None:
    """An empty or null namespace is the default one; a whole float top_k is a count; unknown
    keys are ignored (a newer client may send more)."""
    request = validate_request(
        SearchRequest, {"text": "x", "namespace": "", "top_k": 7.0, "novel": 1, "mode": None}
    )
    assert request.namespace == "default" and request.top_k == 7 and request.mode == "hybrid"
    assert validate_request(SearchRequest, {"text": "x", "namespace": None}).namespace == "default"
    assert validate_request(SearchRequest, {"text": "x", "top_k": 5.5}).top_k == 5
    best = validate_request(BestWorkflowRequest, {"task_type": "t", "optimization_target": ""})
    assert best.optimization_target == "success_rate"
    # The one deliberate tightening: a success rate outside 0..1 was answered with nothing.
    with pytest.raises(UsageError, match="min_success_rate must be between 0 and 1, got 3"):
        validate_request(PatternsRequest, {"min_success_rate": 3})


def test_the_catalogue_is_consistent() -> None:
    """Every verb's subject is engram.query.<namespace>.<verb> (and engram.query.<verb> for the
    operator's and those asked without a namespace, only those), its SDK and CLI names are
    unique, and a verb without its own sub-command says which one asks it."""
    for spec in CATALOGUE.values():
        assert spec.subject("alpha") == f"engram.query.alpha.{spec.name}"
        if spec.scope == "tenant":
            with pytest.raises(UsageError, match="about one namespace"):
                spec.subject(None)
        else:
            assert spec.subject(None) == f"engram.query.{spec.name}"
    assert {s.name for s in CATALOGUE.values() if s.scope == "operator"} == {
        "status",
        "checkpoints",
        "sql",
        "export",
    }
    assert {s.name for s in CATALOGUE.values() if s.scope == "either"} == {"metrics", "workflows"}
    assert len({spec.sdk for spec in CATALOGUE.values()}) == len(CATALOGUE)
    commands = [spec.cli for spec in CATALOGUE.values() if spec.cli is not None]
    assert len(set(commands)) == len(commands)
    assert all(spec.cli or spec.cli_via for spec in CATALOGUE.values())


def _readme_table() -> str:
    rows = ["| verb | what it answers | reads | SDK method | CLI |", "|---|---|---|---|---|"]
    for spec in CATALOGUE.values():
        cli = f"`engram {spec.cli}`" if spec.cli else f"`engram {spec.cli_via}`"
        audience = " (operators)" if spec.operator else ""
        rows.append(
            f"| `{spec.name}`{audience} | {spec.summary} | {', '.join(spec.reads)} "
            f"| `{spec.sdk}` | {cli} |"
        )
    return "\n".join(rows)


def test_the_readme_lists_the_catalogue() -> None:
    """The README's table of verbs is the catalogue's (regenerate it from ``_readme_table``)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- verbs:begin -->\n")[1].split("\n<!-- verbs:end -->")[0]
    assert block == _readme_table()
