"""Connection errors say what failed and leak nothing (issue 10, finding 11): refused
credentials are reported as such at once, passwords never reach logs or ``status``, several
comma-separated URLs reach a cluster; and a persistent connection (the engine's) outlives an
outage."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine.connection import (
    BACKOFF_CAP_S,
    connect,
    connect_kwargs,
    reconnect_delay,
    redact_text,
    redact_url,
)
from engine.errors import AuthorizationError, ConnectionFailedError, EngramError
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.cli._common import exit_code_for, settings_from_args
from engram.cli.main import build_parser
from tests.servers import free_port

USER, PASSWORD = "alice", "s3cret-Pa55"
REPO = Path(__file__).resolve().parent.parent


class AuthServer(EmbeddedServer):
    """An embedded nats-server that requires a user and password."""

    def _write_config(self) -> Path:
        config = super()._write_config()
        config.write_text(
            config.read_text() + f'authorization {{ user: {USER}, password: "{PASSWORD}" }}\n'
        )
        return config


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    server = AuthServer(tmp_path_factory.mktemp("nats-auth"))
    server.start()
    yield server
    server.stop()


def with_credentials(url: str, user: str = USER, password: str = PASSWORD) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


async def run_verb(*argv: str) -> tuple[int, str, str]:
    """``engram ARGV`` in-process as ``main`` runs it: exit code, stdout, stderr."""
    args = build_parser().parse_args(list(argv))
    settings = settings_from_args(args, environ={})
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        structlog.testing.capture_logs(),
    ):
        try:
            outcome = args.handler(args, settings)
            code = outcome if isinstance(outcome, int) else await outcome
        except EngramError as exc:
            print(f"engram: {exc}", file=sys.stderr)
            code = exit_code_for(exc)
    return code, out.getvalue(), err.getvalue()


# -- authorization -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"user": USER, "password": "wrong"},
        {},
        {"token": "not-a-token"},
    ],
    ids=["wrong-password", "none", "token-instead"],
)
async def test_refused_credentials_raise_authorization_error_at_once(
    auth_server: AuthServer, credentials: dict[str, str]
) -> None:
    """Wrong or missing credentials raise AuthorizationError (a ConnectionFailedError) saying
    authorization failed, in well under the old 5 s of retries, and never echo a secret."""
    started = time.monotonic()
    with pytest.raises(AuthorizationError) as refused:
        await connect(NatsSettings(**credentials), auth_server.url)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    message = str(refused.value)
    assert "authorization failed" in message
    assert auth_server.url in message
    assert "no server answered" not in message
    for secret in credentials.values():
        if secret != USER:
            assert secret not in message
    if not credentials:
        assert "no credentials were given" in message


async def test_a_password_in_the_url_is_refused_without_being_shown(
    auth_server: AuthServer,
) -> None:
    """A wrong password inside the URL is refused as authorization and the error shows the URL
    with the password hidden; the right one connects."""
    wrong = with_credentials(auth_server.url, password="hunter2-wrong")
    with pytest.raises(AuthorizationError) as refused:
        await connect(NatsSettings(), wrong)
    assert "hunter2-wrong" not in str(refused.value)
    assert f"{USER}:***@" in str(refused.value)
    nc = await connect(NatsSettings(), with_credentials(auth_server.url))
    try:
        assert nc.is_connected
    finally:
        await nc.close()


async def test_cli_exits_1_at_once_naming_authorization(
    auth_server: AuthServer, tmp_path: Path
) -> None:
    """``engram status`` with a wrong password exits 1 within a second with one line saying
    authorization failed, and the password appears neither there nor on stdout."""
    started = time.monotonic()
    code, out, err = await run_verb(
        "status",
        "--nats-url",
        auth_server.url,
        "--nats-user",
        USER,
        "--nats-password",
        "wrong-Pa55",
        "--data-dir",
        str(tmp_path),
    )
    assert time.monotonic() - started < 2.0  # the old retries took 5 s
    assert code == 1
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("engram: authorization failed at NATS ")
    assert "wrong-Pa55" not in err


async def test_status_output_hides_the_password(auth_server: AuthServer, tmp_path: Path) -> None:
    """``engram status --json`` through a URL holding the password reports the URL with the
    password replaced by ***."""
    url = with_credentials(auth_server.url)
    nc = await connect(NatsSettings(), url)
    settings = StreamSettings(name="AUTHSTATUS")
    try:
        await EventLog(nc, settings).ensure()
        code, out, _ = await run_verb(
            "status",
            "--json",
            "--nats-url",
            url,
            "--stream",
            "AUTHSTATUS",
            "--data-dir",
            str(tmp_path),
        )
        assert code == 0
        assert PASSWORD not in out
        assert json.loads(out)["nats_url"] == with_credentials(auth_server.url, password="***")
    finally:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream("AUTHSTATUS")
        await nc.close()


# -- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://alice:pw@host:4222", "nats://alice:***@host:4222"),
        ("nats://s3cr3t-token@host:4222", "nats://***@host:4222"),
        ("tls://:pw@host", "tls://***@host"),
        ("nats://host:4222", "nats://host:4222"),
        ("alice:pw@host:4222", "alice:***@host:4222"),
        ("nats://u:p@ss@host:1/x", "nats://u:***@host:1/x"),
        ("nats://a:p1@h1:1, nats://b:p2@h2:2", "nats://a:***@h1:1,nats://b:***@h2:2"),
        (None, ""),
    ],
)
def test_redact_url_hides_passwords_and_tokens(url: str | None, shown: str) -> None:
    """redact_url replaces a password (keeping the user) or a token with ***, in every URL of
    a comma-separated list, and leaves URLs without credentials alone."""
    assert redact_url(url) == shown


def test_redact_text_hides_every_url_in_free_text() -> None:
    """redact_text hides credentials of each URL inside a message and nothing else."""
    text = "cannot reach nats://a:pw1@h:1,nats://tok2@h2:2 (user@example.com said 'nats://b:pw3@h')"
    assert redact_text(text) == (
        "cannot reach nats://a:***@h:1,nats://***@h2:2 (user@example.com said 'nats://b:***@h')"
    )


def _fail_with_a_url() -> None:
    raise ConnectionFailedError("boom at nats://alice:pw-in-exception@h:4222")


def test_configured_logging_never_prints_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    """With engram's logging configuration, a log line holding a password URL anywhere (a
    value, a nested value, an exception) is printed with the password hidden."""
    configure_logging(json=True, level="info")
    try:
        logger = structlog.get_logger("test.redaction")
        logger.info(
            "connecting",
            url="nats://alice:pw-in-value@h:4222",
            extra={"u": ["nats://x:pw-nested@h"]},
        )
        try:
            _fail_with_a_url()
        except ConnectionFailedError:
            logger.exception("failed")
    finally:
        structlog.reset_defaults()
    err = capsys.readouterr().err
    assert "pw-in-value" not in err and "pw-nested" not in err and "pw-in-exception" not in err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[0]["url"] == "nats://alice:***@h:4222"
    assert lines[0]["extra"] == {"u": ["nats://x:***@h"]}
    assert "nats://alice:***@h:4222" in lines[1]["exception"]


@pytest.mark.slow
async def test_serve_logs_never_show_the_password(auth_server: AuthServer, tmp_path: Path) -> None:
    """``engram serve --nats-url nats://user:password@dead,nats://user:password@alive``
    against a server requiring them starts (its query service connects and authenticates too)
    and nothing it logs holds the password."""
    url = with_credentials(auth_server.url)
    dead_plain = f"nats://127.0.0.1:{free_port()}"
    dead = with_credentials(dead_plain)
    stream = "AUTHSERVE"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PYTHONPATH"] = str(REPO)
    if "engine_key" in Settings.model_fields:  # with broker credentials the engine wants it
        env["ENGRAM_ENGINE_KEY"] = "0123456789abcdef" * 4
    log_path = tmp_path / "serve.log"
    argv = ["serve", "--nats-url", f"{dead},{url}", "--stream", stream]
    argv += ["--data-dir", str(tmp_path / "d")]
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engram.cli.main",
            *argv,
            "--log-json",
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    nc = await connect(NatsSettings(), url)
    try:
        deadline = time.monotonic() + 30
        while "engine running" not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.returncode is None, log_path.read_text()
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        text = log_path.read_text()
        assert "engine running" in text, text
        assert PASSWORD not in text
        serving = next(json.loads(line) for line in text.splitlines() if "engram serving" in line)
        assert serving["nats_url"] == ",".join(
            with_credentials(plain, password="***") for plain in (dead_plain, auth_server.url)
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        js = nc.jetstream()
        for name in (stream, stream + "_DLQ"):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
        await nc.close()


# -- several URLs --------------------------------------------------------------------------


def test_connect_kwargs_split_comma_separated_urls() -> None:
    """A comma-separated URL becomes nats-py's server list (spaces and empty parts dropped)."""
    kwargs = connect_kwargs(NatsSettings(), "nats://a:4222, nats://b:4222,")
    assert kwargs["servers"] == ["nats://a:4222", "nats://b:4222"]
    assert "reconnect_to_server_handler" not in kwargs
    assert "reconnect_to_server_handler" in connect_kwargs(
        NatsSettings(), "nats://a", persistent=True
    )


