"""Running a tool call against the engine, through the SDK's ``MemoryClient``.

Every call is validated with the same models the SDK and the engine use, in the namespace the
server resolved (``tenancy``): an argument ``namespace`` is refused, as is any argument the tool
does not offer, and a bad value is a tool error naming the field. Nothing a call does can stop
the server: an engine that is away, a refusal of the broker, or a bug is reported as a tool
error (a bug is logged too).

Read-your-writes (``consistency="read_your_writes"``, the default for MCP): each read is asked
with ``min_sequence`` at least the last sequence this server wrote for that namespace, so a
model always recalls what it just stored. The cost: a read right after a write waits until the
projections the verb reads have applied that write (usually milliseconds; at most the engine's
``query_consistency_wait_s``, then it answers marked stale).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

import mcp_types as types
import structlog
from pydantic import BaseModel, ValidationError

from engine.client import MemoryClient
from engine.errors import (
    ConnectionFailedError,
    EngineUnavailableError,
    EngramError,
    InvalidEventError,
    PermissionDeniedError,
    StreamNotFoundError,
    UsageError,
)
from engine.verbs.replies import Consistency
from engine.verbs.validation import usage_message
from engram.mcp.results import Stored, error_result, read_result, write_result
from engram.mcp.tools import ENVELOPE_ARGUMENTS, TOOLS, ReadTool, WriteTool

__all__ = ["ClientSource", "ConsistencyMode", "Memory"]

log = structlog.get_logger(__name__)

ConsistencyMode = Literal["read_your_writes", "eventual"]
M = TypeVar("M", bound=BaseModel)


def _refuse_arguments(tool: WriteTool | ReadTool, arguments: Mapping[str, Any]) -> None:
    if "namespace" in arguments:
        raise UsageError(
            "namespace is not an argument: this server decides whose memory a call touches "
            "(its configuration, or your API key); leave namespace out"
        )
    missing = sorted(tool.require - set(arguments)) if isinstance(tool, ReadTool) else []
    if missing:
        raise UsageError(f"{missing[0]} is required")
    unknown = sorted(set(arguments) - tool.arguments)
    if unknown:
        raise UsageError(
            f"{unknown[0]} is not an argument of {tool.name} "
            f"(it takes {', '.join(sorted(tool.arguments))})"
        )


def _validated(model: type[M], fields: Mapping[str, Any]) -> M:
    """``fields`` as ``model``; UsageError naming every bad field."""
    try:
        return model.model_validate(dict(fields))
    except ValidationError as exc:
        raise UsageError("; ".join(usage_message(model, e) for e in exc.errors())) from None


ClientSource = Callable[[], Awaitable[MemoryClient]]
"""Gives the connected client for a call (the HTTP gateway's connects lazily and again after a
loss; it raises ConnectionFailedError or StreamNotFoundError while it cannot)."""


class Memory:
    """The engine as the tools see it: one client (or a source of it), shared by every call."""

    def __init__(
        self, client: MemoryClient | ClientSource, *, consistency: ConsistencyMode
    ) -> None:
        self._client = client
        self.consistency = consistency
        self._written: dict[str, int] = {}
        """The last sequence written per namespace through this server."""

    async def client(self) -> MemoryClient:
        if isinstance(self._client, MemoryClient):
            return self._client
        return await self._client()

    def written(self, namespace: str) -> int | None:
        """The sequence a read in ``namespace`` must reflect (None: no wait)."""
        if self.consistency != "read_your_writes":
            return None
        return self._written.get(namespace)

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None, namespace: str
    ) -> types.CallToolResult:
        """Run tool ``name``; every failure is a tool error, never an exception."""
        tool = TOOLS.get(name)
        if tool is None:
            return error_result(f"unknown tool {name!r}; the tools are {', '.join(TOOLS)}")
        args = dict(arguments or {})
        try:
            _refuse_arguments(tool, args)
            if isinstance(tool, WriteTool):
                return write_result(await self._write(tool, args, namespace))
            return await self._read(tool, args, namespace)
        except (UsageError, InvalidEventError) as exc:
            return error_result(f"invalid arguments for {tool.name}: {exc}")
        except (EngineUnavailableError, ConnectionFailedError, StreamNotFoundError) as exc:
            return error_result(f"engram is unavailable, try again later: {exc}")
        except PermissionDeniedError as exc:
            return error_result(f"refused: {exc}")
        except EngramError as exc:
            return error_result(f"{tool.name} failed: {exc}")
        except Exception as exc:  # a bug must not take the server (and the client's session) down
            log.exception("MCP tool call failed", tool=tool.name, namespace=namespace)
            return error_result(f"{tool.name} failed inside engram ({type(exc).__name__}); logged")

    async def _write(self, tool: WriteTool, args: dict[str, Any], namespace: str) -> Stored:
        envelope = {k: args.pop(k) for k in list(args) if k in ENVELOPE_ARGUMENTS}
        data = _validated(tool.model, args)
        client = await self.client()
        session_id = envelope.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise UsageError(f"session_id must be a string, got {type(session_id).__name__}")
        if session_id is None:
            event = client.event(data, namespace=namespace)
        else:
            event = client.event(data, namespace=namespace, session_id=session_id)
        sequence = await client.publish(event)
        self._written[namespace] = max(self._written.get(namespace, 0), sequence)
        return Stored(sequence=sequence, event_id=event.id, type=event.type, namespace=namespace)

    async def ask(
        self, verb: str, args: Mapping[str, Any], namespace: str
    ) -> tuple[BaseModel, Consistency | None]:
        """Ask ``verb`` about ``namespace``, reflecting this server's writes there when
        reading one's writes."""
        fields = dict(args)
        written = self.written(namespace)
        if written:
            asked = fields.get("min_sequence")
            # a min_sequence the model gives may ask for more, never for less (a bad value is
            # left for the request model to name)
            fields["min_sequence"] = (
                max(asked, written) if type(asked) is int else (asked or written)
            )
        answer = await (await self.client()).ask(verb, fields, namespace=namespace)
        return answer.reply, answer.consistency

    async def _read(
        self, tool: ReadTool, args: dict[str, Any], namespace: str
    ) -> types.CallToolResult:
        reply, consistency = await self.ask(tool.verb, args, namespace)
        return read_result(tool, reply, consistency)
