"""``engram purge`` run as the ``operator`` user of ``engram auth``'s configuration, on a real
nats-server: every JetStream call a purge makes (the plan's counts and scans, the marker's
lookup, the stream purge, v1 deletes refused by the stream, the dead letters' deletion, the
snapshots of every namespace and of a namespace set, compaction below v1 messages) is within
the operator's permissions, so the purge finishes rather than ending in a timeout.

The operator may use the snapshot bucket of a namespace set only when ``engram auth --sets``
names the set: a subject wildcard is a whole token, so no pattern covers
``<stream>_SNAPSHOTS_<set key>``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from consumers.deadletters import dead_letter_stream_name
from consumers.tenants import set_key
from engine.connection import connect
from engine.events import (
    NAMESPACE_PATTERN,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    encode_event,
    make_event,
)
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog, ReadRange, StoredMessage, read_stream
from engram.auth import plan_users
from engram.cli.auth_verbs import write_authorization
from engram.cli.main import main
from projections.purging import belongs_to
from tests.engines import running, settle
from tests.servers import authorized_server, credentials
from tests.strategies.events import purge_of

pytestmark = pytest.mark.timeout(180)

ENGINE_KEY = "an engine key of at least thirty-two characters"
SET = ("alpha", "beta")


@pytest.fixture(autouse=True)
def _logging_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() configures structlog onto the stderr of its moment (pytest's capture here)."""
    monkeypatch.setattr("engram.cli.main.configure_logging", lambda **_: None)


@dataclass(frozen=True)
class Broker:
    url: str
    out: Path

    def environ(self, user: str) -> dict[str, str]:
        """The user's credentials file as an environment, pointed at this server."""
        return {
            **credentials(self.out, user),
            "ENGRAM_NATS__URL": self.url,
            "ENGRAM_NATS__REQUEST_TIMEOUT_S": "5",
            "ENGRAM_ENGINE_KEY": ENGINE_KEY,
        }


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A nats-server on the files ``engram auth --tenants alpha,beta,gamma --sets alpha,beta``
    writes."""
    out = tmp_path / "auth"
    write_authorization(out, plan_users(["alpha", "beta", "gamma"], sets=[SET]))
    with authorized_server(out, tmp_path / "server") as url:
        yield Broker(url, out)


@pytest.fixture
async def engine_nc(broker: Broker) -> AsyncIterator[NatsClient]:
    """The engine user's connection, with the stream created."""
    settings = Settings.load(broker.environ("engine"))
    client = await connect(settings.nats, broker.url)
    await EventLog(client, StreamSettings()).ensure()
    yield client
    await client.close()


async def _cli(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], *argv: str) -> int:
    """``engram ARGV`` in a thread (its own event loop) with ``environ`` as ENGRAM_*."""
    with monkeypatch.context() as patched:
        for key, value in environ.items():
            patched.setenv(key, value)
        return await asyncio.to_thread(main, list(argv))


def _json(out: str) -> Any:
    """The command's JSON line (the library's logs go to stdout too: logging is left alone)."""
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def _of_beta(letters: list[StoredMessage]) -> list[int]:
    """The dead letters (``consumers.deadletters`` bodies) of beta's messages."""
    found = []
    for message in letters:
        letter = json.loads(message.data)
        raw = base64.b64decode(letter["raw_base64"])
        if belongs_to(purge_of("beta"), letter["subject"], raw):
            found.append(message.sequence)
    return found


async def _messages(nc: NatsClient, stream: str, subject: str) -> list[StoredMessage]:
    return [m async for m in read_stream(nc.jetstream(), stream, ReadRange(subject=subject))]


async def _publish_tenants(nc: NatsClient) -> None:
    """As the engine user: alpha's, beta's and gamma's events on v2, one of beta's on v1, and a
    malformed message of beta on each kind of subject and one of alpha (dead letters)."""
    log = EventLog(nc, StreamSettings())
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    for namespace in ("alpha", "beta", "gamma"):
        await log.append_many(
            [
                make_event(SessionStarted(session_id="s1", goal=f"goal of {namespace}"),
                           namespace=namespace, occurred_at=t0),
                make_event(
                    TaskExecuted(task_id="t1", execution_summary=f"work of {namespace}",
                                 success=True),
                    namespace=namespace, session_id="s1", occurred_at=t0 + timedelta(seconds=1),
                ),
            ]
        )  # fmt: skip
    js = nc.jetstream()
    legacy = make_event(
        WorkflowExecuted(workflow_steps=["a", "b"], success=True, duration=1.0), namespace="beta"
    )
    await js.publish("memory.workflow.executed", encode_event(legacy))
    junk = {"namespace": "beta", "type": "workflow.executed", "oops": True}
    await js.publish("memory.workflow.executed.beta", json.dumps(junk).encode())
    await js.publish("memory.task.executed", json.dumps({**junk, "type": "task.executed"}).encode())
    await js.publish(
        "memory.workflow.executed.alpha", json.dumps({**junk, "namespace": "alpha"}).encode()
    )


