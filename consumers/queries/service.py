"""The engine's query service: NATS request-reply on ``engram.query.<namespace>.<verb>`` (a
tenant's verbs) and ``engram.query.<verb>`` (the operator's, about no one tenant) via faststream.

Which subjects it subscribes to (``query_subscriptions``): owning every namespace,
``engram.query.*.*`` (every tenant's verbs, the verb and the namespace read from the subject) and
one ``engram.query.<verb>`` per verb an operator may ask without a namespace; owning some,
``engram.query.<namespace>.*`` per namespace (operator verbs on a tenant's subject are answered
by the engine owning that tenant).

Outside ``memory.>`` on purpose: a request on a subject the stream captures would be stored as an
event and answered by JetStream's ack instead of by this service. Replicas share a queue group,
so each request is answered once. faststream also documents these subjects as AsyncAPI.

Every request gets exactly one reply: the body is parsed and bounded here (wire.parse_request),
a handler's failure of any kind becomes an error reply (logged once with the verb, never with
the request's content), and the reply is encoded to fit one NATS message (wire.encode_reply).
The reply goes only to an inbox (engine.subjects.is_reply_inbox: ``_INBOX.<...>``, or the
tenant's ``_INBOX_<namespace>.<...>`` for a tenant's verb): the asker chooses the reply subject
and the engine's user may publish anywhere, so a request whose reply subject points elsewhere
(``$KV.<bucket>.<key>``, another tenant's event subject, a dead-letter subject) is not answered
at all, only logged. faststream's own reply is off (``no_reply``): the service publishes each
reply itself, after that check, on the broker's connection.
Each subscription answers up to QUERY_WORKERS requests at once per verb it carries (the
handlers run in threads), so one slow request does not hold up the next.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from faststream.message import StreamMessage
from faststream.nats import NatsBroker
from faststream.security import BaseSecurity, SASLPlaintext

from consumers.observer import QueryObserver
from consumers.queries.dispatch import QUERY_PREFIX, QueryDispatcher, error_reply
from consumers.queries.wire import HEADROOM, encode_reply, parse_request
from engine.connection import connect_kwargs, split_urls
from engine.errors import EngramError, ForbiddenError, UsageError
from engine.settings import NatsSettings
from engine.subjects import ServiceSubjects, is_reply_inbox
from engine.verbs import CATALOGUE

__all__ = [
    "QUERY_WORKERS",
    "QUEUE_GROUP",
    "broker_options",
    "build_query_broker",
    "query_subscriptions",
]

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


def _services(prefix: str | ServiceSubjects) -> ServiceSubjects:
    """The service subjects of ``prefix``: given as such, or as their query prefix
    (``engram.query.``, ``settings.stream.service.query_prefix``)."""
    if isinstance(prefix, ServiceSubjects):
        return prefix
    return ServiceSubjects(prefix.removesuffix(".query."))


def query_subscriptions(
    verbs: Sequence[str],
    prefix: str | ServiceSubjects = QUERY_PREFIX,
    namespaces: Sequence[str] | None = None,
) -> list[str]:
    """The subjects an engine answering ``verbs`` subscribes to: owning every namespace
    (``namespaces`` None), ``engram.query.*.*`` and ``engram.query.<verb>`` for each of
    ``verbs`` that may be asked without a namespace (scope ``operator`` or ``either``); owning
    some, ``engram.query.<namespace>.*`` for each of them."""
    services = _services(prefix)
    if namespaces is None:
        operator = [v for v in verbs if v in CATALOGUE and CATALOGUE[v].scope != "tenant"]
        return [services.tenant_queries(None), *map(services.operator_query, sorted(operator))]
    return [services.tenant_query(ns, "*") for ns in sorted(set(namespaces))]


def build_query_broker(
    dispatcher: QueryDispatcher,
    url: str,
    settings: NatsSettings,
    prefix: str | ServiceSubjects = QUERY_PREFIX,
    namespaces: Sequence[str] | None = None,
    observer: QueryObserver | None = None,
) -> NatsBroker:
    """A faststream broker with one request-reply subscriber per subject of
    ``query_subscriptions`` (``prefix``: the stream settings' ``service``, or its
    ``query_prefix``); each request's verb, and its namespace if any, come from its subject.
    ``observer`` is told of every request answered (verb, time, error kind)."""
    services = _services(prefix)
    broker = NatsBroker(split_urls(url), logger=None, **broker_options(settings, url))
    for subject in query_subscriptions(dispatcher.verbs, services, namespaces):
        asked = services.parse_query(subject)
        one_verb = asked is not None and "*" not in asked[1]
        workers = QUERY_WORKERS if one_verb else QUERY_WORKERS * len(dispatcher.verbs)
        _register(broker, dispatcher, subject, services, workers, observer)
    return broker


@dataclass(frozen=True, slots=True)
class _Request:
    subject: str
    body: bytes
    reply: str = ""
    """The asker's reply subject (empty: nobody waits for an answer)."""


