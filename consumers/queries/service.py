"""The engine's query service: NATS request-reply on ``engram.query.<verb>`` via faststream.

Outside ``memory.>`` on purpose: a request on a subject the stream captures would be stored as an
event and answered by JetStream's ack instead of by this service. Replicas share a queue group,
so each request is answered once. faststream also documents these subjects as AsyncAPI.

Every request gets exactly one reply: the body is parsed and bounded here (wire.parse_request),
a handler's failure of any kind becomes an error reply (logged once with the verb, never with
the request's content), and the reply is encoded to fit one NATS message (wire.encode_reply).
Each verb answers up to QUERY_WORKERS requests at once (the handlers run in threads), so one
slow request does not hold up the next of the same verb.
"""

from __future__ import annotations

from typing import Any

import structlog
from faststream.message import StreamMessage
from faststream.nats import NatsBroker
from faststream.security import BaseSecurity, SASLPlaintext

from consumers.queries.dispatch import QUERY_PREFIX, QueryDispatcher, error_reply
from consumers.queries.wire import HEADROOM, encode_reply, parse_request
from engine.connection import connect_kwargs, split_urls
from engine.errors import EngramError, ForbiddenError, UsageError
from engine.settings import NatsSettings

__all__ = ["QUERY_WORKERS", "QUEUE_GROUP", "broker_options", "build_query_broker"]

log = structlog.get_logger(__name__)

QUEUE_GROUP = "engram-query"
QUERY_WORKERS = 4
"""Requests of one verb answered at once (faststream's default is one at a time)."""


def broker_options(settings: NatsSettings, url: str) -> dict[str, Any]:
    """faststream's spelling of the same credentials the engine's nats-py connection uses."""
    kwargs = connect_kwargs(settings, url)
    # The query service lives as long as the engine: it reconnects after an outage of any
    # length (faststream's default gives up after 60 attempts, two minutes).
    options: dict[str, Any] = {"name": "engram-query", "max_reconnect_attempts": -1}
    if "token" in kwargs:
        options["token"] = kwargs["token"]
    if "user_credentials" in kwargs:
        options["user_credentials"] = kwargs["user_credentials"]
    tls = kwargs.get("tls")
    if settings.user is not None:
        options["security"] = SASLPlaintext(
            username=settings.user, password=settings.password or "", ssl_context=tls
        )
    elif tls is not None:
        options["security"] = BaseSecurity(ssl_context=tls)
    return options


def build_query_broker(
    dispatcher: QueryDispatcher, url: str, settings: NatsSettings, prefix: str = QUERY_PREFIX
) -> NatsBroker:
    """A faststream broker with one request-reply subscriber per verb, on ``prefix`` + verb
    (``settings.stream.service.query_prefix``)."""
    broker = NatsBroker(split_urls(url), logger=None, **broker_options(settings, url))
    for verb in dispatcher.verbs:
        _register(broker, dispatcher, verb, prefix)
    return broker


async def _raw(message: StreamMessage[Any]) -> bytes:
    """The request body untouched: parsing (and refusing) it is the service's, not faststream's,
    whose errors would leave the asker without a reply."""
    return message.body


def _register(broker: NatsBroker, dispatcher: QueryDispatcher, verb: str, prefix: str) -> None:
    @broker.subscriber(
        prefix + verb,
        queue=QUEUE_GROUP,
        title=f"query.{verb}",
        decoder=_raw,
        max_workers=QUERY_WORKERS,
    )
    async def answer(body: Any) -> bytes:
        max_bytes = broker.connection.max_payload - HEADROOM
        try:
            request = parse_request(body if isinstance(body, bytes) else b"")
            return encode_reply(verb, await dispatcher.handle(verb, request), max_bytes)
        except EngramError as exc:
            reply = error_reply(exc)
            if isinstance(exc, UsageError | ForbiddenError):  # the asker's doing, not ours
                log.info("query refused", verb=verb, error=reply["error"][:300])
            else:
                log.warning(
                    "query failed", verb=verb, kind=reply["kind"], error=reply["error"][:300]
                )
        except Exception as exc:  # a bug or the environment: the asker still gets an answer
            reply = {"error": f"{verb} failed on the engine: {_describe(exc)}", "kind": "failure"}
            log.error("query failed unexpectedly", verb=verb, error=_describe(exc))
        return encode_reply(verb, reply, max_bytes)


def _describe(exc: Exception) -> str:
    """The exception's type and the start of its message (never the request itself)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__
