"""The MCP tools: which agent events an MCP client may append and which catalogued query verbs
it may ask, each with a description written for a model choosing between them.

What a tool accepts is derived, never restated: a write tool's arguments are its event type's
payload model (``engine.events.EVENT_TYPES``), a read tool's are its verb's request model
(``engine.verbs.CATALOGUE``), both without ``namespace`` (the server's configuration or the HTTP
key decides it, never the model) and without the fields listed in ``omit`` (values a model cannot
usefully give, such as an embedding vector). ``hints`` only add descriptions to fields whose
model has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from engine.events import EVENT_TYPES, EventData
from engine.verbs import CATALOGUE

__all__ = [
    "ENVELOPE_ARGUMENTS",
    "READ_TOOLS",
    "TOOLS",
    "WRITE_TOOLS",
    "ReadTool",
    "WriteTool",
    "input_schema",
]

ENVELOPE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "session_id": {
        "type": "string",
        "minLength": 1,
        "maxLength": 256,
        "description": "optional: the session (conversation, orchestration run) this belongs to; "
        "engram groups and compacts a session's events",
    }
}
"""Envelope fields a write tool accepts beside the payload (the envelope's own model checks
them when the event is built)."""

_READS_NOTE = (
    " The answer includes consistency: the stream sequence it reflects and stale=true when the "
    "engine had not yet applied your latest write within its wait."
)


_MIN_SEQUENCE_NOTE = (
    "rarely needed (by default, reads already reflect this server's writes): a stream sequence, "
    "as a write returned, the answer must reflect; the engine waits a bounded time for it, "
    "else answers with consistency.stale true"
)


@dataclass(frozen=True, slots=True)
class WriteTool:
    """A tool that appends one agent event; it answers the stream sequence it was stored at."""

    name: str
    event_type: str
    description: str
    hints: dict[str, str] = field(default_factory=dict)
    omit: frozenset[str] = frozenset()

    @property
    def model(self) -> type[EventData]:
        return EVENT_TYPES[self.event_type].model

    @property
    def arguments(self) -> frozenset[str]:
        """The argument names it accepts."""
        return frozenset(self.model.model_fields) - self.omit | frozenset(ENVELOPE_ARGUMENTS)


@dataclass(frozen=True, slots=True)
class ReadTool:
    """A tool that asks one catalogued query verb of the engine, about the caller's namespace."""

    name: str
    verb: str
    description: str
    hints: dict[str, str] = field(default_factory=dict)
    omit: frozenset[str] = frozenset()
    require: frozenset[str] = frozenset()
    """Optional in the request model, required here (search's text: the vector is omitted)."""

    @property
    def model(self) -> type[BaseModel]:
        return CATALOGUE[self.verb].request

    @property
    def reply(self) -> type[BaseModel]:
        return CATALOGUE[self.verb].reply

    @property
    def arguments(self) -> frozenset[str]:
        return frozenset(self.model.model_fields) - self.omit - {"namespace"}


WRITE_TOOLS: tuple[WriteTool, ...] = (
    WriteTool(
        "store_workflow",
        "workflow.executed",
        "Record one run of a workflow: the sequence of steps you followed for a task, whether it "
        "succeeded, how long it took. Call it when you finish a multi-step task, success or "
        "failure: engram learns from these runs which workflow works best for each task type "
        "(get_best_workflow, list_patterns). Returns the stream sequence the record was stored at.",
        hints={
            "task_type": "a short label for the kind of task, e.g. deploy_service or "
            "bug_fix (inferred from request when omitted; use the same label every time)",
            "request": "what was asked, in words",
            "workflow_steps": "the steps, in order, as short names (e.g. run_tests)",
            "duration": "seconds the run took",
            "cost": "optional cost of the run (any unit, the same every time)",
            "metadata": "optional free-form JSON object",
        },
    ),
    WriteTool(
        "store_execution",
        "task.executed",
        "Record the outcome of one task you executed: a summary of what you did and what came "
        "of it, whether it succeeded, and the errors you hit. These are the memories "
        "search_memory and get_task_context find for similar tasks later, so write the summary "
        "for a reader who faces the same task. Returns the stream sequence it was stored at.",
        hints={
            "task_id": "your id for this task (any unique string)",
            "execution_summary": "what was done and the result, in plain sentences",
            "task_type": "a short label for the kind of task, e.g. deploy_service",
            "error_patterns": "short descriptions of the errors met, if any",
            "metadata": "optional free-form JSON object",
        },
        omit=frozenset({"embedding"}),
    ),
    WriteTool(
        "log_decision",
        "decision.logged",
        "Record a decision worth revisiting: who decided, what, why, in what context and "
        "against which alternatives. Later, record_outcome says how it turned out, and "
        "search_memory over decisions finds it when a similar choice comes up. Returns the "
        "stream sequence it was stored at.",
        hints={
            "decision_id": "your id for this decision (any unique string; record_outcome uses it)",
            "actor": "who decided (you, a user, another agent)",
            "decision": "what was decided",
            "rationale": "why",
            "context": "the situation it was decided in",
            "alternatives": "the options not taken",
            "task_id": "optional: the task it was made for",
        },
    ),
    WriteTool(
        "record_outcome",
        "decision.outcome",
        "Record how an earlier decision turned out, by the decision_id given to log_decision: "
        "success or not, with notes. Returns the stream sequence it was stored at.",
        hints={"notes": "what happened"},
    ),
    WriteTool(
        "add_knowledge",
        "knowledge.added",
        "Store a long-term document: a procedure, an incident report, a piece of knowledge or a "
        "configuration, for search_memory and assemble_context to find later. Use it for what "
        "stays true beyond one task. Returns the stream sequence it was stored at.",
        hints={
            "kind": "procedure, incident, knowledge or config",
            "title": "a one-line title",
            "content": "the document",
            "knowledge_id": "optional id: storing again under the same id supersedes it",
            "tags": "optional labels",
        },
    ),
    WriteTool(
        "give_feedback",
        "pattern.feedback",
        "Tell engram whether a learned pattern helped you: pattern_id as given by list_patterns, "
        "get_task_context or get_best_workflow, helpful true or false, and optionally a "
        "confidence adjustment between -1 and 1. Returns the stream sequence it was stored at.",
        hints={"confidence_adjustment": "optional, -1..1: how much to raise or lower confidence"},
    ),
    WriteTool(
        "cache_put",
        "cache.put",
        "Cache the answer you produced for a prompt, for ttl seconds, so that cache_lookup can "
        "return it when the same or a similar prompt comes again (saving the work of answering "
        "it). Use it for answers that stay valid a while; name the model that answered if "
        "answers differ by model. Returns the stream sequence it was stored at.",
        hints={
            "prompt": "the prompt (question, request) that was answered",
            "response": "the answer: text or any JSON value",
            "ttl": "seconds the answer stays valid (at most a year), e.g. 3600",
            "model": "optional: the model that answered",
            "metadata": "optional free-form JSON object",
        },
    ),
)

