"""Connecting to NATS with the configured credentials, with errors that say what failed."""

from __future__ import annotations

import random
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.client import Server

from engine.backoff import retry_delay
from engine.errors import AuthorizationError, ConfigurationError, ConnectionFailedError
from engine.permissions import parse_violation, watch
from engine.settings import NatsSettings

__all__ = [
    "AsyncCallback",
    "connect",
    "connect_kwargs",
    "reconnect_delay",
    "redact_text",
    "redact_url",
    "server_address",
    "split_urls",
]

log = structlog.get_logger(__name__)

AsyncCallback = Callable[[], Awaitable[None]]
"""An async callable without arguments (``on_disconnect``, ``on_reconnect``)."""

INITIAL_ATTEMPTS = 2
"""Attempts per server on the first connect: an unreachable URL fails in about a second."""
INITIAL_WAIT_S = 0.25
SHORT_LIVED_RECONNECTS = 10
"""Reconnect attempts per server of a short-lived client (CLI, SDK) once it was connected."""
SHORT_LIVED_WAIT_S = 0.5
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 5.0

# What a nats-server sends when it refuses the credentials (or has none it accepts).
_AUTH_REFUSED = re.compile(
    r"authorization violation|authentication expired|authorization failed|"
    r"user authentication revoked",
    re.IGNORECASE,
)
# A URL with credentials anywhere in free text (log values, error messages); greedy up to the
# last "@" of the authority, as URL parsers read it.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s'\",]+)@")


def split_urls(url: str) -> list[str]:
    """The server URLs in ``url`` (comma-separated for a cluster), stripped; raises
    ConfigurationError when none is left."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ConfigurationError(f"no NATS server URL in {redact_url(url)!r}")
    return urls


def _hidden(userinfo: str) -> str:
    # ``user:password`` keeps the user name; a lone ``token`` is a secret as a whole.
    user, sep, _secret = userinfo.partition(":")
    return f"{user}:***" if sep and user else "***"


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    return f"{scheme}{_hidden(userinfo)}@{host}{slash}{path}"


def redact_url(url: str | None) -> str:
    """``url`` with any password or token replaced by ``***`` (every URL of a comma-separated
    list). ``None`` gives ``""``. Safe to log or print; the one place credentials are hidden."""
    if not url:
        return ""
    return ",".join(_redact_one(part.strip()) for part in url.split(","))


def redact_text(text: str) -> str:
    """``text`` with the credentials of every ``scheme://user:password@`` URL in it hidden as
    ``redact_url`` does (for free text: log values, error messages)."""
    if "@" not in text:
        return text
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{_hidden(m['userinfo'])}@", text)


def server_address(nc: NatsClient) -> str:
    """``scheme://host:port`` of the server ``nc`` is connected to, never with credentials
    (``"the NATS server"`` when not connected): for messages and logs."""
    url = nc.connected_url
    if url is None:
        return "the NATS server"
    return f"{url.scheme}://{url.hostname}:{url.port}"


def _hosts(urls: list[str]) -> str:
    return ", ".join(redact_url(u) for u in urls)


def reconnect_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based) of a persistent connection:
    exponential from 0.25 s, capped at 5 s, with up to 20 % jitter so that many engines do
    not reconnect in lockstep (pure apart from ``rng``)."""
    base = retry_delay(attempt + 1, BACKOFF_BASE_S, BACKOFF_CAP_S)
    jitter = rng.uniform(0.8, 1.0) if rng is not None else random.uniform(0.8, 1.0)
    return base * jitter


