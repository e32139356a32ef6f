"""What crosses the wire for a query: bounded requests in, replies that fit in one NATS message.

Requests: at most MAX_REQUEST_BYTES of strict JSON (no NaN or Infinity, no number that
overflows to one), an object, nested at most MAX_DEPTH deep, with no string over MAX_TEXT_CHARS
(``engine.verbs.fields``). Replies: encoded here, and never larger than the connection allows
(the server's max_payload less HEADROOM): NATS drops a larger message without telling the asker, who
would only see a timeout. A reply that does not fit is cut where a verb has a natural limit
(``sql``'s rows, marked ``truncated``), else answered with a usage error saying how large it
was and what to lower.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from engine.errors import UsageError
from engine.verbs import CATALOGUE
from engine.verbs.fields import MAX_TEXT_CHARS

__all__ = [
    "HEADROOM",
    "MAX_DEPTH",
    "MAX_REQUEST_BYTES",
    "encode_reply",
    "parse_request",
]

MAX_REQUEST_BYTES = 1024 * 1024
MAX_DEPTH = 32
HEADROOM = 4096
"""Bytes of a reply message kept for its headers (faststream's correlation id, content type)."""


def _refuse_constant(name: str) -> Any:
    raise UsageError(f"the request is not strict JSON: {name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UsageError(f"the request is not usable JSON: the number {text[:40]} overflows")
    return value


def parse_request(body: bytes) -> dict[str, Any]:
    """The request object in ``body`` (empty means ``{}``); raises UsageError naming what is
    wrong: too large, not JSON, NaN or Infinity, not an object, too deep, a string too long."""
    if len(body) > MAX_REQUEST_BYTES:
        raise UsageError(
            f"the request is {len(body):,} bytes; a query request may have {MAX_REQUEST_BYTES:,}"
        )
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise UsageError(f"the request is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except UsageError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit integer
        raise UsageError(f"the request is not JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise UsageError(f"a query request must be a JSON object, got {_json_kind(value)}")
    _check_shape(value)
    return value


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return kinds.get(type(value), "a number")


def _check_shape(request: dict[str, Any]) -> None:
    """Depth and string lengths, walked without recursion; errors name where (``a.b[2]``)."""
    stack: list[tuple[Any, int, str]] = [(request, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_TEXT_CHARS:
                raise UsageError(
                    f"{where or 'a key'} has {len(value):,} characters; "
                    f"at most {MAX_TEXT_CHARS:,} are accepted"
                )
            continue
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise UsageError(f"the request is nested too deeply (at most {MAX_DEPTH} levels)")
            if isinstance(value, list):
                stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
                continue
            for key, item in value.items():
                stack.append((key, depth, ""))
                stack.append((item, depth + 1, f"{where}.{key}" if where else key))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def encode_reply(verb: str, reply: Mapping[str, Any], max_bytes: int) -> bytes:
    """``reply`` as JSON of at most ``max_bytes``: rows cut for a verb whose catalogue entry
    names a list to ``trim`` (marked ``truncated``), else raises UsageError saying the size and
    what to lower (the entry's ``lower``)."""
    body = _dumps(reply)
    if len(body) <= max_bytes:
        return body
    spec = CATALOGUE.get(verb)
    key = spec.trim if spec is not None else None
    rows = reply.get(key) if key else None
    if key is not None and isinstance(rows, list):
        note = (
            f"cut to fit one NATS message ({max_bytes:,} bytes, the server's max_payload): "
            "select fewer or narrower rows"
        )
        room = max_bytes - len(_dumps({**reply, key: [], "truncated": True, "note": note}))
        kept, used = 0, 0
        for row in rows:
            used += len(_dumps(row)) + 1  # the comma
            if used > room:
                break
            kept += 1
        return _dumps({**reply, key: rows[:kept], "truncated": True, "note": note})
    lower = spec.lower if spec is not None else "ask for less"
    raise UsageError(
        f"the reply to {verb} is {len(body):,} bytes, more than one NATS message may carry here "
        f"({max_bytes:,} bytes, the server's max_payload): {lower}"
    )
