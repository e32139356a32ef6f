"""Every refusal of the HTTP API is an RFC 9457 problem (application/problem+json: type, title,
status, detail, instance, kind; the fields named for bad input), with the status the issue
pins: 401 (and WWW-Authenticate: Bearer) for a missing, garbled, unknown, tampered or revoked
key; 400 malformed JSON; 422 a bad field, named; 413 a body over the limit, whether its
Content-Length says so or it is chunked; 415 a body that is not JSON; 503 with Retry-After when
no engine answers or NATS is away. Against a real uvicorn and a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.settings import NatsSettings, Settings
from engine.stream import EventLog
from engram.http.keys import KeyFile
from tests.http_gateway import auth, gateway, make_keys

pytest.importorskip("fastapi")

PROBLEM = "application/problem+json"
WORKFLOW = {"workflow_steps": ["plan"], "success": True, "duration": 1.0}


def _problem(reply: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM
    body: dict[str, Any] = reply.json()
    assert body["status"] == status and body["kind"] == kind
    assert body["type"].endswith(":" + kind) and body["title"] and body["detail"]
    assert body["instance"] == reply.request.url.path
    return body


async def test_no_valid_key_is_401_with_a_bearer_challenge(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """No Authorization header, a garbled one (another scheme, no token, two tokens, a
    non-key), an unknown well-formed key, a valid key's id with another secret, and a revoked
    key: each 401 unauthorized with WWW-Authenticate: Bearer, on /v1 and /mcp alike; the
    keys file is re-read, so a revoked key is refused and a new one accepted without a
    restart. The API's description stays public."""
    keys = make_keys(tmp_path / "keys.json")
    alpha = keys["alpha"]
    tampered = alpha[:-4] + ("AAAA" if not alpha.endswith("AAAA") else "BBBB")
    headers: list[dict[str, str]] = [
        {},
        {"Authorization": f"Basic {alpha}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {alpha} {alpha}"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": alpha},
        auth("egk_0123456789ab_" + "A" * 43),
        auth(tampered),
    ]
    path = "/v1/namespaces/alpha/workflows"
    async with (
        gateway(settings, tmp_path / "keys.json", mcp=True) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        assert (await http.get("/openapi.json")).status_code == 200
        for given in headers:
            for target in (path, "/mcp"):
                reply = await http.post(target, json=WORKFLOW, headers=given)
                _problem(reply, 401, "unauthorized")
                assert reply.headers["www-authenticate"].startswith('Bearer realm="engram"')
        ok = await http.post(path, json=WORKFLOW, headers=auth(alpha))
        assert ok.status_code == 201
        KeyFile(tmp_path / "keys.json").revoke("alpha")
        _problem(await http.post(path, json=WORKFLOW, headers=auth(alpha)), 401, "unauthorized")
        _, fresh = KeyFile(tmp_path / "keys.json").add("alpha2", ["alpha"])
        assert (await http.post(path, json=WORKFLOW, headers=auth(fresh))).status_code == 201


async def test_bad_bodies_are_400_422_and_415_naming_what_is_wrong(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """Malformed JSON: 400 malformed_json. A field of the wrong type or out of range: 422
    naming it (pointer and dotted field), invalid_event for writes, usage for queries; an
    unknown field of a write: 422 naming it. A body sent as form data: 415. Nothing stored."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        json_header = {"Content-Type": "application/json"}
        broken = await http.post(
            "/v1/namespaces/alpha/workflows", content=b'{"success": tru', headers=json_header
        )
        _problem(broken, 400, "malformed_json")
        wrong = await http.post(
            "/v1/namespaces/alpha/workflows", json={**WORKFLOW, "success": "yes"}
        )
        body = _problem(wrong, 422, "invalid_event")
        assert [e["field"] for e in body["errors"]] == ["success"]
        assert body["errors"][0]["pointer"] == "#/success"
        nested = await http.post(
            "/v1/namespaces/alpha/events/workflow.executed",
            json={"data": {**WORKFLOW, "duration": -1}},
        )
        assert [e["field"] for e in _problem(nested, 422, "invalid_event")["errors"]] == [
            "data.duration"
        ]
        typo = await http.post("/v1/namespaces/alpha/workflows", json={**WORKFLOW, "sucess": True})
        assert "sucess" in [e["field"] for e in _problem(typo, 422, "invalid_event")["errors"]]
        query = await http.post("/v1/namespaces/alpha/query/search", json={"text": "x", "top_k": 0})
        assert [e["field"] for e in _problem(query, 422, "usage")["errors"]] == ["top_k"]
        missing = await http.post("/v1/namespaces/alpha/query/task_context", json={})
        assert [e["field"] for e in _problem(missing, 422, "usage")["errors"]] == [
            "task_description"
        ]
        seq = await http.post("/v1/namespaces/alpha/query/learning", params={"min_sequence": 0})
        assert [e["field"] for e in _problem(seq, 422, "usage")["errors"]] == ["query.min_sequence"]
        form = await http.post("/v1/namespaces/alpha/workflows", data={"success": "true"})
        _problem(form, 415, "unsupported_media_type")
        _problem(await http.get("/v1/nothing/here"), 404, "not_found")
    assert (await event_log.state()).messages == 0


async def test_a_body_over_the_limit_is_413_while_it_is_read(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """With a 2,048-byte limit: a Content-Length over it is refused before the body is read;
    a chunked body (no Content-Length) is counted as it arrives and refused once past it; a
    body under it is stored. Both refusals are 413 payload_too_large, and nothing is stored
    from them."""
    keys = make_keys(tmp_path / "keys.json")
    big = {**WORKFLOW, "request": "x" * 4_000}

    async def chunks() -> AsyncIterator[bytes]:
        import json

        body = json.dumps(big).encode()
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with (
        gateway(settings, tmp_path / "keys.json", max_body_bytes=2_048) as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        declared = await http.post("/v1/namespaces/alpha/workflows", json=big)
        assert "content-length" in declared.request.headers
        _problem(declared, 413, "payload_too_large")
        chunked = await http.post(
            "/v1/namespaces/alpha/workflows",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in chunked.request.headers
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        _problem(chunked, 413, "payload_too_large")
        small = await http.post("/v1/namespaces/alpha/workflows", json=WORKFLOW)
        assert small.status_code == 201
    assert (await event_log.state()).messages == 1


async def test_no_engine_is_503_with_retry_after(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """The stream is there but no engine runs: a query is 503 engine_unavailable with
    Retry-After (at once: NATS says nobody listens), while a write is still stored (201: it
    needs the stream, not the engine)."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        asked = await http.post("/v1/namespaces/alpha/query/search", json={"text": "zebra"})
        _problem(asked, 503, "engine_unavailable")
        assert int(asked.headers["retry-after"]) >= 1
        stored = await http.post("/v1/namespaces/alpha/workflows", json=WORKFLOW)
        assert stored.status_code == 201


async def test_nats_away_is_503_with_retry_after(tmp_path: Path) -> None:
    """A gateway whose NATS server is not there starts anyway and answers writes, queries,
    the pattern stream and /healthz with 503 nats_unavailable and Retry-After."""
    keys = make_keys(tmp_path / "keys.json")
    settings = Settings(data_dir=tmp_path / "data", nats=NatsSettings(url="nats://127.0.0.1:1"))
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        for reply in (
            await http.post("/v1/namespaces/alpha/workflows", json=WORKFLOW),
            await http.post("/v1/namespaces/alpha/query/learning"),
            await http.get("/v1/namespaces/alpha/patterns/stream"),
            await http.get("/healthz"),
        ):
            _problem(reply, 503, "nats_unavailable")
            assert int(reply.headers["retry-after"]) >= 1


async def test_an_unacknowledged_write_is_503_naming_the_event_id_to_retry_with(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """The stream is gone under a running gateway: a write is not acknowledged, so it is 503
    publish_failed with Retry-After and the event id it was sent with; once the stream is
    back, retrying with that id (Idempotency-Key) stores it, once."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, headers=auth(keys["alpha"])) as http,
    ):
        assert (await http.post("/v1/namespaces/alpha/workflows", json=WORKFLOW)).status_code == 201
        await event_log.js.delete_stream(settings.stream.name)
        try:
            failed = await http.post("/v1/namespaces/alpha/workflows", json=WORKFLOW)
            body = _problem(failed, 503, "publish_failed")
            assert int(failed.headers["retry-after"]) >= 1
            event_id = body["event_id"]
            assert event_id in body["detail"]
        finally:
            await event_log.ensure()
        retried = await http.post(
            "/v1/namespaces/alpha/workflows", json=WORKFLOW, headers={"Idempotency-Key": event_id}
        )
        assert retried.status_code == 201 and retried.json()["event_id"] == event_id
        again = await http.post(
            "/v1/namespaces/alpha/workflows", json=WORKFLOW, headers={"Idempotency-Key": event_id}
        )
        assert again.status_code == 200 and again.json()["duplicate"] is True
    assert (await event_log.state()).messages == 1
