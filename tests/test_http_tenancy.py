"""A key for alpha can never read or write beta through the HTTP API: every route under
``/v1/namespaces/{namespace}``, with valid bodies (so only the tenancy check stands in the way),
for beta spelled plainly, URL-encoded, as a wildcard or a subject with dots; bodies naming
another namespace; operator verbs with an agent key; engine-only event types. Each refusal is
pinned, and nothing reaches NATS: no event is published and no query asked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from engine.events.registry import DERIVED_TYPES
from engine.settings import Settings
from engine.stream import EventLog
from engine.verbs import CATALOGUE
from engram.http.app import create_app
from engram.http.gateway import Gateway
from engram.http.keys import KeyRing
from tests.http_gateway import PAYLOADS, auth, gateway, make_keys

pytest.importorskip("fastapi")

QUERY_BODIES: dict[str, dict[str, Any]] = {
    "best_workflow": {"task_type": "deploy"},
    "task_metrics": {"task_type": "deploy"},
    "extract_pattern": {"task_type_pattern": "dep.*"},
    "search": {"text": "zebra"},
    "task_context": {"task_description": "zebra"},
    "assemble_context": {"task_description": "zebra"},
    "sql": {"sql": "SELECT 1"},
    "export": {"to": "x"},
}
SPELLINGS = [
    "beta",
    "%62eta",
    "b%65ta",
    "*",
    ">",
    "alpha.beta",
    "alpha,beta",
    "%2A",
    "%3E",
    "Alpha",
]
"""Namespaces a key for alpha must not reach: beta as such and encoded, wildcards, subjects
with more tokens, a list, another case."""


def _routes(keys: Path) -> list[APIRoute]:
    app = create_app(Gateway(Settings()), KeyRing(keys))
    return [r for r in app.routes if isinstance(r, APIRoute) and "{namespace}" in r.path]


def _request_for(route: APIRoute, namespace: str) -> tuple[str, str, dict[str, Any] | None]:
    """(method, path, a body the route accepts) for ``route`` in ``namespace``."""
    path = route.path.replace("{namespace}", namespace)
    body: dict[str, Any] | None = None
    kind, _, rest = route.name.partition(":")
    if kind == "event":
        event_type, _, friendly = rest.partition(":")
        if event_type == "refused":
            path = path.replace("{event_type}", "workflow.executed")
            body = {"data": PAYLOADS["workflow.executed"]}
        elif friendly:
            body = dict(PAYLOADS[event_type])
            for field in ("decision_id", "pattern_id", "session_id"):
                if "{" + field + "}" in path:
                    path = path.replace("{" + field + "}", str(body.pop(field)))
        else:
            body = {"data": PAYLOADS[event_type]}
    elif kind == "events":  # the batch
        body = {"events": [{"type": "workflow.executed", "data": PAYLOADS["workflow.executed"]}]}
    elif kind == "query":
        verb = rest.rpartition(":")[2]
        body = dict(QUERY_BODIES.get(verb, {}))
    method = next(iter(route.methods or {"POST"}))
    return method, path, body if method == "POST" else None


class Traffic:
    """Every message published on memory.> and engram.query.> while it listens."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def heard(self, msg: Msg) -> None:
        self.subjects.append(msg.subject)


@contextlib.asynccontextmanager
async def listening(nc: NatsClient) -> AsyncIterator[Traffic]:
    traffic = Traffic()
    subs = [await nc.subscribe(s, cb=traffic.heard) for s in ("memory.>", "engram.query.>")]
    try:
        yield traffic
    finally:
        for sub in subs:
            await sub.unsubscribe()