async def _raw(message: StreamMessage[Any]) -> _Request:
    """The request's subject, its reply subject and its body untouched: parsing (and refusing)
    it is the service's, not faststream's, whose errors would leave the asker without a reply."""
    raw = message.raw_message
    return _Request(
        str(getattr(raw, "subject", "")), message.body, str(getattr(raw, "reply", "") or "")
    )


_SHOWN = 120
"""Characters of a refused reply subject a log line shows."""


def _answerable(asked: Any, services: ServiceSubjects, subject: str) -> str | None:
    """The reply subject to answer ``asked`` on, or None (logged) when there is none or it is
    not an inbox of the asker's (``is_reply_inbox``). The subject of the request decides the
    namespace: an operator subject, or one that is not a query subject, allows ``_INBOX.``
    only."""
    request = asked if isinstance(asked, _Request) else _Request("", b"")
    if not request.reply:
        log.debug("query without a reply subject: not answered", subscription=subject)
        return None
    where = services.parse_query(request.subject)
    if is_reply_inbox(request.reply, None if where is None else where[0]):
        return request.reply
    log.warning(
        "query not answered: its reply subject is not an inbox of the asker's",
        subject=request.subject[:_SHOWN],
        reply=request.reply[:_SHOWN],
    )
    return None


def _register(
    broker: NatsBroker,
    dispatcher: QueryDispatcher,
    subject: str,
    services: ServiceSubjects,
    workers: int,
    observer: QueryObserver | None = None,
) -> None:
    @broker.subscriber(
        subject,
        queue=QUEUE_GROUP,
        title=f"query {subject}",
        decoder=_raw,
        max_workers=workers,
        no_reply=True,  # the reply is published below, only to an inbox (see the module)
    )
    async def answer(asked: Any) -> None:
        reply_to = _answerable(asked, services, subject)
        if reply_to is None:
            return
        started = time.perf_counter()
        body, verb, kind = await reply_of(asked)
        if observer is not None:
            observer.answered(verb, time.perf_counter() - started, kind)
        try:
            await broker.connection.publish(reply_to, body)
        except Exception as exc:  # the connection is away or closing: the asker times out
            log.warning("query reply not sent", subscription=subject, error=_describe(exc))

    async def reply_of(asked: Any) -> tuple[bytes, str, str | None]:
        """The reply's body, the verb asked and the error reply's kind (None: an answer)."""
        max_bytes = broker.connection.max_payload - HEADROOM
        verb = subject
        try:
            namespace, verb = _asked_of(asked, services)
            request = parse_request(asked.body)
            answer = await dispatcher.handle(verb, request, namespace)
            return encode_reply(verb, answer, max_bytes), verb, None
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
        return encode_reply(verb, reply, max_bytes), verb, str(reply["kind"])


def _asked_of(asked: Any, services: ServiceSubjects) -> tuple[str | None, str]:
    """``(namespace, verb)`` of a request, read from its subject; raises UsageError for one
    that is not a query subject (a subscription's always is: a bug if not)."""
    where = services.parse_query(asked.subject) if isinstance(asked, _Request) else None
    if where is None:
        raise UsageError(f"{getattr(asked, 'subject', '?')} is not a query subject")
    return where


def _describe(exc: Exception) -> str:
    """The exception's type and the start of its message (never the request itself)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__