async def test_the_operator_purges_a_tenant_with_its_dead_letters_and_snapshots(
    broker: Broker,
    engine_nc: NatsClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As ``operator`` (ENGRAM_ENGINE_KEY set), once an engine ran as ``engine``: snapshots
    of every namespace and of the set alpha,beta, then ``engram purge --namespace beta
    --compact-legacy --also-set alpha,beta --yes`` exits 0: beta's v2 messages, its v1 message
    (compacted below) and its dead letters (both kinds) are gone, each store's old snapshot
    is superseded by a new one; a second run resumes (no second marker). No refusal anywhere."""
    stream = "ENGRAM"
    engine_settings = Settings.load(
        {**broker.environ("engine"), "ENGRAM_DATA_DIR": str(tmp_path / "engine")}
    )
    operator = broker.environ("operator")
    data = str(tmp_path / "operator")
    await _publish_tenants(engine_nc)
    async with running(engine_settings, engine_nc, engine_settings.data_dir) as engine:
        await settle(engine)  # dead letters written; stopped: its logs would mix with the output
    dlq = dead_letter_stream_name(StreamSettings())
    letters = await _messages(engine_nc, dlq, "engram.deadletter.>")
    doomed = len(_of_beta(letters))
    assert doomed >= 2  # each malformed message of beta (v2 and v1), once per projection
    capsys.readouterr()
    taken: list[str] = []
    for argv in (
        ["snapshot", "--data-dir", data, "--json"],
        ["snapshot", "--data-dir", data, "--namespaces", ",".join(SET), "--json"],
    ):
        code = await _cli(monkeypatch, operator, *argv)
        printed = capsys.readouterr()
        assert code == 0, printed.err
        taken.append(_json(printed.out)["snapshot_id"])
    assert taken[1].endswith(set_key(SET))

    purge = ["purge", "--namespace", "beta", "--reason", "erasure 9", "--yes", "--json",
             "--data-dir", data, "--compact-legacy", "--also-set", ",".join(SET)]  # fmt: skip
    code = await _cli(monkeypatch, operator, *purge)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    done = _json(printed.out)
    point = done["purge_sequence"]
    assert done["resumed"] is False and done["v2_removed"] >= 3
    assert done["dead_letters_removed"] == doomed and done["compacted_below"] is not None
    assert done["v1_kept"] == []
    assert [(s["deleted"], s["snapshot_id"] is not None) for s in done["snapshots"]] == [
        ([taken[0]], True),
        ([taken[1]], True),
    ]
    events = await _messages(engine_nc, stream, "memory.>")
    beta = [m for m in events if belongs_to(purge_of("beta"), m.subject, m.data)]
    assert [(m.sequence, m.subject) for m in beta] == [(point, "memory.namespace.purged.beta")]
    letters = await _messages(engine_nc, dlq, "engram.deadletter.>")
    assert letters and _of_beta(letters) == []

    again = await _cli(monkeypatch, operator, *purge)
    printed = capsys.readouterr()
    assert again == 0, printed.err
    assert _json(printed.out)["resumed"] is True
    markers = await _messages(engine_nc, stream, "memory.namespace.purged.beta")
    assert [m.sequence for m in markers] == [point]


def test_the_operator_may_use_the_snapshot_buckets_of_the_sets_it_is_given() -> None:
    """Without sets the operator's permissions name the bucket of every namespace only (no
    pattern like ``OBJ_ENGRAM_SNAPSHOTS_*``, which nats-server reads as a literal token); with
    ``sets`` each set's bucket is named in full, stream creation, purge, reads and its
    ``$O.`` subjects; the operator may delete messages of the dead-letter stream."""
    key = set_key(SET)
    plain = {u.name: u for u in plan_users(["alpha", "beta"])}["operator"].permissions
    assert not [s for s in plain.publish_allow if "SNAPSHOTS_" in s]
    assert "$JS.API.STREAM.MSG.DELETE.ENGRAM_DLQ" in plain.publish_allow
    users = plan_users(["alpha", "beta"], sets=[["beta", "alpha"], SET, ["gamma"]])
    allowed = {u.name: u for u in users}["operator"].permissions.publish_allow
    bucket = f"OBJ_ENGRAM_SNAPSHOTS_{key}"
    assert {
        f"$JS.API.STREAM.CREATE.{bucket}",
        f"$JS.API.STREAM.PURGE.{bucket}",
        f"$JS.API.CONSUMER.CREATE.{bucket}.>",
        f"$JS.API.DIRECT.GET.{bucket}.>",
        f"$O.ENGRAM_SNAPSHOTS_{key}.>",
        f"$O.ENGRAM_SNAPSHOTS_{set_key(['gamma'])}.>",
    } <= set(allowed)
    assert len([s for s in allowed if s.startswith("$O.")]) == 3  # every namespace, two sets
    assert "*" not in "".join(s for s in allowed if "SNAPSHOTS" in s)


def test_engram_auth_sets_names_each_sets_bucket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``engram auth --sets 'alpha,beta; gamma'`` writes the operator's permissions for the
    buckets of both sets; a set with a name that is no namespace is refused (exit 2, the
    pattern named, nothing written)."""
    out = tmp_path / "auth"
    argv = ["auth", "--tenants", "alpha,beta,gamma", "--out", str(out)]
    assert main([*argv, "--sets", "alpha,beta; gamma"]) == 0
    config = (out / "authorization.conf").read_text()
    for names in (SET, ("gamma",)):
        assert f'"$O.ENGRAM_SNAPSHOTS_{set_key(names)}.>"' in config
    assert main([*argv, "--force", "--sets", "alpha,be.ta"]) == 2
    assert NAMESPACE_PATTERN in capsys.readouterr().err
    assert (out / "authorization.conf").read_text() == config