async def test_a_key_for_alpha_reaches_no_other_namespace_on_any_route(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Every namespaced route (writes, queries, seed 001's, the pattern stream), with a valid
    body, asked by alpha's key about beta in every spelling: 403 namespace_forbidden, or 404
    where the spelling is not a path segment; nothing is published on memory.> or asked on
    engram.query.>, and the stream stays empty. The same requests about alpha are accepted
    (so the bodies are valid and the refusals are the tenancy check's)."""
    keys = make_keys(tmp_path / "keys.json")
    routes = _routes(tmp_path / "keys.json")
    assert len(routes) >= 30
    async with (
        listening(nc) as traffic,
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        for route in routes:
            for spelling in SPELLINGS:
                method, path, body = _request_for(route, spelling)
                reply = await http.request(method, path, json=body)
                assert reply.status_code == 403, (route.name, spelling, reply.text)
                problem = reply.json()
                assert problem["kind"] == "namespace_forbidden", (route.name, spelling)
                assert reply.headers["content-type"] == "application/problem+json"
            for tricky in ("alpha%2Fbeta", "..%2Fbeta", "alpha%2F..%2Fbeta"):
                method, path, body = _request_for(route, tricky)
                reply = await http.request(method, path, json=body)
                assert reply.status_code in (403, 404), (route.name, tricky, reply.text)
        await asyncio.sleep(0.2)
        assert traffic.subjects == []
        state = await event_log.state()
        assert state.messages == 0
        # the same bodies about alpha pass the tenancy check (writes are stored)
        for route in routes:
            if route.name.startswith("event:") and route.name != "event:refused":
                method, path, body = _request_for(route, "alpha")
                reply = await http.request(method, path, json=body)
                assert reply.status_code in (200, 201), (route.name, reply.text)
        await asyncio.sleep(0.2)
    assert traffic.subjects
    assert all(s.endswith(".alpha") for s in traffic.subjects if s.startswith("memory."))


async def test_a_body_cannot_name_another_namespace(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A query body naming beta under alpha's path: 403 for a key without beta; 422 naming
    the namespace field for a key holding both (a contradiction, not a choice); an operator
    key's ?namespace= or body namespace outside its namespaces: 403. Nothing is asked."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        listening(nc) as traffic,
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        body = {"text": "zebra", "namespace": "beta"}
        alpha = await http.post(
            "/v1/namespaces/alpha/query/search", json=body, headers=auth(keys["alpha"])
        )
        assert alpha.status_code == 403 and alpha.json()["kind"] == "namespace_forbidden"
        both = await http.post(
            "/v1/namespaces/alpha/query/search", json=body, headers=auth(keys["both"])
        )
        assert both.status_code == 422 and both.json()["errors"][0]["field"] == "namespace"
        ops = auth(keys["ops"])
        asked = await http.post(
            "/v1/operator/query/status", params={"namespace": "beta"}, headers=ops
        )
        assert asked.status_code == 403 and asked.json()["kind"] == "namespace_forbidden"
        named = await http.post(
            "/v1/operator/query/metrics", json={"namespace": "beta"}, headers=ops
        )
        assert named.status_code == 403 and named.json()["kind"] == "namespace_forbidden"
        envelope = await http.post(
            "/v1/namespaces/alpha/events/workflow.executed",
            json={"data": PAYLOADS["workflow.executed"], "namespace": "beta"},
            headers=auth(keys["alpha"]),
        )
        assert envelope.status_code == 422 and envelope.json()["errors"][0]["field"] == "namespace"
        await asyncio.sleep(0.2)
    assert traffic.subjects == []


async def test_an_agent_key_calls_no_operator_verb(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Every operator route (status, checkpoints, sql, export; metrics and workflows over every
    namespace) refuses an agent key with 403 operator_only before anything is asked; the
    operator verbs have no route under a tenant's namespace (404)."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        listening(nc) as traffic,
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["both"])) as http,
    ):
        for spec in CATALOGUE.values():
            if spec.scope == "tenant":
                continue
            reply = await http.post(
                f"/v1/operator/query/{spec.name}", json=QUERY_BODIES.get(spec.name, {})
            )
            assert reply.status_code == 403, (spec.name, reply.text)
            assert reply.json()["kind"] == "operator_only"
            if spec.scope == "operator":
                tenant_route = await http.post(f"/v1/namespaces/alpha/query/{spec.name}", json={})
                assert tenant_route.status_code == 404, spec.name
        await asyncio.sleep(0.2)
    assert traffic.subjects == []


async def test_engine_only_event_types_cannot_be_forged(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """POST /events/<type> for every type only the engine publishes (pattern.learned,
    session.compacted, snapshot.created, the usage events, namespace.purged): 403
    forbidden_event_type naming the type; an unknown type 404 unknown_event_type; the stream
    stays empty."""
    keys = make_keys(tmp_path / "keys.json")
    forged = {
        "pattern_id": "p1",
        "version": 99,
        "pattern_type": "workflow",
        "task_type": "deploy",
        "success_rate": 1.0,
        "confidence": 1.0,
        "sample_size": 1000,
        "pattern": ["rm -rf /"],
    }
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        for event_type in sorted(DERIVED_TYPES):
            reply = await http.post(
                f"/v1/namespaces/alpha/events/{event_type}", json={"data": forged}
            )
            assert reply.status_code == 403, (event_type, reply.text)
            problem = reply.json()
            assert problem["kind"] == "forbidden_event_type"
            assert event_type in problem["detail"]
        unknown = await http.post("/v1/namespaces/alpha/events/memory.stored", json={"data": {}})
        assert unknown.status_code == 404 and unknown.json()["kind"] == "unknown_event_type"
    assert (await event_log.state()).messages == 0
