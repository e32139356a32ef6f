"""Every projection's dead letters in one place: the dead-letter stream read back, each once.

The ``dead_letters`` table holds only what the tables projection refused; the vectors, the
learner, the session compactor and the recent tier publish theirs on the dead-letter stream
(``<stream>_DLQ``, subjects ``engram.deadletter.<kind>`` by default) only. Reading that stream
is the one place that has them all, whether an engine runs or not.

One dead letter is one (source sequence, kind, projection): a message every projection's
decoder refuses (malformed JSON) is listed once per projection, each naming its refuser. The
publisher's ``Nats-Msg-Id`` makes a republish after a restart a duplicate JetStream drops, but
only within the stream's 24 h duplicate window; later copies (a projection that re-reads its
tail after a crash, the recent tier re-reading its window on every start) are folded here, the
first copy kept and the others counted in ``collapsed``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from consumers.deadletters import dead_letter_stream_name
from engine.errors import UsageError
from engine.settings import StreamSettings
from engine.stream import ReadRange, StoredMessage, read_stream

__all__ = ["read_dead_letters"]

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_FIELDS = ("sequence", "subject", "stored_at", "kind", "reason", "projection", "raw_size")


def _letter(stored: StoredMessage, source: str) -> dict[str, Any] | None:
    """The dead letter in ``stored`` as a JSON-ready dict; None when it is not a dead letter of
    ``source`` (anything else published on the subjects the dead-letter stream captures)."""
    try:
        body = json.loads(stored.data)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(body, Mapping) or body.get("stream") != source:
        return None
    if not all(key in body for key in _FIELDS):
        return None
    if not isinstance(body["sequence"], int) or not isinstance(body["projection"], str):
        return None
    letter = {key: body[key] for key in _FIELDS}
    letter["raw_base64"] = body.get("raw_base64", "")
    letter["dead_letter_sequence"] = stored.sequence
    letter["dead_lettered_at"] = stored.time.isoformat()
    return letter


async def read_dead_letters(
    js: JetStreamContext,
    stream: StreamSettings,
    *,
    projection: str | None = None,
    kind: str | None = None,
    limit: int = 1_000,
) -> dict[str, Any]:
    """The dead letters of ``stream``, each (sequence, kind, projection) once, oldest source
    sequence first; only ``projection``'s or ``kind``'s when given.

    Reply: ``dead_letters`` (at most ``limit``, the newest when there are more; each with the
    source ``sequence``, ``subject``, ``stored_at``, ``kind``, ``reason``, ``projection``,
    ``raw_size``, ``raw_base64`` and where it sits on the dead-letter stream), ``total``
    (distinct dead letters that match), ``truncated``, ``collapsed`` (copies folded into an
    earlier one), ``unreadable`` (messages on the stream that are not dead letters of
    ``stream``), ``stream`` and ``exists`` (False, and nothing listed, when no engine ever
    created the dead-letter stream). Never creates or changes a stream. Raises UsageError on a
    malformed filter.
    """
    if limit < 1:
        raise UsageError(f"limit must be at least 1, got {limit}")
    for name, value in (("projection", projection), ("kind", kind)):
        if value is not None and not _TOKEN.match(value):
            raise UsageError(f"{name} must be a name (letters, digits, _ or -), got {value!r}")
    dlq = dead_letter_stream_name(stream)
    reply: dict[str, Any] = {
        "stream": dlq,
        "exists": True,
        "dead_letters": [],
        "total": 0,
        "truncated": False,
        "collapsed": 0,
        "unreadable": 0,
    }
    try:
        await js.stream_info(dlq)
    except NotFoundError:
        reply["exists"] = False
        return reply
    seen: dict[tuple[int, str, str], dict[str, Any]] = {}
    subject = stream.service.dead_letter_prefix + (kind or ">")
    async for stored in read_stream(js, dlq, ReadRange(subject=subject)):
        letter = _letter(stored, stream.name)
        if letter is None:
            reply["unreadable"] += 1
            continue
        if projection is not None and letter["projection"] != projection:
            continue
        key = (letter["sequence"], str(letter["kind"]), letter["projection"])
        if key in seen:
            reply["collapsed"] += 1
            continue
        seen[key] = letter
    letters = sorted(seen.values(), key=lambda d: (d["sequence"], d["projection"], d["kind"]))
    reply.update(dead_letters=letters[-limit:], total=len(letters), truncated=len(letters) > limit)
    return reply
