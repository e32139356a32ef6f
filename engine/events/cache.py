"""Payloads of the semantic cache's events (``cache.put``, ``cache.evicted``), schema version 1.

A cached answer is a prompt and the response it got (text, or any JSON value), kept for ``ttl``
seconds after the put's ``occurred_at`` within one namespace (the tenant). ``cache_lookup``
answers a later prompt with it when the two prompts are similar enough (the engine's
``cache_similarity``, 0.85 by default) and the entry has not expired. ``model`` scopes an entry:
a put of the same prompt for the same model (or for none) replaces the older one, and a lookup
naming a model is answered by that model's entries only.

``cache.evicted`` removes one cached prompt (the same prompt and model) before its time, for an
answer found wrong; expiry itself needs no event (the cache projection drops what the log's time
has moved past).

Sizes are bounded so one event stays one NATS message: a prompt of at most ``MAX_PROMPT_CHARS``
characters (as a query's text), a response of ``MAX_RESPONSE_BYTES`` as JSON, metadata of
``MAX_METADATA_BYTES``; a ttl in (0, ``MAX_TTL_SECONDS``]: a cache entry that never expires is
not a cache entry.

Upcasting: both types are at version 1 (``engine.events.registry``); a later version registers
its step in ``engine.events.upcasting.DEFAULT_UPCASTERS`` and stored v1 events keep replaying.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, JsonValue, field_validator

from engine.events._base import EventData, Identifier, JsonObject, ShortText

__all__ = [
    "CACHE_TYPES",
    "DEFAULT_TTL_SECONDS",
    "MAX_METADATA_BYTES",
    "MAX_PROMPT_CHARS",
    "MAX_RESPONSE_BYTES",
    "MAX_TTL_SECONDS",
    "CacheEvicted",
    "CachePut",
    "Prompt",
]

CACHE_TYPES = frozenset({"cache.put", "cache.evicted"})
"""The event types of the semantic cache (``engine.events.registry`` declares them)."""
MAX_PROMPT_CHARS = 65_536
"""As a query's free text (``engine.verbs.fields.MAX_TEXT_CHARS``): any prompt a lookup may ask
with can be cached."""
MAX_RESPONSE_BYTES = 256 * 1024
"""The response as compact JSON (UTF-8): an event must fit one NATS message (1 MB by default)."""
MAX_METADATA_BYTES = 16 * 1024
MAX_TTL_SECONDS = 366 * 24 * 3600.0
"""A year (and a day): past it an entry is a permanent memory, not a cached answer."""
DEFAULT_TTL_SECONDS = 3600.0
"""What the SDK puts when no ttl is given (an hour)."""


def _not_blank(prompt: str) -> str:
    if not prompt.strip():
        raise ValueError("the prompt must not be blank")
    return prompt


def _json_size(value: Any, most: int, what: str) -> None:
    try:
        body = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(
            f"the {what} must be plain JSON (finite numbers, text ...): {exc}"
        ) from None
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > most:
        raise ValueError(
            f"the {what} is {size:,} bytes as JSON, more than {most:,} (one event is one NATS "
            "message)"
        )


def _bounded_response(response: Any) -> Any:
    if response is None:
        raise ValueError("the response must be text or a JSON value, not null")
    _json_size(response, MAX_RESPONSE_BYTES, "response")
    return response


def _bounded_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is not None:
        _json_size(metadata, MAX_METADATA_BYTES, "metadata")
    return metadata


Prompt = Annotated[
    str,
    Field(min_length=1, max_length=MAX_PROMPT_CHARS, strict=True),
    AfterValidator(_not_blank),
]
"""A prompt: non-blank text of at most ``MAX_PROMPT_CHARS`` characters."""


class CachePut(EventData):
    """``response`` cached for ``prompt`` for ``ttl`` seconds after the event's ``occurred_at``
    (its ``cached_at``), replacing the entry of the same prompt and ``model`` (the prompt
    compared with case, Unicode form and whitespace aside)."""

    prompt: Prompt
    response: Annotated[JsonValue, AfterValidator(_bounded_response)]
    ttl: Annotated[float, Field(gt=0, le=MAX_TTL_SECONDS, strict=True)]
    """Seconds the entry lives after the put's ``occurred_at``."""
    model: Identifier | None = None
    """The model that answered (an entry of one model never answers a lookup for another)."""
    metadata: Annotated[JsonObject | None, AfterValidator(_bounded_metadata)] = None

    @field_validator("ttl")
    @classmethod
    def _finite(cls, ttl: float) -> float:
        if not math.isfinite(ttl):
            raise ValueError("ttl must be a finite number of seconds")
        return ttl


class CacheEvicted(EventData):
    """The cached entry of ``prompt`` (and ``model``) removed before it expires (nothing
    happens when there is none)."""

    prompt: Prompt
    model: Identifier | None = None
    reason: ShortText | None = None
