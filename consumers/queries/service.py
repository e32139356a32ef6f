"""The engine's query service: NATS request-reply on ``engram.query.<verb>`` via faststream.

Outside ``memory.>`` on purpose: a request on a subject the stream captures would be stored as an
event and answered by JetStream's ack instead of by this service. Replicas share a queue group,
so each request is answered once. faststream also documents these subjects as AsyncAPI.
"""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker
from faststream.security import BaseSecurity, SASLPlaintext

from consumers.queries.dispatch import QUERY_PREFIX, QueryDispatcher, error_reply
from engine.connection import connect_kwargs, split_urls
from engine.errors import EngramError
from engine.settings import NatsSettings

__all__ = ["QUEUE_GROUP", "broker_options", "build_query_broker"]

QUEUE_GROUP = "engram-query"


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


def build_query_broker(dispatcher: QueryDispatcher, url: str, settings: NatsSettings) -> NatsBroker:
    """A faststream broker with one request-reply subscriber per verb."""
    broker = NatsBroker(split_urls(url), logger=None, **broker_options(settings, url))
    for verb in dispatcher.verbs:
        _register(broker, dispatcher, verb)
    return broker


def _register(broker: NatsBroker, dispatcher: QueryDispatcher, verb: str) -> None:
    @broker.subscriber(QUERY_PREFIX + verb, queue=QUEUE_GROUP, title=f"query.{verb}")
    async def answer(body: Any) -> dict[str, Any]:
        try:
            return await dispatcher.handle(verb, body)
        except EngramError as exc:
            return error_reply(exc)