READ_TOOLS: tuple[ReadTool, ...] = (
    ReadTool(
        "search_memory",
        "search",
        "Search your memory for past tasks, decisions and knowledge similar to a text (words and "
        "meaning fused), most similar first. Use it before starting a task to see what happened "
        "in similar situations, or to look up something stored earlier. Returns hits, each with "
        "its text, similarity_score (0..1), success and task_type." + _READS_NOTE,
        hints={
            "success_only": "only memories of tasks that succeeded",
            "collections": "only these kinds: tasks, decisions, knowledge (default: all)",
            "task_type": "only memories of this task type",
        },
        omit=frozenset({"vector"}),
        require=frozenset({"text"}),
    ),
    ReadTool(
        "get_best_workflow",
        "best_workflow",
        "Get the workflow (sequence of steps) that has worked best for a task type, by success "
        "rate (or by duration or cost). Use it before a task whose type you have recorded runs "
        "of with store_workflow. Returns workflow: null until enough runs of that task type are "
        "recorded." + _READS_NOTE,
        hints={"task_type": "the task type label used with store_workflow"},
    ),
    ReadTool(
        "get_task_context",
        "task_context",
        "Prepare for a task: similar past tasks, the learned patterns of its task type, the best "
        "workflow and recommendations in plain sentences. Use it at the start of a task when "
        "you want advice rather than raw search hits." + _READS_NOTE,
    ),
    ReadTool(
        "assemble_context",
        "assemble_context",
        "Build a ready-to-read context for a task from recent events, similar memories and "
        "learned patterns, ranked by relevance and cut to fit max_tokens. Use it when you need a "
        "context block within a token budget. Returns chunks (tier, source, text, tokens) and "
        "total_tokens." + _READS_NOTE,
    ),
    ReadTool(
        "list_patterns",
        "list_patterns",
        "List the patterns engram has learned from your recorded runs (workflow, success and "
        "failure patterns), each with its task type, success rate, confidence and sample size, "
        "newest version of each. Use it to see what has been learned, or to find a pattern_id "
        "for give_feedback." + _READS_NOTE,
    ),
    ReadTool(
        "cache_lookup",
        "cache_lookup",
        "Look for a cached answer to a prompt before working it out: hit=true with the response "
        "when an answer cached with cache_put for a similar enough prompt (similarity 0..1, 0.85 "
        "by default) has not expired; on a miss, the nearest cached prompt and its similarity."
        + _READS_NOTE,
        hints={"threshold": "optional: the similarity a hit needs, 0..1 (default 0.85)"},
        omit=frozenset({"at"}),
    ),
)

_ALL: tuple[WriteTool | ReadTool, ...] = (*WRITE_TOOLS, *READ_TOOLS)
TOOLS: dict[str, WriteTool | ReadTool] = {tool.name: tool for tool in _ALL}


def input_schema(tool: WriteTool | ReadTool) -> dict[str, Any]:
    """The tool's JSON Schema: its model's, without ``namespace`` and the omitted fields,
    refusing unknown arguments, with the envelope arguments of a write tool and the hints as
    descriptions where the model has none."""
    schema = tool.model.model_json_schema()
    properties: dict[str, Any] = {
        name: dict(value)
        for name, value in schema.get("properties", {}).items()
        if name in tool.arguments
    }
    if isinstance(tool, WriteTool):
        properties.update(ENVELOPE_ARGUMENTS)
    for name, text in tool.hints.items():
        if name in properties and "description" not in properties[name]:
            properties[name]["description"] = text
    for value in properties.values():
        value.pop("title", None)  # "Task Type" for task_type says nothing more
    if "min_sequence" in properties:  # last, and in the words of this server
        properties["min_sequence"] = properties.pop("min_sequence") | {
            "description": _MIN_SEQUENCE_NOTE
        }
    result: dict[str, Any] = {"type": "object", "properties": properties}
    required = [name for name in schema.get("required", ()) if name in properties]
    if isinstance(tool, ReadTool):
        required += sorted(tool.require - set(required))
    if required:
        result["required"] = required
    result["additionalProperties"] = False
    if "$defs" in schema:
        result["$defs"] = schema["$defs"]
    return result
