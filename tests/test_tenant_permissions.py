"""Per-tenant permissions (issue 12, item 3): ``engram auth`` and the broker enforcing them.

The generator (engram/auth.py) is checked on its own: each tenant's agent may publish only its
agent event subjects and ask only its own non-operator verbs, hear only its own derived events
and inbox; names that are not one subject token are refused; the CLI writes 0600 credentials
and refuses to overwrite them. Then a real nats-server runs the generated configuration: tenant
alpha's agent is refused (PermissionDeniedError from the SDK at once, -ERR for a plain client)
beta's subjects, derived types, beta's announcements, beta's queries and the operator verbs,
while its own events and queries work end to end with an engine running as ``engine``; the
operator asks status and sql.
"""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from engine import MemoryClient
from engine.connection import connect, connect_kwargs
from engine.errors import ConfigurationError, PermissionDeniedError, UsageError
from engine.events import WorkflowExecuted, make_event
from engine.events.derived import PatternLearned
from engine.events.envelope import NAMESPACE_PATTERN
from engine.events.registry import AGENT_TYPES, DERIVED_TYPES, EVENT_TYPES, EventSpec
from engine.permissions import Violation, inbox_prefix_of, parse_violation, refused_or, watch
from engine.server import find_nats_server
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import AppendResult, EventLog
from engine.subjects import EventSubjects, ServiceSubjects
from engine.verbs import CATALOGUE
from engram.auth import (
    LIFECYCLE_TYPES,
    TENANT_HEARD_TYPES,
    NatsUser,
    bcrypt_hash,
    check_tenants,
    credentials_env,
    new_credentials,
    plan_users,
    render_authorization,
)
from engram.cli.auth_verbs import write_authorization
from engram.cli.main import main
from tests.engines import running, settle
from tests.servers import authorized_server, credentials

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "tenants"
OPERATOR_VERBS = sorted(name for name, spec in CATALOGUE.items() if spec.operator)
TENANT_VERBS = sorted(name for name, spec in CATALOGUE.items() if not spec.operator)


