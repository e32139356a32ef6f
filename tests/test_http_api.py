"""The HTTP API end to end: a real uvicorn on a free port, httpx, a real in-process engine on
the real nats-server. Writes are in the stream when they answer; every catalogued verb answers
through its route with the engine's reply and its consistency; the OpenAPI document describes
every verb's request and every agent event type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from engine.events.registry import AGENT_TYPES, EVENT_TYPES
from engine.settings import Settings
from engine.stream import EventLog
from engine.verbs import CATALOGUE
from engram.http.event_routes import FRIENDLY
from tests.engines import running, settle
from tests.http_gateway import PAYLOADS, auth, engine_serving, gateway, make_keys

pytest.importorskip("fastapi")

STEPS = ["plan", "apply", "verify"]

# A request body each verb accepts (its required fields); the rest take their defaults.
VERB_BODIES: dict[str, dict[str, Any]] = {
    "sql": {"sql": "SELECT count(*) AS n FROM workflow_executions"},
    "export": {"to": "nightly"},
    "best_workflow": {"task_type": "deploy"},
    "task_metrics": {"task_type": "deploy"},
    "extract_pattern": {"task_type_pattern": "dep.*", "min_samples": 1},
    "search": {"text": "zebra cluster"},
    "task_context": {"task_description": "migrate the zebra cluster"},
    "assemble_context": {"task_description": "migrate the zebra cluster", "max_tokens": 200},
    "items_get": {"path": ["users", "u1"], "keys": ["prefs"]},  # the LangGraph store's verbs
    "cache_lookup": {"prompt": "migrate the zebra cluster"},
}


async def test_store_then_search_with_min_sequence_finds_it(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A write answers 201 with its stream sequence and event id, and the event is in the
    stream at that sequence; a search right after it, carrying that sequence as min_sequence
    (body, query parameter or Engram-Min-Sequence header), finds it every time, not stale."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        await engine_serving(engine)
        for i, how in enumerate(["body", "query", "header"] * 4):
            token = f"zebra{i}quokka"
            stored = await http.post(
                "/v1/namespaces/alpha/executions",
                json={"task_id": f"t{i}", "execution_summary": f"moved {token}", "success": True},
            )
            assert stored.status_code == 201, stored.text
            written = stored.json()
            assert written["namespace"] == "alpha" and written["duplicate"] is False
            message = await event_log.js.get_msg(settings.stream.name, written["sequence"])
            assert message.subject == "memory.task.executed.alpha"
            assert written["event_id"].encode() in (message.data or b"")
            body: dict[str, Any] = {"text": token, "mode": "lexical", "top_k": 1}
            params: dict[str, Any] = {}
            headers: dict[str, str] = {}
            if how == "body":
                body["min_sequence"] = written["sequence"]
            elif how == "query":
                params["min_sequence"] = written["sequence"]
            else:
                headers["Engram-Min-Sequence"] = str(written["sequence"])
            found = await http.post(
                "/v1/namespaces/alpha/query/search", json=body, params=params, headers=headers
            )
            assert found.status_code == 200, found.text
            answer = found.json()
            assert [hit["task_id"] for hit in answer["hits"]] == [f"t{i}"], how
            assert answer["consistency"]["stale"] is False
            assert answer["consistency"]["sequence"] >= written["sequence"]


async def test_every_catalogued_verb_answers_through_its_route(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Each verb of the catalogue has its route (a tenant's under the namespace, an
    operator's under /v1/operator with an operator key) and answers 200 with its reply model's
    fields; verbs reading projections carry consistency. sql and export are off on this engine:
    403 problems of kind forbidden, still answered by the engine through the route."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["ops"])) as http,
    ):
        await engine_serving(engine)
        for n in range(3):
            stored = await http.post(
                "/v1/namespaces/alpha/workflows",
                json={
                    "task_type": "deploy",
                    "workflow_steps": STEPS,
                    "success": n < 2,
                    "duration": 1.5,
                },
            )
            assert stored.status_code == 201, stored.text
        await settle(engine)
        answered = set()
        for spec in CATALOGUE.values():
            body = VERB_BODIES.get(spec.name, {})
            routes = []
            if spec.scope in ("tenant", "either"):
                routes.append(f"/v1/namespaces/alpha/query/{spec.name}")
            if spec.scope in ("operator", "either"):
                routes.append(f"/v1/operator/query/{spec.name}")
            for route in routes:
                reply = await http.post(route, json=body)
                if spec.name in ("sql", "export"):
                    assert reply.status_code == 403, (route, reply.text)
                    assert reply.json()["kind"] == "forbidden"
                    answered.add(spec.name)
                    continue
                assert reply.status_code == 200, (route, reply.text)
                answer = reply.json()
                spec.reply.model_validate(answer)  # the verb's reply model reads it
                if spec.reads not in (("stream", "runners"),):
                    assert "consistency" in answer, route
                answered.add(spec.name)
        assert answered == set(CATALOGUE)
        best = await http.post(
            "/v1/namespaces/alpha/query/best_workflow", json={"task_type": "deploy"}
        )
        assert best.json()["workflow"] is None or best.json()["workflow"]["workflow_steps"] == STEPS


async def test_every_write_route_stores_its_event(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Each agent event type has its /events/<type> route and each friendly route (the SDK's
    verbs, seed 001's store and feedback) stores its type in the key's namespace; a retry with
    the same event id (body or Idempotency-Key) answers 200 duplicate with the first
    sequence."""
    keys = make_keys(tmp_path / "keys.json")
    payloads = PAYLOADS
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        for event_type in sorted(AGENT_TYPES):
            assert event_type in payloads, f"a payload for {event_type} (a new agent type)"
            reply = await http.post(
                f"/v1/namespaces/alpha/events/{event_type}",
                json={"data": payloads[event_type], "agent_id": "planner-1"},
            )
            assert reply.status_code == 201, (event_type, reply.text)
            message = await event_log.js.get_msg(settings.stream.name, reply.json()["sequence"])
            assert message.subject == f"memory.{event_type}.alpha"
        for route in FRIENDLY:
            body = dict(payloads[route.event_type])
            path = route.path
            if route.path_field is not None:
                path = path.replace("{" + route.path_field + "}", body.pop(route.path_field))
            reply = await http.post(f"/v1/namespaces/alpha{path}", json=body)
            assert reply.status_code == 201, (route.path, reply.text)
            message = await event_log.js.get_msg(settings.stream.name, reply.json()["sequence"])
            assert message.subject == f"memory.{route.event_type}.alpha", route.path
        first = await http.post(
            "/v1/namespaces/alpha/decisions/d9/outcome",
            json={"success": False},
            headers={"Idempotency-Key": "outcome-d9"},
        )
        again = await http.post(
            "/v1/namespaces/alpha/decisions/d9/outcome",
            json={"success": False, "event_id": "outcome-d9"},
        )
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["duplicate"] is True
        assert again.json()["sequence"] == first.json()["sequence"]


async def test_openapi_lists_every_verb_and_event_type(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """/openapi.json (public) has a route per catalogued verb whose request body is the
    verb's request model, and a route per agent event type whose body holds its payload
    model; the pattern stream is there as text/event-stream."""
    make_keys(tmp_path / "keys.json")
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        document = (await http.get("/openapi.json")).json()
    paths = document["paths"]
    schemas = document["components"]["schemas"]

    def body_ref(path: str) -> str:
        content = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        ref = content.get("$ref") or next(s["$ref"] for s in content["anyOf"] if "$ref" in s)
        return str(ref).rsplit("/", 1)[1]

    for spec in CATALOGUE.values():
        path = (
            f"/v1/namespaces/{{namespace}}/query/{spec.name}"
            if spec.scope != "operator"
            else f"/v1/operator/query/{spec.name}"
        )
        assert body_ref(path) == spec.request.__name__, spec.name
        assert spec.request.__name__ in schemas
    for event_type in AGENT_TYPES:
        name = body_ref(f"/v1/namespaces/{{namespace}}/events/{event_type}")
        data_ref = schemas[name]["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert data_ref == EVENT_TYPES[event_type].model.__name__, event_type
    stream = paths["/v1/namespaces/{namespace}/patterns/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert "HTTPValidationError" not in schemas and "Problem" in schemas
    for path, operations in paths.items():
        for operation in operations.values():
            assert "422" not in operation["responses"], path
            if path.startswith("/v1/"):
                assert "application/problem+json" in operation["responses"]["4XX"]["content"]


async def test_a_batch_write_stores_every_event_or_says_which_to_send_again(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """POST /events appends a batch of mixed agent types in order, each at the sequence it
    answers (201 only when every one is stored); a retry of the same batch is stored once
    (duplicates, same sequences); a batch is validated whole first: one bad event (named by its
    index and field) or an engine-only type stores none of it; another tenant's namespace is
    403 before anything is read."""
    keys = make_keys(tmp_path / "keys.json")

    def workflow(i: int) -> dict[str, Any]:
        data = {"workflow_steps": STEPS, "success": True, "duration": float(i)}
        return {"type": "workflow.executed", "id": f"w{i}", "data": data}

    knowledge = {"kind": "procedure", "title": "t", "content": "c"}
    batch = [workflow(i) for i in range(50)]
    batch.append({"type": "knowledge.added", "id": "k1", "data": knowledge})
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        stored = await http.post("/v1/namespaces/alpha/events", json={"events": batch})
        assert stored.status_code == 201, stored.text
        outcomes = stored.json()["stored"]
        assert [o["event_id"] for o in outcomes] == [e["id"] for e in batch]
        sequences = [o["sequence"] for o in outcomes]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(batch)
        for outcome in (outcomes[0], outcomes[-1]):
            message = await event_log.js.get_msg(settings.stream.name, outcome["sequence"])
            assert message.subject == f"memory.{outcome['type']}.alpha"
        again = await http.post("/v1/namespaces/alpha/events", json={"events": batch})
        assert again.status_code == 201
        assert [o["sequence"] for o in again.json()["stored"]] == sequences
        assert all(o["duplicate"] for o in again.json()["stored"])
        last = (await event_log.state()).last_sequence

        bad = [*batch[:3], {"type": "workflow.executed", "data": {"workflow_steps": STEPS}}]
        refused = await http.post("/v1/namespaces/alpha/events", json={"events": bad})
        assert refused.status_code == 422, refused.text
        assert "events.3.data.success" in refused.text
        forged = [{"type": "pattern.learned", "data": {}}]
        refused = await http.post("/v1/namespaces/alpha/events", json={"events": forged})
        assert refused.status_code == 403 and refused.json()["kind"] == "forbidden_event_type"
        other = await http.post("/v1/namespaces/beta/events", json={"events": batch[:1]})
        assert other.status_code == 403
        empty = await http.post("/v1/namespaces/alpha/events", json={"events": []})
        assert empty.status_code == 422
        assert (await event_log.state()).last_sequence == last  # nothing of those stored
