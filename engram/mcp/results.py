"""What a tool call answers: structured JSON (the reply model, or where a write was stored)
with its JSON Schema, plus a text block for clients that show text only.

The text is a one-line summary followed by the same JSON: the protocol asks a tool returning
structured content to also return it serialized, and many clients hand a model nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from engine.verbs.replies import Consistency
from engram.mcp.tools import ReadTool, WriteTool

__all__ = ["Stored", "error_result", "output_schema", "read_result", "write_result"]


class Stored(BaseModel):
    """Where a write tool's event was stored."""

    sequence: int
    """The stream sequence: pass it as min_sequence to read it back at once."""
    event_id: str
    type: str
    namespace: str


def output_schema(tool: WriteTool | ReadTool) -> dict[str, Any]:
    """The JSON Schema of the tool's structured result: ``Stored`` for a write, the verb's reply
    model plus ``consistency`` (null when the engine says nothing) for a read."""
    if isinstance(tool, WriteTool):
        return Stored.model_json_schema(mode="serialization")
    schema = tool.reply.model_json_schema(mode="serialization")
    consistency = Consistency.model_json_schema(mode="serialization")
    defs = schema.setdefault("$defs", {})
    defs["Consistency"] = consistency
    schema.setdefault("properties", {})["consistency"] = {
        "anyOf": [{"$ref": "#/$defs/Consistency"}, {"type": "null"}],
        "description": "the stream sequence the answer reflects; stale: true when the engine "
        "had not applied the writes asked for within its wait",
    }
    return schema


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def write_result(stored: Stored) -> types.CallToolResult:
    summary = (
        f"Stored {stored.type} at stream sequence {stored.sequence} (namespace {stored.namespace})."
    )
    structured = stored.model_dump(mode="json")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=summary + "\n" + _dumps(structured))],
        structured_content=structured,
    )


def _summary(tool: ReadTool, reply: dict[str, Any], consistency: Consistency | None) -> str:
    parts: list[str] = []
    for name, value in reply.items():
        if isinstance(value, list):
            parts.append(f"{len(value)} {name}")
        elif value is None and name == "workflow":
            parts.append("no workflow yet (too few recorded runs of this task type)")
    text = f"{tool.name}: " + (", ".join(parts) if parts else "answered") + "."
    if consistency is not None and consistency.stale:
        text += (
            f" Stale: reflects stream sequence {consistency.sequence}, not yet every write "
            "asked for (ask again shortly)."
        )
    return text


def read_result(
    tool: ReadTool, reply: BaseModel, consistency: Consistency | None
) -> types.CallToolResult:
    structured = reply.model_dump(mode="json")
    structured["consistency"] = None if consistency is None else consistency.model_dump()
    text = _summary(tool, structured, consistency) + "\n" + _dumps(structured)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def error_result(message: str) -> types.CallToolResult:
    """A tool error (``isError``): the model reads the message and may correct its call."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )
