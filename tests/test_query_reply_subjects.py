"""The query service answers only inboxes: a request's reply subject cannot make the engine
publish anywhere else (review of issue 12: the reply subject was a confused deputy).

faststream answered on whatever reply subject the asker set, and the engine's user may publish
to ``>``: agent-alpha, allowed only ``engram.query.alpha.*`` and ``_INBOX_alpha.>``, asked
``engram.query.alpha.search`` with reply ``$KV.ENGRAM_ENGINE.signing.ENGRAM`` and the engine
overwrote its own engine-key record (every tenant's engine then refuses to start), and likewise
wrote into the lease bucket, into beta's event subjects and into the dead letters. Now a reply
goes only under ``_INBOX.`` or, for a tenant's verb, the tenant's ``_INBOX_<namespace>.``; any
other reply subject gets no reply and a warning (never the request's content).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError

from engine import MemoryClient
from engine.connection import connect
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog
from engine.stream.engine_key import BUCKET as ENGINE_KEY_BUCKET
from engine.subjects import is_reply_inbox
from engram.app import Engine
from engram.auth import plan_users
from engram.cli.auth_verbs import write_authorization
from tests.engines import running, settle
from tests.servers import authorized_server, credentials

QUIET = 0.5
"""Seconds a reply that must not come is waited for (after a request that is answered)."""
SEARCH = json.dumps({"text": "deployed the service"}).encode()


def test_only_inboxes_are_reply_subjects() -> None:
    """``_INBOX.<...>`` for every query; ``_INBOX_<ns>.<...>`` only for ``ns``'s own verbs;
    never a stream's, a bucket's, a dead-letter subject, another tenant's inbox, a bare prefix,
    an empty token or a wildcard."""
    assert is_reply_inbox("_INBOX.abc.1", None)
    assert is_reply_inbox("_INBOX.operator.abc.2", "alpha")
    assert is_reply_inbox("_INBOX_alpha.abc.3", "alpha")
    for reply, namespace in [
        ("_INBOX_alpha.abc", None),
        ("_INBOX_alpha.abc", "beta"),
        ("_INBOX_alpha2.abc", "alpha"),
        ("$KV.ENGRAM_ENGINE.signing.ENGRAM", "alpha"),
        ("$KV.ENGRAM_LEASES.x", None),
        ("memory.task.executed.beta", "alpha"),
        ("engram.deadletter.x", None),
        ("_INBOX", None),
        ("_INBOX.", None),
        ("_INBOX..x", None),
        ("_INBOX.>", None),
        ("_INBOX.a.*", None),
        ("_INBOX.a b", None),
        ("_INBOXES.a", None),
        ("", "alpha"),
    ]:
        assert not is_reply_inbox(reply, namespace), (reply, namespace)


def _bad_replies(stream: str, bucket: str) -> list[str]:
    return [
        f"$KV.{bucket}.x",
        f"$KV.{ENGINE_KEY_BUCKET}.signing.{stream}",
        "memory.task.executed.beta",
        "engram.deadletter.x",
        "_INBOX_beta.stolen",
    ]


async def _stream_messages(nc: NatsClient, name: str) -> int:
    try:
        return (await nc.jetstream().stream_info(name)).state.messages
    except NotFoundError:
        return 0


async def test_a_request_whose_reply_is_not_an_inbox_gets_no_reply_and_changes_nothing(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Requests on ``engram.query.default.search`` and on the operator's ``engram.query.status``
    with reply ``$KV.<bucket>.x``, the engine-key record, ``memory.task.executed.beta``,
    ``engram.deadletter.x`` and beta's inbox: nothing is published there (a subscriber hears
    nothing), the KV records, the stream's beta subject and the dead letters are untouched,
    and a warning names the reply subject but not the request. The same requests with an
    inbox reply are answered, on ``_INBOX.`` and, on default's subject, on
    ``_INBOX_default.``."""
    stream = settings.stream.name
    bucket = f"{stream}_KV"
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=bucket)
    await kv.put("x", b"before")
    heard: list[Msg] = []

    async def on_message(msg: Msg) -> None:
        heard.append(msg)

    replies = _bad_replies(stream, bucket)
    try:
        async with running(settings, nc, tmp_path / "engine") as engine:
            async with MemoryClient(settings=settings) as memory:
                await memory.store_execution(
                    task_id="t-1", execution_summary="deployed the service", success=True
                )
            await settle(engine)
            engine_kv = await js.key_value(ENGINE_KEY_BUCKET)
            key_before = await engine_kv.get(f"signing.{stream}")
            dead = await _stream_messages(nc, f"{stream}_DLQ")
            for reply in replies:
                await nc.subscribe(reply, cb=on_message)
            await nc.flush()
            with structlog.testing.capture_logs() as logs:
                for subject, body in (
                    ("engram.query.default.search", SEARCH),
                    ("engram.query.status", b"{}"),
                ):
                    for reply in replies:
                        await nc.publish(subject, body, reply=reply)
                    answered = await nc.request(subject, body, timeout=5)
                    assert "error" not in json.loads(answered.data)
                await asyncio.sleep(QUIET)
            tenant_inbox = await nats.connect(str(settings.nats.url), inbox_prefix="_INBOX_default")
            try:
                answered = await tenant_inbox.request(
                    "engram.query.default.search", SEARCH, timeout=5
                )
                assert json.loads(answered.data)["hits"][0]["task_id"] == "t-1"
            finally:
                await tenant_inbox.close()
            assert engine.key is not None
            assert (await engine_kv.get(f"signing.{stream}")).revision == key_before.revision
        assert heard == []
        assert (await kv.get("x")).value == b"before"
        assert (await kv.status()).values == 1
        with pytest.raises(NotFoundError):  # nothing on beta's subject (a search's usage
            await js.get_last_msg(stream, "memory.task.executed.beta")  # event is elsewhere)
        assert await _stream_messages(nc, f"{stream}_DLQ") == dead
        warned = [e for e in logs if e["event"].startswith("query not answered")]
        assert sorted(e["reply"] for e in warned) == sorted(replies * 2)
        assert all(e["log_level"] == "warning" for e in warned)
        assert not [e for e in warned if "deployed" in json.dumps(e, default=str)]
    finally:
        with contextlib.suppress(BucketNotFoundError, NotFoundError):
            await js.delete_key_value(bucket)