async def test_several_urls_reach_the_live_server_when_the_first_is_dead(nats_url: str) -> None:
    """``nats://dead,nats://alive`` connects to the live one, whatever order the client tries
    them in (nats-py shuffles: repeated), and fast."""
    dead = f"nats://127.0.0.1:{free_port()}"
    for _ in range(4):
        started = time.monotonic()
        nc = await connect(NatsSettings(), f"{dead},{nats_url}")
        try:
            assert nc.is_connected
            assert nc.connected_url is not None
            assert f"nats://127.0.0.1:{nc.connected_url.port}" == nats_url
        finally:
            await nc.close()
        assert time.monotonic() - started < 2.0


async def test_cli_takes_several_urls(
    nc: NatsClient, nats_url: str, stream_name: str, tmp_path: Path
) -> None:
    """``engram status --nats-url dead,alive`` answers from the live server."""
    await EventLog(nc, StreamSettings(name=stream_name)).ensure()
    try:
        dead = f"nats://127.0.0.1:{free_port()}"
        code, out, err = await run_verb(
            "status",
            "--json",
            "--nats-url",
            f"{dead},{nats_url}",
            "--stream",
            stream_name,
            "--data-dir",
            str(tmp_path),
        )
        assert code == 0, err
        assert json.loads(out)["stream"] == stream_name
    finally:
        await nc.jetstream().delete_stream(stream_name)