@pytest.fixture(autouse=True)
def _logging_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() configures structlog onto the stderr of its moment, pytest's capture here, which
    is closed after the test while engines of later tests still log: not in this module."""
    monkeypatch.setattr("engram.cli.main.configure_logging", lambda **_: None)


def _users(
    stream: str = "ENGRAM", event_prefix: str = "memory", service_prefix: str = "engram"
) -> dict[str, NatsUser]:
    users = plan_users(
        ["beta", "alpha", "alpha"],
        stream=stream,
        event_prefix=event_prefix,
        service_prefix=service_prefix,
    )
    return {u.name: u for u in users}


def test_every_derived_type_is_decided() -> None:
    """Each derived type of the registry is either heard by its tenant or a lifecycle type the
    operator publishes; none is both, and an undecided new one stops the generator."""
    assert set(DERIVED_TYPES) <= TENANT_HEARD_TYPES | LIFECYCLE_TYPES
    assert not TENANT_HEARD_TYPES & LIFECYCLE_TYPES
    assert set(DERIVED_TYPES) >= TENANT_HEARD_TYPES
    registry = {
        **EVENT_TYPES,
        "secret.derived": EventSpec("secret.derived", PatternLearned, 1, "engine"),
    }
    with pytest.raises(ValueError, match=r"secret\.derived"):
        plan_users(["alpha"], registry=registry)


def test_a_tenants_agent_publishes_asks_and_hears_only_its_own() -> None:
    """agent-alpha: publish exactly alpha's agent event subjects and alpha's verbs (operator
    verbs denied by name); hear exactly alpha's derived events and its own inbox; denied every
    derived subject, the stream's administration and reading, and its info (every tenant's
    subjects)."""
    users = _users()
    assert list(users) == ["engine", "operator", "agent-alpha", "agent-beta"]
    alpha = users["agent-alpha"]
    p = alpha.permissions
    events, service = EventSubjects("memory"), ServiceSubjects("engram")
    assert set(p.publish_allow) == {
        *(events.subject(t, "alpha") for t in AGENT_TYPES),
        "engram.query.alpha.*",
    }
    assert {service.tenant_query("alpha", v) for v in OPERATOR_VERBS} <= set(p.publish_deny)
    assert {events.subject(t, "beta") for t in DERIVED_TYPES} <= {
        s.replace("*", "beta") for s in p.publish_deny
    }
    assert {
        "$JS.API.CONSUMER.>",
        "$JS.API.STREAM.PURGE.>",
        "$JS.API.STREAM.DELETE.>",
        "$JS.API.STREAM.UPDATE.>",
        "$JS.API.STREAM.MSG.GET.ENGRAM",
        "$KV.ENGRAM_ENGINE.>",
        "$JS.API.STREAM.INFO.>",
        "$JS.API.STREAM.LIST",
    } <= set(p.publish_deny)
    assert set(p.subscribe_allow) == {
        *(events.subject(t, "alpha") for t in TENANT_HEARD_TYPES),
        "_INBOX_alpha.>",
    }
    assert events.subject("snapshot.created", "alpha") not in p.subscribe_allow
    assert alpha.inbox_prefix == "_INBOX_alpha"
    # nothing of beta's anywhere in alpha's allow lists, nothing of alpha's in beta's
    for user, other in (("agent-alpha", "beta"), ("agent-beta", "alpha")):
        perms = users[user].permissions
        allowed = (*perms.publish_allow, *perms.subscribe_allow)
        assert not [s for s in allowed if other in s.split(".") or s.startswith(f"_INBOX_{other}")]
        assert not [s for s in allowed if s in {">", "memory.>", "engram.>", "_INBOX.>"}]


def test_the_operator_and_the_engine() -> None:
    """engine may do everything; operator asks the operator verbs of every tenant and the
    operator subjects, reads and purges the stream, writes snapshots and publishes only the
    lifecycle events; it publishes no agent nor learner event and cannot change the stream."""
    users = _users()
    engine, operator = users["engine"].permissions, users["operator"].permissions
    assert (engine.publish_allow, engine.subscribe_allow, engine.publish_deny) == (
        (">",),
        (">",),
        (),
    )
    allowed = set(operator.publish_allow)
    assert {f"engram.query.*.{v}" for v in OPERATOR_VERBS} | {"engram.query.*"} <= allowed
    assert not {f"engram.query.*.{v}" for v in TENANT_VERBS} & allowed
    assert {
        "$JS.API.STREAM.INFO.>",
        "$JS.API.STREAM.PURGE.ENGRAM",
        "$JS.API.CONSUMER.CREATE.ENGRAM.>",
        "$JS.API.CONSUMER.CREATE.ENGRAM_DLQ.>",
        "$O.ENGRAM_SNAPSHOTS.>",
        "memory.snapshot.created.*",
        "memory.namespace.purged.*",
    } <= allowed
    published = {s for s in allowed if s.startswith("memory.")}
    assert published == {f"memory.{t}.*" for t in LIFECYCLE_TYPES}
    assert {"$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>", "$KV.ENGRAM_ENGINE.>"} <= set(
        operator.publish_deny
    )
    assert operator.subscribe_allow == ("_INBOX.operator.>",)
    assert users["operator"].inbox_prefix == "_INBOX.operator"


def test_other_stream_and_prefixes() -> None:
    """Every subject follows the stream name and the two prefixes it is given."""
    users = _users(stream="TEAM", event_prefix="team.memory", service_prefix="team.engram")
    alpha = users["agent-alpha"].permissions
    assert "team.memory.workflow.executed.alpha" in alpha.publish_allow
    assert "team.engram.query.alpha.*" in alpha.publish_allow
    assert "team.engram.query.alpha.sql" in alpha.publish_deny
    assert "team.memory.pattern.learned.alpha" in alpha.subscribe_allow
    listed = [
        s
        for u in users.values()
        for s in (*u.permissions.publish_allow, *u.permissions.subscribe_allow)
    ]
    assert not [s for s in listed if s.startswith(("memory.", "engram."))]
    assert "$JS.API.STREAM.PURGE.TEAM" in users["operator"].permissions.publish_allow


@pytest.mark.parametrize("name", ["al.pha", "a*", "b>", "a b", "", "x" * 65, "tab\t", "ünï", "a/b"])
def test_a_tenant_that_is_not_one_token_is_refused(name: str) -> None:
    """A tenant name that is not a valid namespace (one NATS subject token) is refused, the
    error naming the pattern; so is no tenant at all."""
    with pytest.raises(UsageError) as refused:
        plan_users(["alpha", name])
    assert NAMESPACE_PATTERN in str(refused.value)
    with pytest.raises(UsageError, match="at least one tenant"):
        check_tenants([])


def test_the_cli_refuses_a_bad_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """engram auth --tenants 'alpha,be.ta' exits 2 naming the pattern and writes nothing."""
    assert main(["auth", "--tenants", "alpha,be.ta", "--out", str(tmp_path / "out")]) == 2
    assert NAMESPACE_PATTERN in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_rendered_block_is_a_valid_server_config(tmp_path: Path) -> None:
    """nats-server accepts the generated block included from a config (`nats-server -t`), with
    bcrypt hashes quoted so that their '$' is not read as a variable."""
    users = _users()
    credentials = new_credentials(users.values(), hasher=lambda p: bcrypt_hash(p, rounds=4))
    text = render_authorization(users.values(), {n: c.stored for n, c in credentials.items()})
    assert all(f'"{c.stored}"' in text for c in credentials.values())
    assert not [c.password for c in credentials.values() if c.password in text]
    (tmp_path / "authorization.conf").write_text(text)
    (tmp_path / "server.conf").write_text(
        f'listen: "127.0.0.1:-1"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        'include "authorization.conf"\n'
    )
    checked = subprocess.run(
        [str(find_nats_server()), "-c", str(tmp_path / "server.conf"), "-t"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_credentials_file_is_what_the_settings_read() -> None:
    """A credentials file's ENGRAM_NATS__* lines give the SDK its user, password and inbox."""
    users = _users()
    alpha = users["agent-alpha"]
    credential = new_credentials([alpha], hasher=str)["agent-alpha"]
    text = credentials_env(alpha, credential, url="nats://broker:4222")
    environ = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    settings = Settings.load(environ)
    assert (settings.nats.user, settings.nats.password, settings.nats.inbox_prefix) == (
        "agent-alpha",
        credential.password,
        "_INBOX_alpha",
    )
    assert settings.nats.url == "nats://broker:4222"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_cli_writes_secret_files_and_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """engram auth writes authorization.conf and one 0600 credentials file per user (in a 0700
    directory), with bcrypt hashes in the config and each clear password only in its file; a
    second run refuses to overwrite them (exit 2, files unchanged), --force writes new ones."""
    out = tmp_path / "auth"
    assert main(["auth", "--tenants", "alpha,beta", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'include "authorization.conf"' in printed
    names = ["engine", "operator", "agent-alpha", "agent-beta"]
    files = {n: out / "credentials" / f"{n}.env" for n in names}
    assert sorted(p.name for p in (out / "credentials").iterdir()) == sorted(
        f"{n}.env" for n in names
    )
    assert _mode(out / "credentials") == 0o700
    assert {n: _mode(p) for n, p in files.items()} == dict.fromkeys(names, 0o600)
    config = (out / "authorization.conf").read_text()
    passwords = {
        n: re.search(r"^ENGRAM_NATS__PASSWORD=(.+)$", p.read_text(), re.M)[1]  # type: ignore[index]
        for n, p in files.items()
    }
    assert len(set(passwords.values())) == 4
    assert not [pw for pw in passwords.values() if pw in config]
    assert len(re.findall(r'password: "\$2b\$11\$', config)) == 4
    before = {n: p.read_text() for n, p in files.items()}

    assert main(["auth", "--tenants", "alpha,beta", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert {n: p.read_text() for n, p in files.items()} == before
    assert (out / "authorization.conf").read_text() == config

    files["agent-alpha"].chmod(0o644)
    assert main(["auth", "--tenants", "alpha,beta", "--out", str(out), "--force"]) == 0
    assert all(files[n].read_text() != before[n] for n in names)
    assert {n: _mode(p) for n, p in files.items()} == dict.fromkeys(names, 0o600)


def test_the_inbox_prefix_is_a_setting_passed_to_nats() -> None:
    """ENGRAM_NATS__INBOX_PREFIX reaches nats-py's connect (default nats-py's _INBOX); a
    prefix with a wildcard or an empty token is refused."""
    assert connect_kwargs(NatsSettings(), "nats://h:4222")["inbox_prefix"] == "_INBOX"
    settings = Settings.load({"ENGRAM_NATS__INBOX_PREFIX": "_INBOX_alpha"})
    assert connect_kwargs(settings.nats, "nats://h:4222")["inbox_prefix"] == "_INBOX_alpha"
    for bad in ("_INBOX.*", "_INBOX.>", "a..b", "", "in box"):
        with pytest.raises(ConfigurationError, match="inbox_prefix"):
            Settings.load({"ENGRAM_NATS__INBOX_PREFIX": bad})


# -- on a real nats-server running the generated configuration ---------------------------------

ENGINE_KEY = "an engine key of at least thirty-two characters"
QUICK = 2.0
"""Seconds within which a refusal is reported (the request timeout, 5 s, is well above it)."""


@dataclass(frozen=True)
class Broker:
    url: str
    out: Path

    def environ(self, user: str) -> dict[str, str]:
        """The user's credentials file as an environment, pointed at this server."""
        environ = credentials(self.out, user)
        return {**environ, "ENGRAM_NATS__URL": self.url, "ENGRAM_NATS__REQUEST_TIMEOUT_S": "5"}

    def settings(self, user: str, data_dir: Path, **environ: str) -> Settings:
        extra = {"ENGRAM_ENGINE_KEY": ENGINE_KEY} if user in ("engine", "operator") else {}
        return Settings.load(
            {**self.environ(user), **extra, **environ, "ENGRAM_DATA_DIR": str(data_dir)}
        )

    async def raw(self, user: str) -> tuple[NatsClient, list[str]]:
        """A plain nats-py client logged in as ``user`` (its inbox prefix), and the errors the
        server sent it."""
        environ = self.environ(user)
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        client = await nats.connect(
            self.url,
            user=user,
            password=environ["ENGRAM_NATS__PASSWORD"],
            inbox_prefix=environ["ENGRAM_NATS__INBOX_PREFIX"],
            error_cb=on_error,
        )
        return client, errors


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """engram auth's files for tenants alpha and beta (bcrypt hashes at the default cost)."""
    out = tmp_path_factory.mktemp("tenants")
    write_authorization(out, plan_users(["alpha", "beta"]))
    return out


@pytest.fixture
def broker(generated: Path, tmp_path: Path) -> Iterator[Broker]:
    """A nats-server whose config includes the generated authorization.conf as it is."""
    with authorized_server(generated, tmp_path / "server") as url:
        yield Broker(url, generated)


@pytest.fixture
async def engine_nc(broker: Broker) -> AsyncIterator[NatsClient]:
    """The engine user's connection, with the stream created."""
    client = await connect(broker.settings("engine", Path("unused")).nats, broker.url)
    await EventLog(client, StreamSettings()).ensure()
    yield client
    await client.close()


def _refused(errors: list[str], operation: str, subject: str) -> bool:
    return f'permissions violation for {operation} to "{subject.lower()}"' in [
        e.lower().removeprefix("nats: ") for e in errors
    ]


async def test_a_plain_client_of_alpha_gets_the_servers_refusals(
    broker: Broker, engine_nc: NatsClient
) -> None:
    """As agent-alpha with a plain nats-py client: publishing on beta's subjects or a derived
    type, listening to beta's (or every tenant's) announcements or beta's inbox, asking beta or
    an operator verb, and reading the stream are each answered by the server's -ERR
    'Permissions Violation'; alpha's own announcement subject and inbox are not."""
    client, errors = await broker.raw("agent-alpha")
    try:
        await client.subscribe("memory.pattern.learned.alpha")
        await client.subscribe("memory.session.compacted.alpha")
        await client.subscribe("_INBOX_alpha.mine")
        await client.flush()
        assert errors == []
        published = [
            "memory.workflow.executed.beta",
            "memory.workflow.executed",
            "memory.pattern.learned.alpha",
            "memory.memory.recalled.alpha",
            "engram.query.beta.search",
            "engram.query.alpha.sql",
            "engram.query.alpha.status",
            "engram.query.alpha.export",
            "engram.query.alpha.checkpoints",
            "engram.query.status",
            "$JS.API.CONSUMER.CREATE.ENGRAM",
            "$JS.API.STREAM.MSG.GET.ENGRAM",
            "$JS.API.STREAM.PURGE.ENGRAM",
        ]
        for subject in published:
            await client.publish(subject, b"{}")
        subscribed = [
            "memory.pattern.learned.beta",
            "memory.pattern.learned.*",
            "memory.snapshot.created.alpha",
            "_INBOX_beta.>",
            "_INBOX.>",
        ]
        for subject in subscribed:
            await client.subscribe(subject)
        await client.flush()
        async with asyncio.timeout(5):
            while len(errors) < len(published) + len(subscribed):
                await asyncio.sleep(0.02)
        assert [s for s in published if not _refused(errors, "publish", s)] == []
        assert [s for s in subscribed if not _refused(errors, "subscription", s)] == []
    finally:
        await client.close()
    stream = await engine_nc.jetstream().stream_info("ENGRAM")
    assert stream.state.messages == 0


async def test_the_sdk_reports_a_refusal_at_once(
    broker: Broker, engine_nc: NatsClient, tmp_path: Path
) -> None:
    """MemoryClient as agent-alpha stores alpha's events; an event in beta's namespace, a
    derived type sent past the SDK's own check, a query of beta and an operator verb each
    raise PermissionDeniedError naming the subject, within QUICK seconds (not the 5 s
    timeout); in a batch, beta's event is a PermissionDeniedError (after the ack timeout) and
    alpha's is stored.
    With the default inbox prefix its replies cannot reach it: PermissionDeniedError naming
    ENGRAM_NATS__INBOX_PREFIX, not a timeout."""
    settings = broker.settings("agent-alpha", tmp_path)
    async with MemoryClient(settings=settings, namespace="alpha") as memory:
        assert await memory.store_workflow(workflow_steps=["a"], success=True, duration=1) == 1

        async def refused(attempt: Awaitable[object], subject: str) -> PermissionDeniedError:
            started = time.monotonic()
            with pytest.raises(PermissionDeniedError) as caught:
                await attempt
            assert time.monotonic() - started < QUICK
            assert (caught.value.operation, caught.value.subject) == ("publish", subject)
            assert subject in str(caught.value) and "agent-alpha" in str(caught.value)
            return caught.value

        await refused(
            memory.store_workflow(workflow_steps=["a"], success=True, duration=1, namespace="beta"),
            "memory.workflow.executed.beta",
        )
        learned = make_event(
            PatternLearned(
                pattern_id="p",
                version=1,
                pattern_type="workflow",
                task_type="t",
                caused_by_sequence=1,
                success_rate=1.0,
                confidence=1.0,
                sample_size=1,
                pattern={"steps": ["a"]},
            ),
            namespace="alpha",
        )
        await refused(memory.log.append(learned), "memory.pattern.learned.alpha")
        await refused(memory.status(), "engram.query.alpha.status")
        async with MemoryClient(settings=settings, namespace="beta") as posing:
            await refused(posing.get_best_workflow_for_task("t"), "engram.query.beta.best_workflow")
    # a batch does not stop for one refusal: it is known once the ack timeout has passed
    batching = broker.settings("agent-alpha", tmp_path, ENGRAM_NATS__REQUEST_TIMEOUT_S="0.5")
    async with MemoryClient(settings=batching, namespace="alpha") as memory:
        steps = WorkflowExecuted(workflow_steps=["b"], success=True, duration=1)
        report = await memory.publish_many(
            [memory.event(steps), memory.event(steps, namespace="beta")]
        )
        assert isinstance(report.results[0], AppendResult)
        assert isinstance(report.results[1], PermissionDeniedError)
        assert report.results[1].subject == "memory.workflow.executed.beta"
    stream = await engine_nc.jetstream().stream_info("ENGRAM")
    assert stream.state.messages == 2

    lost = broker.settings("agent-alpha", tmp_path, ENGRAM_NATS__INBOX_PREFIX="_INBOX")
    started = time.monotonic()
    with pytest.raises(PermissionDeniedError, match="ENGRAM_NATS__INBOX_PREFIX") as caught:
        async with MemoryClient(settings=lost, namespace="alpha"):
            pass
    assert time.monotonic() - started < QUICK
    assert caught.value.operation == "subscription"


def test_the_deploy_example_is_what_engram_auth_writes() -> None:
    """deploy/tenants/authorization.conf is the generator's output for alpha and beta today
    (only the password hashes differ from one run to the next: rendered again with the file's
    own hashes it is byte for byte the same), and deploy/tenants/nats-server.conf parses."""
    example = DEPLOY / "authorization.conf"
    text = example.read_text()
    users = plan_users(["alpha", "beta"])
    stored = dict(re.findall(r'user: "([^"]+)"\n\s+password: "([^"]+)"', text))
    assert sorted(stored) == sorted(u.name for u in users)
    assert all(h.startswith("$2b$11$") for h in stored.values())
    assert render_authorization(users, stored) == text
    checked = subprocess.run(
        [str(find_nats_server()), "-c", str(DEPLOY / "nats-server.conf"), "-t"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


async def _cli(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], *argv: str) -> int:
    """``engram ARGV`` in a thread (its own event loop) with ``environ`` as ENGRAM_*."""
    with monkeypatch.context() as patched:
        for key, value in environ.items():
            patched.setenv(key, value)
        return await asyncio.to_thread(main, list(argv))


async def test_the_operator_runs_its_commands_and_nothing_else(
    broker: Broker,
    engine_nc: NatsClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As ``operator`` (with ENGRAM_ENGINE_KEY), once an engine ran as ``engine``: stream info,
    tail, dead-letters, snapshot, replay (whole and from the snapshot) and compact all work
    within the operator's permissions; publishing an agent event is a PermissionDeniedError
    (exit 1) and `engram stream apply` cannot change the stream."""
    engine_settings = broker.settings("engine", tmp_path / "engine")
    alpha = broker.settings("agent-alpha", tmp_path / "alpha")
    async with running(engine_settings, engine_nc, engine_settings.data_dir) as engine:
        async with MemoryClient(settings=alpha, namespace="alpha") as memory:
            for _ in range(3):
                await memory.store_workflow(workflow_steps=["a"], success=True, duration=1)
        client, _ = await broker.raw("agent-alpha")
        await client.publish("memory.workflow.executed.alpha", b"not json")  # a dead letter
        await client.flush()
        await client.close()
        await settle(engine)
    operator = {**broker.environ("operator"), "ENGRAM_ENGINE_KEY": ENGINE_KEY}
    data = str(tmp_path / "operator")
    capsys.readouterr()
    for argv in (
        ["stream", "info"],
        ["tail"],
        ["dead-letters"],
        ["snapshot", "--data-dir", data],
        ["replay", "--data-dir", str(tmp_path / "replayed")],
        ["replay", "--data-dir", str(tmp_path / "restored"), "--from-snapshot"],
        ["compact", "--older-than", "0"],
    ):
        assert await _cli(monkeypatch, operator, *argv) == 0, (argv, capsys.readouterr().err)
    printed = capsys.readouterr().out
    assert "invalid_json" in printed  # dead-letters read the DLQ stream
    assert "snapshot 000000000005 covers" in printed  # and published snapshot.created (#6)
    assert "replayed 6 events" in printed and "replayed 1 events (sequences 6..6)" in printed
    assert "purged 5 events" in printed
    assert (
        await _cli(
            monkeypatch,
            operator,
            "publish",
            "workflow.executed",
            "--namespace",
            "alpha",
            "--data",
            '{"workflow_steps": ["a"], "success": true, "duration": 1}',
        )
        == 1
    )
    assert "refused user operator the publish" in capsys.readouterr().err
    raised = ["stream", "apply", "--duplicate-window", "600"]  # a stream update
    assert await _cli(monkeypatch, operator, *raised) == 1
    assert "refused user operator the publish to '$js.api.stream.update.engram'" in (
        capsys.readouterr().err
    )
    info = await engine_nc.jetstream().stream_info("ENGRAM")
    assert (info.config.duplicate_window, info.state.messages, info.state.last_seq) == (120, 1, 6)


async def test_tenants_write_ask_and_hear_their_own_with_an_engine(
    broker: Broker, engine_nc: NatsClient, tmp_path: Path
) -> None:
    """With an engine running as ``engine``: agent-alpha stores workflows and an execution,
    asks its own queries (best workflow, search) on engram.query.alpha.<verb> and hears its
    signed pattern.learned on memory.pattern.learned.alpha; agent-beta's search of the same
    text finds nothing of alpha's; the operator asks status and sql (every tenant's rows)."""
    engine_settings = broker.settings("engine", tmp_path / "engine", ENGRAM_QUERY_SQL="true")
    alpha = broker.settings("agent-alpha", tmp_path / "alpha")
    beta = broker.settings("agent-beta", tmp_path / "beta")
    operator = broker.settings("operator", tmp_path / "operator")
    listener, errors = await broker.raw("agent-alpha")
    heard: list[Msg] = []

    async def on_learned(msg: Msg) -> None:
        heard.append(msg)

    try:
        await listener.subscribe("memory.pattern.learned.alpha", cb=on_learned)
        async with running(engine_settings, engine_nc, engine_settings.data_dir) as engine:
            async with asyncio.timeout(10):
                while engine.key is None or not engine.runners:
                    await asyncio.sleep(0.05)
            async with (
                MemoryClient(settings=alpha, namespace="alpha") as memory,
                MemoryClient(settings=beta, namespace="beta") as other,
                MemoryClient(settings=operator, namespace="alpha") as ops,
            ):
                for _ in range(4):
                    await memory.store_workflow(
                        task_type="testing",
                        workflow_steps=["plan", "code"],
                        success=True,
                        duration=1,
                    )
                await memory.store_execution(
                    task_id="t-1", execution_summary="deployed the service", success=True
                )
                await other.store_execution(
                    task_id="b-1", execution_summary="painted the fence", success=True
                )
                await settle(engine)
                best = await memory.get_best_workflow_for_task("testing")
                hits = await memory.search_similar("deployed the service")
                beta_hits = await other.search_similar("deployed the service")
                status = await ops.status()
                rows = await ops.sql(
                    "SELECT namespace, count(*) AS n FROM workflows GROUP BY namespace"
                )
            await settle(engine)
            key = engine.key
        assert key is not None
    finally:
        await listener.close()
    assert best is not None and best.workflow_steps == ["plan", "code"]
    assert [h.task_id for h in hits][:1] == ["t-1"]
    assert "t-1" not in [h.task_id for h in beta_hits]
    assert status.messages >= 6 and status.projections
    assert rows.rows == [{"namespace": "alpha", "n": 4}]
    assert heard and all(key.genuine(m.data, dict(m.headers or {})) for m in heard)
    assert {m.subject for m in heard} == {"memory.pattern.learned.alpha"}
    assert errors == []


def test_a_violation_is_read_from_what_nats_py_reports() -> None:
    """nats-py's error text for a refused publish or subscription (lowercased by it) gives the
    operation and the subject; any other error gives None."""
    assert parse_violation(
        nats.errors.Error('nats: permissions violation for publish to "memory.a.b.beta"')
    ) == Violation("publish", "memory.a.b.beta")
    assert parse_violation(
        'nats: Permissions Violation for Subscription to "_INBOX.x.*" using queue "q"'
    ) == Violation("subscription", "_inbox.x.*")
    assert parse_violation(nats.errors.Error("nats: stale connection")) is None


async def test_a_refusal_interrupts_only_its_own_operation() -> None:
    """refused_or raises PermissionDeniedError when a violation of its subject (or of its
    inbox) is recorded while it waits, and also when the operation failed meanwhile; another
    subject's violation, an operation that ends normally and a cancellation from outside are
    left as they are."""
    nc = NatsClient()
    found = watch(nc)
    inbox = inbox_prefix_of(nc)
    assert inbox == "_INBOX"

    async def refuse_soon(violation: Violation) -> None:
        await asyncio.sleep(0.01)
        found.record(violation)

    async def answer(after: float, value: str = "answer") -> str:
        await asyncio.sleep(after)
        return value

    async def fails(after: float) -> str:
        await asyncio.sleep(after)
        raise TimeoutError

    async def attempt(operation: Awaitable[str], violation: Violation) -> object:
        refusal = asyncio.create_task(refuse_soon(violation))
        try:
            return await refused_or(nc, operation, publishes="engram.query.beta.search")
        except PermissionDeniedError as exc:
            return exc
        finally:
            await refusal

    mine = Violation("publish", "engram.query.beta.search")
    denied = await attempt(answer(5), mine)
    assert isinstance(denied, PermissionDeniedError) and denied.subject == mine.subject
    inbox_refused = await attempt(answer(5), Violation("subscription", "_inbox.abc.*"))
    assert isinstance(inbox_refused, PermissionDeniedError)
    assert "ENGRAM_NATS__INBOX_PREFIX" in str(inbox_refused)
    # a refused reply subscription stays refused: the next request fails before it is sent
    assert isinstance(await attempt(answer(5), mine), PermissionDeniedError)
    fresh = NatsClient()
    found = watch(fresh)
    nc = fresh
    assert await attempt(answer(0.05), Violation("publish", "memory.a.b.c")) == "answer"
    assert await attempt(answer(0), mine) == "answer"
    assert isinstance(await attempt(fails(0.05), mine), PermissionDeniedError)
    waiting = asyncio.create_task(refused_or(nc, answer(5), publishes="x.y"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


def test_credentials_name_a_stream_that_is_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For another stream or prefixes (--stream, ENGRAM_STREAM__*) the credentials files say
    so too: the permissions name that stream's subjects, which a client with the defaults would
    never use. With the defaults they say nothing of the stream."""
    monkeypatch.setenv("ENGRAM_STREAM__SUBJECT_PREFIX", "team.memory")
    out = tmp_path / "auth"
    assert main(["auth", "--tenants", "alpha", "--out", str(out), "--stream", "TEAM"]) == 0
    text = (out / "credentials" / "agent-alpha.env").read_text()
    assert "ENGRAM_STREAM__NAME=TEAM\nENGRAM_STREAM__SUBJECT_PREFIX=team.memory\n" in text
    assert "SERVICE_PREFIX" not in text
    assert '"team.memory.workflow.executed.alpha"' in (out / "authorization.conf").read_text()
    monkeypatch.delenv("ENGRAM_STREAM__SUBJECT_PREFIX")
    assert main(["auth", "--tenants", "alpha", "--out", str(out), "--force"]) == 0
    assert "ENGRAM_STREAM__" not in (out / "credentials" / "agent-alpha.env").read_text()