# -- with engram auth's generated configuration ------------------------------------------------

ENGINE_KEY = "an engine key of at least thirty-two characters"


@pytest.fixture
def secured(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A nats-server running engram auth's configuration for alpha and beta: its URL and the
    directory of the credential files."""
    out = tmp_path_factory.mktemp("reply-tenants")
    write_authorization(out, plan_users(["alpha", "beta"]))
    with authorized_server(out, tmp_path / "server") as url:
        yield url, out


def _environ(out: Path, user: str, url: str) -> dict[str, str]:
    return {**credentials(out, user), "ENGRAM_NATS__URL": url}


@contextlib.asynccontextmanager
async def _engine(url: str, out: Path, data_dir: Path) -> AsyncIterator[tuple[Engine, NatsClient]]:
    settings = Settings.load(
        {
            **_environ(out, "engine", url),
            "ENGRAM_ENGINE_KEY": ENGINE_KEY,
            "ENGRAM_DATA_DIR": str(data_dir),
        }
    )
    client = await connect(settings.nats, url)
    try:
        await EventLog(client, StreamSettings()).ensure()
        async with running(settings, client, data_dir) as engine:
            async with asyncio.timeout(10):
                while engine.key is None or not engine.runners:
                    await asyncio.sleep(0.05)
            await settle(engine)  # its query service is up
            yield engine, client
    finally:
        await client.close()


async def test_agent_alpha_cannot_make_the_engine_write_its_key_record(
    secured: tuple[str, Path], tmp_path: Path
) -> None:
    """On engram auth's configuration: agent-alpha (a plain nats-py client with its own
    credentials) asks ``engram.query.alpha.search`` with reply
    ``$KV.ENGRAM_ENGINE.signing.ENGRAM``, ``$KV.ENGRAM_LEASES.x``, beta's event subject and a
    dead-letter subject. The engine-key record keeps its revision, nothing lands in the stream,
    the dead letters or the lease bucket (no key ``x``), the engine keeps answering alpha's
    own requests, and an engine started afterwards on the same stream starts (its key record
    is intact)."""
    url, out = secured
    environ = _environ(out, "agent-alpha", url)
    alpha = await nats.connect(
        url,
        user="agent-alpha",
        password=environ["ENGRAM_NATS__PASSWORD"],
        inbox_prefix=environ["ENGRAM_NATS__INBOX_PREFIX"],
    )
    replies = [
        f"$KV.{ENGINE_KEY_BUCKET}.signing.ENGRAM",
        "$KV.ENGRAM_LEASES.x",
        "memory.task.executed.beta",
        "engram.deadletter.x",
    ]
    try:
        async with _engine(url, out, tmp_path / "engine") as (engine, client):
            js = client.jetstream()
            record = await (await js.key_value(ENGINE_KEY_BUCKET)).get("signing.ENGRAM")
            for reply in replies:
                await alpha.publish("engram.query.alpha.search", SEARCH, reply=reply)
            answered = await alpha.request("engram.query.alpha.search", SEARCH, timeout=5)
            assert json.loads(answered.data)["hits"] == []
            await asyncio.sleep(QUIET)
            after = await (await js.key_value(ENGINE_KEY_BUCKET)).get("signing.ENGRAM")
            assert (after.revision, after.value) == (record.revision, record.value)
            assert await _stream_messages(client, "ENGRAM") == 0
            assert await _stream_messages(client, "ENGRAM_DLQ") == 0
            with pytest.raises((KeyNotFoundError, BucketNotFoundError)):
                await (await js.key_value("ENGRAM_LEASES")).get("x")
            await settle(engine)
            again = await alpha.request("engram.query.alpha.search", SEARCH, timeout=5)
            assert "error" not in json.loads(again.data)
        async with _engine(url, out, tmp_path / "engine") as (engine, _):
            assert engine.key is not None
    finally:
        await alpha.close()