async def test_no_server_at_all_fails_fast_with_the_old_message() -> None:
    """When no URL answers, the error still says so, now in about a quarter second (also for
    a persistent connection: only an established one retries forever)."""
    dead = f"nats://127.0.0.1:{free_port()}"
    for persistent in (False, True):
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="no server answered") as failed:
            await connect(NatsSettings(), dead, persistent=persistent)
        assert not isinstance(failed.value, AuthorizationError)
        assert time.monotonic() - started < 1.5


# -- persistent connections ----------------------------------------------------------------


def test_reconnect_delay_grows_is_jittered_and_capped() -> None:
    """The persistent reconnect wait doubles from 0.25 s, varies by at most 20 %, never
    exceeds 5 s."""
    rng = random.Random(7)
    delays = [reconnect_delay(n, rng=rng) for n in range(12)]
    assert 0.2 <= delays[0] <= 0.25
    assert 0.4 <= delays[1] <= 0.5
    assert all(d <= BACKOFF_CAP_S for d in delays)
    assert min(delays[6:]) >= 0.8 * BACKOFF_CAP_S
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not lockstep


@pytest.mark.slow
async def test_a_persistent_connection_outlives_an_outage(tmp_path: Path) -> None:
    """With the server gone for longer than a short-lived client retries (10 x 0.5 s), the
    persistent connection keeps trying, is back by itself after the restart on the same port,
    and reports the outage once through on_disconnect / on_reconnect."""
    port = free_port()
    server = EmbeddedServer(tmp_path / "srv", port=port)
    url = server.start()
    calls: list[str] = []

    async def gone() -> None:
        calls.append("disconnected")

    async def back() -> None:
        calls.append("reconnected")

    persistent = await connect(
        NatsSettings(), url, persistent=True, on_disconnect=gone, on_reconnect=back
    )
    short = await connect(NatsSettings(), url)
    try:
        server.stop()
        deadline = time.monotonic() + 12
        while not short.is_closed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert short.is_closed  # the short-lived client gave up (after about 5.5 s) ...
        await asyncio.sleep(1.0)  # ... and the persistent one is still at it a while later
        assert not persistent.is_closed and persistent.is_reconnecting
        server.start()
        deadline = time.monotonic() + 10
        while not persistent.is_connected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert persistent.is_connected
        reply = await persistent.jetstream().account_info()
        assert reply is not None
        assert calls == ["disconnected", "reconnected"]
    finally:
        await persistent.close()
        server.stop()
