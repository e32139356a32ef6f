"""An operator refused a purge, a delete or a snapshot bucket hears so at once (review of issue 12).

The broker answers a publish it refuses with ``-ERR 'Permissions Violation'`` and no reply, so a
JetStream call waited for its timeout and ended in a TimeoutError saying nothing about why. The
operator's calls that a narrower user may be refused (purging the stream, deleting messages,
writing and deleting snapshot objects, the lifecycle events) are now raced against the refusal
(engine.permissions.refused_or): a PermissionDeniedError naming the subject, within a fraction
of the timeout, and nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from pydantic import SecretStr

from consumers.compaction import CompactionPlan, compact
from consumers.purge import purge_namespace
from engine.connection import connect
from engine.errors import PermissionDeniedError
from engine.events import WorkflowExecuted, encode_event, make_event
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from projections.snapshots.manifest import MANIFEST
from projections.snapshots.object_store import ObjectStoreSnapshots
from tests.servers import configured_server

STREAM = "S"
BUCKET = "B"
QUICK = 2.0
"""Seconds within which a refusal is reported (JetStream's timeout is five)."""
KEY = SecretStr("an engine key of at least thirty-two characters")
CONFIG = """
authorization {
  users = [
    { user: admin, password: admin, permissions: { publish: ">", subscribe: ">" } }
    { user: nopurge, password: nopurge, permissions: {
        publish: { allow: [">"], deny: ["$JS.API.STREAM.PURGE.S", "$O.B.>"] }
        subscribe: ">" } }
    { user: nomarker, password: nomarker, permissions: {
        publish: { allow: [">"], deny: ["memory.namespace.purged.beta"] }
        subscribe: ">" } }
    { user: nodelete, password: nodelete, permissions: {
        publish: { allow: [">"], deny: ["$JS.API.STREAM.MSG.DELETE.S"] }
        subscribe: ">" } }
  ]
}
"""


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with configured_server(tmp_path / "server", CONFIG) as found:
        yield found


def _nats(url: str, user: str) -> NatsSettings:
    return NatsSettings(url=url, user=user, password=user)


@pytest.fixture
async def admin(url: str) -> AsyncIterator[NatsClient]:
    """The admin's connection, with stream S holding beta's events: two on v2 subjects, one on
    a v1 subject (its namespace in the body only)."""
    client = await connect(_nats(url, "admin"), url)
    log = EventLog(client, StreamSettings(name=STREAM))
    await log.ensure()
    for _ in range(2):
        await log.append(
            make_event(
                WorkflowExecuted(workflow_steps=["a"], success=True, duration=1), namespace="beta"
            )
        )
    legacy = make_event(
        WorkflowExecuted(workflow_steps=["b"], success=True, duration=1), namespace="beta"
    )
    await client.jetstream().publish("memory.workflow.executed", encode_event(legacy))
    yield client
    await client.close()


async def _refused(attempt: Awaitable[object], subject: str) -> None:
    """``attempt`` raises PermissionDeniedError within QUICK seconds, for a publish on
    ``subject`` (or, ending in ``.``, below it)."""
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError) as caught:
        await attempt
    assert time.monotonic() - started < QUICK
    refused = caught.value.subject
    assert caught.value.operation == "publish"
    assert (
        refused.startswith(subject.lower())
        if subject.endswith(".")
        else refused == (subject.lower())
    )


async def _messages(admin: NatsClient) -> int:
    return (await admin.jetstream().stream_info(STREAM)).state.messages


async def test_a_refused_compaction_is_a_permission_error(url: str, admin: NatsClient) -> None:
    """``compact`` as a user refused ``$JS.API.STREAM.PURGE.S``: PermissionDeniedError at once,
    the stream keeps its three messages."""
    client = await connect(_nats(url, "nopurge"), url)
    try:
        plan = CompactionPlan("000000000003", 3, 1, 3, "now")
        await _refused(
            compact(client.jetstream(), Settings(stream=StreamSettings(name=STREAM)), plan),
            "$JS.API.STREAM.PURGE.S",
        )
    finally:
        await client.close()
    assert await _messages(admin) == 3


async def test_a_refused_purge_or_delete_is_a_permission_error(
    url: str, admin: NatsClient, tmp_path: Path
) -> None:
    """``purge_namespace`` of beta as a user refused the ``namespace.purged`` marker's subject,
    then as one refused the stream purge: PermissionDeniedError naming that subject at once,
    beta's v2 events still there. As a user allowed the purge but refused single deletes: the
    v2 events go, and the v1 message's delete is a PermissionDeniedError naming
    ``$JS.API.STREAM.MSG.DELETE.S`` at once (not a timeout, nor the stream's own deny_delete
    answer)."""
    for user, subject in (
        ("nomarker", "memory.namespace.purged.beta"),
        ("nopurge", "$JS.API.STREAM.PURGE.S"),
        ("nodelete", "$JS.API.STREAM.MSG.DELETE.S"),
    ):
        settings = Settings(
            data_dir=tmp_path / user,
            nats=_nats(url, user),
            stream=StreamSettings(name=STREAM),
            engine_key=KEY,
        )
        client = await connect(settings.nats, url)
        try:
            await _refused(purge_namespace(client, settings, "beta", "erasure request"), subject)
        finally:
            await client.close()
        subjects = (
            await admin.jetstream().stream_info(STREAM, subjects_filter="memory.>")
        ).state.subjects or {}
        if user in ("nomarker", "nopurge"):  # nothing purged (the marker may be stored)
            assert subjects["memory.workflow.executed.beta"] == 2
        else:
            assert "memory.workflow.executed.beta" not in subjects
        assert subjects["memory.workflow.executed"] == 1  # the v1 message stays


async def test_refused_snapshot_objects_are_a_permission_error(url: str, admin: NatsClient) -> None:
    """A user refused ``$O.B.>``: storing a snapshot file in bucket B and deleting a snapshot
    there are each a PermissionDeniedError at once; the admin's snapshot is still listed and
    readable."""
    stored = ObjectStoreSnapshots(admin.jetstream(), BUCKET)
    await stored.put("000000000001", "tables.parquet", b"rows")
    await stored.put("000000000001", MANIFEST, b"{}")
    client = await connect(_nats(url, "nopurge"), url)
    try:
        refused = ObjectStoreSnapshots(client.jetstream(), BUCKET)
        await _refused(refused.put("000000000002", "tables.parquet", b"x" * 300_000), "$O.B.C.")
        await _refused(refused.delete("000000000001"), "$O.B.M.")
    finally:
        await client.close()
    assert await stored.snapshot_ids() == ["000000000001"]
    assert await stored.get("000000000001", "tables.parquet") == b"rows"
