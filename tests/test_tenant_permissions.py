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

import re
import stat
import subprocess
from pathlib import Path

import pytest

from engine.connection import connect_kwargs
from engine.errors import ConfigurationError, UsageError
from engine.events.derived import PatternLearned
from engine.events.envelope import NAMESPACE_PATTERN
from engine.events.registry import AGENT_TYPES, DERIVED_TYPES, EVENT_TYPES, EventSpec
from engine.server import find_nats_server
from engine.settings import NatsSettings, Settings
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
from engram.cli.main import main

OPERATOR_VERBS = sorted(name for name, spec in CATALOGUE.items() if spec.operator)
TENANT_VERBS = sorted(name for name, spec in CATALOGUE.items() if not spec.operator)


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
    """agent-alpha: publish exactly alpha's agent event subjects, alpha's verbs (operator verbs
    denied by name) and the stream's info; hear exactly alpha's derived events and its own
    inbox; denied every derived subject and the stream's administration and reading."""
    users = _users()
    assert list(users) == ["engine", "operator", "agent-alpha", "agent-beta"]
    alpha = users["agent-alpha"]
    p = alpha.permissions
    events, service = EventSubjects("memory"), ServiceSubjects("engram")
    assert set(p.publish_allow) == {
        *(events.subject(t, "alpha") for t in AGENT_TYPES),
        "engram.query.alpha.*",
        "$JS.API.STREAM.INFO.ENGRAM",
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
    assert "$JS.API.STREAM.INFO.TEAM" in alpha.publish_allow
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
