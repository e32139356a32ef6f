"""What a request body may be: at most ``max_body_bytes``, and JSON.

The size is enforced while the body is read, not only from ``Content-Length`` (a chunked body
has none): a declared length over the limit is refused before a byte is read, and the bytes
actually received are counted, so a body that grows past the limit is cut off there (413).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engram.http.problems import ProblemError, send_problem

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimit", "BodyTooLarge"]

DEFAULT_MAX_BODY_BYTES = 1_048_576
"""1 MiB: what one NATS message may carry by default (an event larger than the server's
max_payload could not be stored anyway)."""

_JSON_TYPES = ("application/json",)
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit. An HTTPException, so FastAPI
    hands it to the problem handler instead of calling it a parse error (400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")
        self.limit = limit


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413, "payload_too_large", f"the request body is larger than {limit:,} bytes"
    )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


class BodyLimit:
    """Refuses a body over ``max_bytes`` (413) and, under ``/v1/``, a body that does not say
    it is JSON (415; the MCP endpoint has its own rules)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_problem(
                    send, ProblemError(400, "bad_request", "Content-Length is not a number"), path
                )
                return
            if int(declared) > self.max_bytes:
                await send_problem(send, _too_large(self.max_bytes), path)
                return
        content_type = headers.get("content-type")
        has_body = (declared is not None and declared != "0") or "transfer-encoding" in headers
        if (
            path.startswith("/v1/")
            and scope["method"] in _WITH_BODY
            and has_body
            and not (content_type and _is_json(content_type))
        ):
            detail = f"send JSON with Content-Type: application/json (got {content_type!r})"
            await send_problem(send, ProblemError(415, "unsupported_media_type", detail), path)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except BaseException as exc:  # a mounted app may wrap it in an exception group
            if started or not _holds_too_large(exc):
                raise
            await send_problem(send, _too_large(self.max_bytes), path)


def _holds_too_large(exc: BaseException) -> bool:
    if isinstance(exc, BodyTooLarge):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_holds_too_large(inner) for inner in exc.exceptions)
    return False
