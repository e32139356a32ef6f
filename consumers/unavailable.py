"""Telling a JetStream that is briefly unavailable from a failure that needs a backoff.

In a cluster, every stream, consumer and KV bucket is a Raft group. When the server leading one
dies, its followers wait 4 to 9 s (nats-server's election timeout, not configurable) before
one campaigns; meanwhile nothing answers for that group: a pull request gets a 503 status
(no responders), an API request gets no answer at all (a timeout), a publish gets no ack. These
errors say "ask again soon", not "something is broken": the runner retries them after short
pauses (``RunnerSettings.unavailable_retry_s``) instead of its backoff for failures, which
grows to 30 s and once made a projection wait about 32 s after a leader loss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from nats.errors import NoRespondersError
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from engine.backoff import retry_delay

__all__ = ["SERVICE_UNAVAILABLE", "STARTUP_PATIENCE_S", "is_unavailable", "patiently"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

SERVICE_UNAVAILABLE = 503
STARTUP_PATIENCE_S = 60.0
"""How long an engine starting keeps asking a JetStream that does not answer (``patiently``)."""


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means that no JetStream server answered (in time) for the asset asked:
    a timeout (nats-py's or asyncio's), no responders, no response from the stream, or a 503
    API error (JetStream temporarily unavailable). Pure."""
    if isinstance(exc, TimeoutError | NoRespondersError | NoStreamResponseError):
        return True
    if isinstance(exc, ServiceUnavailableError):
        return True
    return isinstance(exc, APIError) and exc.code == SERVICE_UNAVAILABLE


def _unavailable_or_caused_by_it(exc: BaseException) -> bool:
    return is_unavailable(exc) or (exc.__cause__ is not None and is_unavailable(exc.__cause__))


async def patiently(
    what: str, call: Callable[[], Awaitable[T]], *, patience_s: float = STARTUP_PATIENCE_S
) -> T:
    """``await call()``, asked again after short pauses (0.25 s doubling to 2 s) while it fails
    because JetStream is briefly unavailable (``is_unavailable``, also as the cause of an
    EngramError), for at most ``patience_s``. Any other failure, and one that outlasts the
    patience, is raised. For the steps of an engine's start (``call`` must be safe to repeat):
    engines started together on a new cluster read buckets one of them has just created, whose
    replicas do not all answer yet, and an engine restarted with a node waits out elections."""
    deadline = time.monotonic() + patience_s
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not _unavailable_or_caused_by_it(exc) or time.monotonic() >= deadline:
                raise
            attempt += 1
            log.log(
                logging.WARNING if attempt == 1 else logging.DEBUG,
                "JetStream does not answer yet; asking again",
                step=what,
                error=repr(exc),
                attempt=attempt,
            )
            await asyncio.sleep(retry_delay(attempt, 0.25, 2.0))
