"""The MCP tools are derived from the SDK's models, the namespace is never the model's to
choose, and what a call answers says how fresh it is (no engine needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

pytest.importorskip("mcp")  # a safety net only: CI installs the mcp extra

import mcp_types as types

from engine.client import MemoryClient
from engine.errors import PermissionDeniedError, UsageError
from engine.events import EVENT_TYPES
from engine.events.registry import AGENT_TYPES
from engine.verbs import CATALOGUE
from engine.verbs.replies import Consistency, SearchReply
from engram.mcp import READ_TOOLS, TOOLS, WRITE_TOOLS, Memory, namespace_from_key, tool_list
from engram.mcp.calls import ClientSource
from engram.mcp.resources import UnknownResourceError, resolve
from engram.mcp.results import read_result
from engram.mcp.tenancy import fixed_namespace
from engram.mcp.tools import ENVELOPE_ARGUMENTS, ReadTool


def _schemas() -> dict[str, dict[str, Any]]:
    return {tool.name: tool.input_schema for tool in tool_list()}


def test_write_tools_are_the_agent_event_models_without_namespace() -> None:
    """Each write tool appends an agent event type; its arguments are exactly the payload
    model's fields (but those omitted) plus the envelope's session_id, with the model's
    required fields, and unknown arguments refused."""
    schemas = _schemas()
    for tool in WRITE_TOOLS:
        assert tool.event_type in AGENT_TYPES
        model = EVENT_TYPES[tool.event_type].model
        schema = schemas[tool.name]
        assert set(schema["properties"]) == (set(model.model_fields) - tool.omit) | set(
            ENVELOPE_ARGUMENTS
        )
        required = [n for n, f in model.model_fields.items() if f.is_required()]
        assert schema.get("required", []) == required
        assert schema["additionalProperties"] is False
        assert "namespace" not in schema["properties"]


def test_read_tools_are_catalogued_tenant_verbs_without_namespace() -> None:
    """Each read tool asks a verb of the catalogue about one tenant; its arguments are the
    verb's request fields but namespace (and what a model cannot give: search's vector)."""
    schemas = _schemas()
    for tool in READ_TOOLS:
        spec = CATALOGUE[tool.verb]
        assert spec.scope == "tenant"
        schema = schemas[tool.name]
        assert set(schema["properties"]) == set(spec.request.model_fields) - tool.omit - {
            "namespace"
        }
        assert "min_sequence" in schema["properties"]
    assert set(TOOLS) == {t.name for t in WRITE_TOOLS} | {t.name for t in READ_TOOLS}
    assert len(TOOLS) == 13


@dataclass(frozen=True)
class _Key:
    name: str
    namespaces: tuple[str, ...]
    operator: bool = False


@dataclass
class _State:
    engram_key: _Key | None


@dataclass
class _Request:
    state: _State
    headers: dict[str, str]


def _request(key: _Key | None, header: str | None = None) -> _Request:
    return _Request(_State(key), {} if header is None else {"Engram-Namespace": header})


def test_namespace_comes_from_the_key_and_its_header() -> None:
    """A key's only namespace, or the one the Engram-Namespace header names among the key's;
    a header naming another namespace is refused, as is a key with several and no header, and
    a request without a key. The operator flag widens nothing."""
    alpha = _Key("a", ("alpha",))
    both = _Key("ab", ("alpha", "beta"))
    assert namespace_from_key(_request(alpha)) == "alpha"
    assert namespace_from_key(_request(alpha, "alpha")) == "alpha"
    assert namespace_from_key(_request(both, "beta")) == "beta"
    with pytest.raises(UsageError, match="Engram-Namespace"):
        namespace_from_key(_request(both))
    with pytest.raises(PermissionDeniedError, match="'gamma'"):
        namespace_from_key(_request(both, "gamma"))
    with pytest.raises(PermissionDeniedError, match="'beta'"):
        namespace_from_key(_request(alpha, "beta"))
    with pytest.raises(PermissionDeniedError, match="'beta'"):
        namespace_from_key(_request(_Key("op", ("alpha",), operator=True), "beta"))
    with pytest.raises(PermissionDeniedError, match="API key"):
        namespace_from_key(_request(None))
    with pytest.raises(UsageError, match="not valid"):
        fixed_namespace("a.b")


async def test_a_namespace_argument_is_refused_before_the_engine_is_asked() -> None:
    """A call naming a namespace (or any argument its tool lacks) is a tool error, and the
    engine is never reached: no client is even asked for."""

    async def no_client() -> MemoryClient:
        raise AssertionError("the engine was reached")

    source: ClientSource = no_client
    memory = Memory(source, consistency="read_your_writes")
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("search_memory", {"text": "x", "namespace": "beta"}, "namespace"),
        ("store_execution", {"task_id": "t", "execution_summary": "s", "success": True,
                             "namespace": "beta"}, "namespace"),
        ("list_patterns", {"tenant": "beta"}, "tenant"),
    ]  # fmt: skip
    for tool, arguments, field in cases:
        result = await memory.call(tool, arguments, "alpha")
        assert result.is_error
        (content,) = result.content
        assert isinstance(content, types.TextContent) and field in content.text


def test_resource_uris() -> None:
    """The resources read list_patterns, learning, and search_patterns of one task type;
    anything else is an unknown resource."""
    assert resolve("engram://patterns").verb == "list_patterns"
    assert resolve("engram://learning").verb == "learning"
    reading = resolve("engram://patterns/deploy%3Av2")
    assert reading.verb == "search_patterns" and reading.arguments["task_type"] == "deploy:v2"
    for uri in ("engram://patterns/", "engram://patterns/a/b", "engram://other", "http://x"):
        with pytest.raises(UnknownResourceError):
            resolve(uri)


def test_a_stale_answer_says_so() -> None:
    """A read the engine answered stale says so in its structured consistency and its text."""
    tool = TOOLS["search_memory"]
    assert isinstance(tool, ReadTool)
    fresh = read_result(tool, SearchReply(hits=[]), Consistency(sequence=9, stale=False))
    stale = read_result(tool, SearchReply(hits=[]), Consistency(sequence=7, stale=True))
    assert fresh.structured_content["consistency"] == {"sequence": 9, "stale": False}
    assert stale.structured_content["consistency"] == {"sequence": 7, "stale": True}
    texts = [c.text for r in (fresh, stale) for c in r.content if isinstance(c, types.TextContent)]
    assert "Stale" not in texts[0]
    assert "Stale: reflects stream sequence 7" in texts[1]