def connect_kwargs(settings: NatsSettings, url: str, *, persistent: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``nats.Client.connect`` built from ``settings`` (pure, testable).

    These are the options of the first connect: a few quick attempts per server, so an
    unreachable URL fails fast. ``connect`` widens them once connected (see there).
    """
    kwargs: dict[str, Any] = {
        "servers": split_urls(url),
        "connect_timeout": settings.connect_timeout_s,
        "name": "engram",
        "allow_reconnect": True,
        # Server.reconnects > max discards a server; 1 means two attempts each (0 = forever).
        "max_reconnect_attempts": INITIAL_ATTEMPTS - 1,
        "reconnect_time_wait": INITIAL_WAIT_S,
        # where replies arrive: a tenant's agent may subscribe only to _INBOX_<namespace>.>
        "inbox_prefix": settings.inbox_prefix,
    }
    if persistent:
        kwargs["reconnect_to_server_handler"] = _BackoffHandler()
    if settings.user is not None or settings.password is not None:
        kwargs["user"] = settings.user
        kwargs["password"] = settings.password
    if settings.token is not None:
        kwargs["token"] = settings.token
    if settings.creds_file is not None:
        kwargs["user_credentials"] = str(settings.creds_file)
    if settings.tls_ca or settings.tls_cert or settings.tls_key:
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise ConfigurationError("tls_cert and tls_key must be given together")
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.tls_ca) if settings.tls_ca else None,
        )
        if settings.tls_cert and settings.tls_key:
            context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
        kwargs["tls"] = context
    return kwargs


class _BackoffHandler:
    """nats-py's reconnect_to_server_handler: next server round-robin, growing jittered delay.

    The attempt count restarts after a successful reconnect (``reset``), so a second outage
    starts again from a short wait.
    """

    def __init__(self) -> None:
        self.attempt = 0
        self._next = 0

    def reset(self) -> None:
        self.attempt = 0

    def __call__(self, servers: list[Server], _info: dict[str, Any]) -> tuple[Server | None, float]:
        delay = reconnect_delay(self.attempt)
        self.attempt += 1
        chosen = servers[self._next % len(servers)] if servers else None
        self._next += 1
        return chosen, delay


def is_authorization_error(exc: BaseException) -> bool:
    """Whether ``exc`` (from nats-py) means the server refused the credentials."""
    return isinstance(exc, nats.errors.AuthorizationError) or bool(_AUTH_REFUSED.search(str(exc)))


def _credentials_hint(settings: NatsSettings, url: str) -> str:
    given = [
        name
        for name, present in (
            ("user/password", settings.user is not None or settings.password is not None),
            ("token", settings.token is not None),
            ("creds file", settings.creds_file is not None),
            ("credentials in the URL", "@" in url),
        )
        if present
    ]
    if not given:
        return (
            "no credentials were given (use --nats-user/--nats-password, --nats-token or "
            "--nats-creds, or ENGRAM_NATS__USER / ENGRAM_NATS__PASSWORD / ...)"
        )
    return f"check the {' and '.join(given)}"


async def connect(
    settings: NatsSettings,
    url: str,
    *,
    persistent: bool = False,
    on_disconnect: AsyncCallback | None = None,
    on_reconnect: AsyncCallback | None = None,
) -> NatsClient:
    """Connect to ``url`` (one URL, or several comma-separated for a cluster).

    The first connect tries each server twice, about a quarter of a second apart, then raises
    ConnectionFailedError naming the (redacted) URLs and the cause. A server that refuses the
    credentials raises AuthorizationError at once, without further attempts.

    Once connected, a short-lived client (``persistent=False``: CLI, SDK) reconnects 10 times
    per server 0.5 s apart, then gives up (the connection closes). A ``persistent`` client (the
    engine) reconnects for as long as it runs, waiting 0.25 s, 0.5 s, 1 s ... up to 5 s
    (jittered) between attempts. ``on_disconnect`` / ``on_reconnect`` are awaited when the
    connection is lost / back.
    """
    kwargs = connect_kwargs(settings, url, persistent=persistent)
    handler: _BackoffHandler | None = kwargs.get("reconnect_to_server_handler")
    servers: list[str] = kwargs["servers"]
    connecting = True
    refused: list[BaseException] = []

    async def _errors(exc: Exception) -> None:
        # nats-py reports every failed attempt here; we raise one clear error instead. An
        # authorization failure on the first connect stops the attempts at once (raising
        # here leaves nats-py's connect loop); later, while reconnecting, it must not.
        if connecting and is_authorization_error(exc):
            refused.append(exc)
            raise _RefusedError from None
        violation = parse_violation(exc)
        if violation is not None:  # the publish or request it refused raises, see permissions
            permissions.record(violation)
            (log.warning if persistent else log.debug)(
                "NATS refused a permission",
                operation=violation.operation,
                subject=violation.subject,
            )

    async def _disconnected() -> None:
        if not connecting and on_disconnect is not None:
            await on_disconnect()

    async def _reconnected() -> None:
        if handler is not None:
            handler.reset()
        if on_reconnect is not None:
            await on_reconnect()

    nc = NatsClient()
    permissions = watch(nc)
    try:
        await nc.connect(
            **kwargs,
            error_cb=_errors,
            disconnected_cb=_disconnected,
            reconnected_cb=_reconnected,
        )
    except _RefusedError:
        await _close_quietly(nc)
        raise AuthorizationError(
            f"authorization failed at NATS {_hosts(servers)}: the server refused the "
            f"credentials; {_credentials_hint(settings, url)}"
        ) from None
    except nats.errors.NoServersError:
        await _close_quietly(nc)
        raise ConnectionFailedError(
            f"cannot reach NATS at {_hosts(servers)}: no server answered (is it running?)"
        ) from None
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        await _close_quietly(nc)
        if is_authorization_error(exc):
            raise AuthorizationError(
                f"authorization failed at NATS {_hosts(servers)}: "
                f"{_credentials_hint(settings, url)}"
            ) from None
        raise ConnectionFailedError(
            f"cannot connect to NATS at {_hosts(servers)}: {redact_text(str(exc))}"
        ) from None
    connecting = False
    # Connected: widen the first connect's quick attempts to the reconnect policy. nats-py
    # reads these options at each attempt; the first connect and a reconnect have one knob.
    if persistent:
        nc.options["max_reconnect_attempts"] = -1
    else:
        nc.options["max_reconnect_attempts"] = SHORT_LIVED_RECONNECTS
        nc.options["reconnect_time_wait"] = SHORT_LIVED_WAIT_S
    return nc


class _RefusedError(Exception):
    """Internal: raised from nats-py's error callback to stop connecting on an auth failure."""


async def _close_quietly(nc: NatsClient) -> None:
    try:
        await nc.close()
    except Exception:  # best effort on a client that never connected
        return None
