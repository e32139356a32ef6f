"""The MCP resources: what the caller's namespace has learned, as JSON documents.

- ``engram://patterns``: every learned pattern (``list_patterns``);
- ``engram://patterns/{task_type}``: the patterns of one task type (``search_patterns``);
- ``engram://learning``: learning metrics: success rate, runs, learned task types (``learning``).

Listing the resources names one ``engram://patterns/<task type>`` per learned task type too, for
clients that do not expand templates. Reads follow the server's consistency, like the tools.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote, unquote

import mcp_types as types

from engine.errors import UsageError
from engine.verbs.fields import MAX_IDENTIFIER_CHARS
from engram.mcp.calls import Memory

__all__ = [
    "LEARNING_URI",
    "PATTERNS_URI",
    "Reading",
    "UnknownResourceError",
    "list_resources",
    "read",
    "resolve",
    "templates",
]

PATTERNS_URI = "engram://patterns"
LEARNING_URI = "engram://learning"
_JSON = "application/json"


class UnknownResourceError(UsageError):
    """A resource URI engram does not offer."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What one resource URI asks: a verb and its arguments."""

    verb: str
    arguments: dict[str, object]


def resolve(uri: str) -> Reading:
    """The verb a resource URI reads; raises UsageError for a URI that is none of ours."""
    if uri == PATTERNS_URI:
        return Reading("list_patterns", {})
    if uri == LEARNING_URI:
        return Reading("learning", {})
    prefix = PATTERNS_URI + "/"
    if uri.startswith(prefix) and len(uri) > len(prefix):
        task_type = unquote(uri[len(prefix) :])
        if "/" not in task_type and len(task_type) <= MAX_IDENTIFIER_CHARS:
            return Reading("search_patterns", {"task_type": task_type, "limit": 100})
    raise UnknownResourceError(
        f"no resource {uri!r}: engram offers {PATTERNS_URI}, {PATTERNS_URI}/{{task_type}} and "
        f"{LEARNING_URI}"
    )


def templates() -> list[types.ResourceTemplate]:
    return [
        types.ResourceTemplate(
            name="patterns of a task type",
            uri_template=PATTERNS_URI + "/{task_type}",
            description="The patterns learned for one task type (workflow, success, failure), "
            "most confident first, as JSON.",
            mime_type=_JSON,
        )
    ]


async def list_resources(memory: Memory, namespace: str) -> list[types.Resource]:
    """The fixed resources and one per task type the namespace has learned (asks the engine)."""
    listed = [
        types.Resource(
            name="learned patterns",
            uri=PATTERNS_URI,
            description="Every pattern learned in this memory, newest version of each, as JSON.",
            mime_type=_JSON,
        ),
        types.Resource(
            name="learning metrics",
            uri=LEARNING_URI,
            description="Overall success rate, workflows run, learned task types, per task "
            "type metrics, as JSON.",
            mime_type=_JSON,
        ),
    ]
    reply, _ = await memory.ask("learning", {}, namespace)
    for task_type in getattr(reply, "learned_task_types", []):
        listed.append(
            types.Resource(
                name=f"patterns of {task_type}",
                uri=f"{PATTERNS_URI}/{quote(task_type, safe='')}",
                description=f"The patterns learned for task type {task_type}, as JSON.",
                mime_type=_JSON,
            )
        )
    return listed


async def read(memory: Memory, uri: str, namespace: str) -> types.TextResourceContents:
    """The resource's JSON: the verb's reply with its ``consistency``."""
    reading = resolve(uri)
    reply, consistency = await memory.ask(reading.verb, reading.arguments, namespace)
    body = reply.model_dump(mode="json")
    body["consistency"] = None if consistency is None else consistency.model_dump()
    return types.TextResourceContents(
        uri=uri,
        mime_type=_JSON,
        text=json.dumps(body, ensure_ascii=False),
    )
