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

from nats.errors import NoRespondersError
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

__all__ = ["SERVICE_UNAVAILABLE", "is_unavailable"]

SERVICE_UNAVAILABLE = 503


def is_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means that no JetStream server answered (in time) for the asset asked:
    a timeout (nats-py's or asyncio's), no responders, no response from the stream, or a 503
    API error (JetStream temporarily unavailable). Pure."""
    if isinstance(exc, TimeoutError | NoRespondersError | NoStreamResponseError):
        return True
    if isinstance(exc, ServiceUnavailableError):
        return True
    return isinstance(exc, APIError) and exc.code == SERVICE_UNAVAILABLE
