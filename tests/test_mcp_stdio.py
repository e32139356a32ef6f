"""``engram mcp`` end to end: the official SDK's client starts it over stdio, against a real
engine and nats-server, and uses every tool and resource as an agent would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")  # a safety net only: CI installs the mcp extra

import mcp_types as types
from mcp import Client
from nats.aio.client import Client as NatsClient

from engine import MemoryClient
from engine.settings import Settings
from engine.stream import EventLog
from engram.mcp import TOOLS
from engram.mcp.server import tool_list
from tests.cli_runs import engram
from tests.engines import running, settle
from tests.mcp_sessions import mcp_stdio, structured, text_of

STEPS = ["read_spec", "write_code", "run_tests"]
TASK = "rotated the postgres credentials of the billing service without downtime"
BETA_TEXT = "beta's secret: the kafka consumer lag alarm for the ingestion pipeline"


async def _call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured(await client.call_tool(tool, arguments))


async def _resource(client: Client, uri: str) -> dict[str, Any]:
    (contents,) = (await client.read_resource(uri)).contents
    assert isinstance(contents, types.TextResourceContents)
    assert contents.mime_type == "application/json"
    body: dict[str, Any] = json.loads(contents.text)
    return body


async def test_every_tool_and_resource_over_stdio(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Tools are listed with the schemas of the SDK's models (no namespace); each tool works
    and what it stores is recalled at once (read-your-writes): a stored task is found by
    search, the best workflow after three runs, context within a token budget, a decision and
    its outcome, knowledge, feedback that lowers a pattern's confidence; resources list and read
    the namespace's patterns and learning metrics."""
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)  # answering queries
        async with mcp_stdio(settings, tmp_path, "--namespace", "alpha") as client:
            await _every_tool_and_resource(client)


async def _every_tool_and_resource(client: Client) -> None:
    listed = (await client.list_tools()).tools
    assert [t.name for t in listed] == list(TOOLS)
    expected = {t.name: t for t in tool_list()}
    for tool in listed:
        assert tool.input_schema == expected[tool.name].input_schema
        assert "namespace" not in tool.input_schema["properties"]
        assert tool.description and len(tool.description) > 80
    assert listed[0].input_schema["required"] == ["workflow_steps", "success", "duration"]

    stored = await _call(
        client, "store_execution", task_id="t-1", execution_summary=TASK, success=True,
        task_type="credential_rotation",
    )  # fmt: skip
    assert stored["namespace"] == "alpha" and stored["type"] == "task.executed"
    found = await _call(client, "search_memory", text="postgres credentials billing")
    assert found["consistency"]["sequence"] >= stored["sequence"]
    assert not found["consistency"]["stale"]
    assert [h["text"] for h in found["hits"]][:1] == [TASK]

    assert (await _call(client, "get_best_workflow", task_type="deploy"))["workflow"] is None
    for duration in (10.0, 12.0, 11.0):
        await _call(
            client, "store_workflow", task_type="deploy", workflow_steps=STEPS,
            success=True, duration=duration, session_id="s-1",
        )  # fmt: skip
    best = await _call(client, "get_best_workflow", task_type="deploy")
    assert best["workflow"]["workflow_steps"] == STEPS
    assert best["workflow"]["executions"] == 3

    context = await _call(
        client, "get_task_context", task_description="rotate the billing credentials"
    )
    assert TASK in [hit["text"] for hit in context["similar_tasks"]]
    assembled = await _call(
        client, "assemble_context", task_description="billing credentials", max_tokens=120
    )
    assert 0 < assembled["total_tokens"] <= 120
    assert sum(chunk["tokens"] for chunk in assembled["chunks"]) <= 120

    await _call(
        client, "log_decision", decision_id="d-1", actor="planner",
        decision="use blue-green deployment for the billing service",
        rationale="no downtime", alternatives=["rolling update"],
    )  # fmt: skip
    outcome = await _call(
        client, "record_outcome", decision_id="d-1", success=True, notes="went well"
    )
    assert outcome["type"] == "decision.outcome"
    decisions = await _call(
        client, "search_memory", text="blue-green deployment", collections=["decisions"]
    )
    assert decisions["hits"] and decisions["hits"][0]["collection"] == "decisions"
    await _call(
        client, "add_knowledge", kind="procedure", title="Certificate renewal",
        content="renew the TLS certificate with certbot, then reload nginx",
    )  # fmt: skip
    knowledge = await _call(
        client, "search_memory", text="certbot nginx", collections=["knowledge"]
    )
    assert "certbot" in knowledge["hits"][0]["text"]

    patterns = (await _call(client, "list_patterns"))["patterns"]
    workflow = next(p for p in patterns if p["pattern_type"] == "workflow")
    assert workflow["task_type"] == "deploy" and workflow["namespace"] == "alpha"
    await _call(
        client, "give_feedback", pattern_id=workflow["pattern_id"], helpful=False,
        confidence_adjustment=-0.5,
    )  # fmt: skip
    after = (await _call(client, "list_patterns"))["patterns"]
    judged = next(p for p in after if p["pattern_id"] == workflow["pattern_id"])
    assert judged["confidence"] < workflow["confidence"]

    uris = [str(r.uri) for r in (await client.list_resources()).resources]
    assert uris[:2] == ["engram://patterns", "engram://learning"]
    assert "engram://patterns/deploy" in uris
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["engram://patterns/{task_type}"]
    body = await _resource(client, "engram://patterns/deploy")
    assert {p["task_type"] for p in body["patterns"]} == {"deploy"}
    assert body["consistency"]["stale"] is False
    learning = await _resource(client, "engram://learning")
    assert learning["namespace"] == "alpha"
    assert learning["total_workflows_executed"] == 3


async def test_bad_arguments_and_namespaces_are_tool_errors(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A bad argument is a tool error naming the field, and the server keeps serving; an
    argument ``namespace`` is refused, so the model can neither read nor write another
    tenant's memory: what it stores lands in the configured namespace only. With the engine
    stopped, a read is a tool error saying engram is unavailable and a write is still
    appended. (Spoken in the handshake era of the protocol, as most hosts do today.)"""
    async with mcp_stdio(settings, tmp_path, "--namespace", "alpha", mode="legacy") as client:
        assert client.protocol_version < "2026"  # the initialize handshake
        async with running(settings, nc, tmp_path / "engine") as engine:
            await settle(engine)
            await _refusals(client, settings)

        # The engine is gone: a read is a tool error saying so, and a write is still appended.
        down = await client.call_tool("get_best_workflow", {"task_type": "deploy"})
        assert down.is_error and "unavailable" in text_of(down)
        kept = await _call(
            client, "store_execution", task_id="a-2", execution_summary="while down", success=True
        )
        stored = await event_log.js.get_msg(settings.stream.name, kept["sequence"])
        assert stored.data is not None and b"while down" in stored.data


async def _refusals(client: Client, settings: Settings) -> None:
    async with MemoryClient(settings=settings, namespace="beta") as beta:
        await beta.store_execution(task_id="b-1", execution_summary=BETA_TEXT, success=True)
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "duration": ("store_workflow", {"workflow_steps": ["a"], "success": True,
                                        "duration": -1}),
        "success": ("store_workflow", {"workflow_steps": ["a"], "duration": 1.0}),
        "durations": ("store_workflow", {"workflow_steps": ["a"], "success": True,
                                         "durations": 1.0}),
        "top_k": ("search_memory", {"text": "x", "top_k": 0}),
        "task_type": ("get_best_workflow", {}),
        "text": ("search_memory", {"top_k": 3}),
        "min_sequence": ("search_memory", {"text": "x", "min_sequence": 10**9}),
        "kind": ("add_knowledge", {"kind": "poem", "title": "t", "content": "c"}),
        "embedding": ("store_execution", {"task_id": "t", "execution_summary": "s",
                                          "success": True, "embedding": [0.1]}),
    }  # fmt: skip
    for field, (tool, arguments) in cases.items():
        result = await client.call_tool(tool, arguments)
        assert result.is_error, (field, text_of(result))
        assert field in text_of(result), (field, text_of(result))

    refusals: list[tuple[str, dict[str, Any]]] = [
        ("search_memory", {"text": BETA_TEXT, "namespace": "beta"}),
        ("store_execution", {"task_id": "x", "execution_summary": "planted",
                             "success": True, "namespace": "beta"}),
    ]  # fmt: skip
    for tool, arguments in refusals:
        refused = await client.call_tool(tool, arguments)
        assert refused.is_error and "namespace" in text_of(refused)

    mine = await _call(
        client, "store_execution", task_id="a-1", execution_summary="alpha's own note",
        success=True,
    )  # fmt: skip
    assert mine["namespace"] == "alpha"
    hits = (await _call(client, "search_memory", text=BETA_TEXT, top_k=20))["hits"]
    assert {h["namespace"] for h in hits} == {"alpha"}
    assert BETA_TEXT not in [h["text"] for h in hits]

    async with MemoryClient(settings=settings, namespace="beta") as beta:
        beta_hits = await beta.search_similar(
            "alpha's own note planted", top_k=20, min_sequence=mine["sequence"]
        )
        assert {h.namespace for h in beta_hits} == {"beta"}
        assert [h.text for h in beta_hits] == [BETA_TEXT]


async def test_bad_namespace_flag_exits_2(tmp_path: Path) -> None:
    """``engram mcp --namespace`` with a namespace that is not one subject token exits 2,
    naming the pattern, before connecting to anything."""
    run = await engram("mcp", "--namespace", "a.b", cwd=tmp_path)
    assert run.code == 2 and "namespace 'a.b' is not valid" in run.err
