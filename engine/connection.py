"""Connecting to NATS with the configured credentials, with errors that say what failed."""

from __future__ import annotations

import ssl
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from engine.errors import ConfigurationError, ConnectionFailedError
from engine.settings import NatsSettings

__all__ = ["connect", "connect_kwargs"]


def connect_kwargs(settings: NatsSettings, url: str) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` built from ``settings`` (pure, testable)."""
    kwargs: dict[str, Any] = {
        "servers": [url],
        "connect_timeout": settings.connect_timeout_s,
        "name": "engram",
        # An unreachable server must fail fast with our error, not retry for minutes.
        "allow_reconnect": True,
        "max_reconnect_attempts": 10,
        "reconnect_time_wait": 0.5,
    }
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


async def connect(settings: NatsSettings, url: str) -> NatsClient:
    """Connect to ``url``; raises ConnectionFailedError naming the URL and the cause."""

    async def _quiet(_exc: Exception) -> None:
        # nats-py logs every failed attempt itself; we raise one clear error instead.
        return None

    try:
        return await nats.connect(**connect_kwargs(settings, url), error_cb=_quiet)
    except nats.errors.NoServersError:
        raise ConnectionFailedError(
            f"cannot reach NATS at {url}: no server answered (is it running?)"
        ) from None
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise ConnectionFailedError(f"cannot connect to NATS at {url}: {exc}") from None
