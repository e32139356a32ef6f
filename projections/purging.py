"""Forgetting a tenant: what a ``namespace.purged`` event asks of every projection, and which
stored messages belong to the tenant it names.

An operator's ``engram purge`` removes a tenant's messages from the stream and appends a
``namespace.purged`` event on the tenant's subject. Every projection, applying that event,
forgets everything the tenant's earlier events decided (rows, memories and indexes, patterns,
sessions, the envelope ids applied and the repeats counted), so that its state is the state of
the same history without the tenant's earlier events: the state a replay of the purged stream
builds. The tenant's events after it are applied as usual (it starts afresh).

The event counts like any other: only its first occurrence (by envelope id) forgets, and its own
id is then recorded as the tenant's, as a replay records it.

A message belongs to the tenant when its subject is one of the tenant's v2 subjects
(``subject_filter``, ``memory.*.*.<namespace>``), or when it is a v1 message (``legacy_filter``,
``memory.*.*``) whose body is a JSON object naming the tenant (``namespace``, ``default`` when
absent, as the envelope's default). The purge command and the tables' dead letters use this one
rule, so what leaves the stream and what leaves the tables agree.
"""

from __future__ import annotations

import json

from engine.events import Event
from engine.events.derived import NamespacePurged

__all__ = ["belongs_to", "body_namespace", "purged_namespace", "subject_matches"]


def purged_namespace(event: Event) -> str | None:
    """The namespace ``event`` purges: a ``namespace.purged`` event whose payload names its
    own envelope's namespace (None for any other event)."""
    data = event.data
    if isinstance(data, NamespacePurged) and data.namespace == event.namespace:
        return data.namespace
    return None


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for position, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > position
        if position >= len(tokens) or (token != "*" and token != tokens[position]):
            return False
    return len(tokens) == len(wanted)


def body_namespace(body: bytes) -> str | None:
    """The namespace a message body names: a JSON object's ``namespace`` (``default`` when it
    has none, as an envelope without one is); None when the body is no JSON object or its
    namespace is no string."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    namespace = raw.get("namespace", "default")
    return namespace if isinstance(namespace, str) else None


def belongs_to(purge: NamespacePurged, subject: str, body: bytes) -> bool:
    """True when the message (``subject``, ``body``) is one of the tenant's that ``purge``
    removes: on one of its v2 subjects, or a v1 message whose body names it."""
    if subject_matches(purge.subject_filter, subject):
        return True
    if purge.legacy_filter is None or not subject_matches(purge.legacy_filter, subject):
        return False
    return body_namespace(body) == purge.namespace
