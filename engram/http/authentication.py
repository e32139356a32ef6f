"""Who is asking: every request but the public documents carries ``Authorization: Bearer
<key>``; the key it names is left on ``request.state.engram_key`` for the routes and for what
is mounted below them (``/mcp``).

An ASGI middleware, below every route and mount, so nothing is reachable without a key. A
missing, garbled, unknown or revoked key is one answer, 401 with ``WWW-Authenticate: Bearer``,
whatever the reason (which is logged, never the key).
"""

from __future__ import annotations

import re

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from engram.http.keys import ApiKey, KeyRing
from engram.http.problems import ProblemError, send_problem

__all__ = ["PUBLIC_PATHS", "STATE_KEY", "Authentication", "bearer_token"]

log = structlog.get_logger(__name__)

STATE_KEY = "engram_key"
"""``request.state.engram_key``: the authenticated ``ApiKey``."""

PUBLIC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/healthz"})
"""What anyone may read: the API's description and whether the gateway is up."""

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *$")
"""RFC 6750's credentials: the scheme, then one b64token."""


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when it is missing
    or not that."""
    if header is None:
        return None
    match = _BEARER.fullmatch(header)
    return match[1] if match else None


def _refusal(token_given: bool) -> ProblemError:
    challenge = 'Bearer realm="engram"'
    if token_given:
        challenge += ', error="invalid_token"'
    detail = (
        "the API key is unknown or revoked"
        if token_given
        else "send an API key: Authorization: Bearer <key> (engram http keys add)"
    )
    return ProblemError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


class Authentication:
    """Refuses every request outside ``PUBLIC_PATHS`` without a valid key (401)."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        raw = Headers(scope=scope).get("authorization")
        token = bearer_token(raw)
        key: ApiKey | None = self.keys.verify(token) if token is not None else None
        if key is None:
            reason = "missing" if raw is None else "garbled" if token is None else "unknown"
            log.info("request refused: no valid API key", reason=reason, path=scope["path"])
            if scope["type"] == "websocket":  # no body to answer with: close at once
                await send({"type": "websocket.close", "code": 1008})
                return
            await send_problem(send, _refusal(token is not None), scope["path"])
            return
        scope.setdefault("state", {})[STATE_KEY] = key
        await self.app(scope, receive, send)
