"""Every catalogued query verb is on every surface derived from the catalogue: the AsyncAPI
document (a request-reply operation with the verb's request and reply schemas) and the SDK (one
marked ``MemoryClient`` method per verb, its parameters the request's fields). The SDK's methods
build the verb's request model, so a bad argument is refused before anything is sent, and they
read the verb's reply model from a real engine."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from consumers.asyncapi import QueryErrorReply, asyncapi_document, query_channel
from engine import MemoryClient
from engine.errors import EngineUnavailableError, QueryError, UsageError
from engine.events import EVENT_TYPES
from engine.recall import asked_verb
from engine.results import TaskMetrics
from engine.settings import Settings
from engine.stream import EventLog
from engine.verbs import CATALOGUE, QUERY_PREFIX, VerbSpec
from engine.verbs.fields import Cli
from engine.verbs.replies import ExportReply, SessionsReply, SqlReply, StatusReply
from tests.engines import running, settle

STEPS = ["plan", "apply", "verify"]

# -- the AsyncAPI document ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document()


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve at {part!r}"
        node = node[part]
    return node


def _deref(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"}:
        node = _resolve(document, node["$ref"])
    return node


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def _payload(document: dict[str, Any], message_ref: dict[str, Any]) -> dict[str, Any]:
    message = _deref(document, message_ref)
    payload: dict[str, Any] = _deref(document, message["payload"])
    return payload


@pytest.mark.parametrize("spec", CATALOGUE.values(), ids=list(CATALOGUE))
def test_every_verb_is_a_request_reply_operation_in_the_asyncapi_document(
    document: dict[str, Any], spec: VerbSpec
) -> None:
    """The verb's channel is on engram.query.{namespace}.<verb> (an operator verb's on
    engram.query.<verb>), with the namespace parameter where the address has it, and the
    operation lists every subject the verb is answered on; its message is the request model
    (every field, as pydantic writes its JSON Schema); its operation replies with the reply
    model or the error reply; its description is the summary, saying so when it is an operator
    verb."""
    key = query_channel(spec.name)
    channel = document["channels"][key]
    tenant, operator = f"{QUERY_PREFIX}{{namespace}}.{spec.name}", QUERY_PREFIX + spec.name
    assert channel["address"] == (operator if spec.operator else tenant)
    assert ("parameters" in channel) is (not spec.operator)
    assert document["operations"][key]["x-engram-subjects"] == (
        [tenant] if spec.scope == "tenant" else [tenant, operator]
    )
    assert channel["bindings"]["nats"]["queue"] == "engram-query"

    [request_ref] = channel["messages"].values()
    request = _payload(document, request_ref)
    assert request["title"] == spec.request.__name__
    assert set(request.get("properties", {})) == set(spec.request.model_fields)
    expected = spec.request.model_json_schema()
    assert request.get("properties", {}) == expected.get("properties", {})
    assert request.get("required", []) == expected.get("required", [])

    operation = document["operations"][key]
    assert operation["action"] == "receive"
    assert _deref(document, operation["channel"]) is channel
    assert spec.summary in operation["description"] and spec.summary in channel["description"]
    assert operation["x-engram-operator"] is spec.operator
    assert ("Operator verb" in operation["description"]) is spec.operator
    assert ("Operator verb" in channel["description"]) is spec.operator

    reply_channel = _deref(document, operation["reply"]["channel"])
    assert reply_channel["address"] is None  # the asker's inbox
    replies = [_payload(document, ref) for ref in operation["reply"]["messages"]]
    assert [r["title"] for r in replies] == [spec.reply.__name__, QueryErrorReply.__name__]
    assert set(replies[0]["properties"]) == set(spec.reply.model_fields)
    assert replies[0].get("required", []) == spec.reply.model_json_schema().get("required", [])
    assert set(replies[1]["properties"]) == {"error", "kind"}


def test_the_query_operations_are_the_catalogue_and_the_events_stay(
    document: dict[str, Any],
) -> None:
    """No query channel outside the catalogue (nor one missing from it); every event type keeps
    its publish channel; the document is AsyncAPI 3 and every $ref in it resolves."""
    queries = {k for k, op in document["operations"].items() if k.startswith("query.")}
    assert queries == {query_channel(name) for name in CATALOGUE}
    assert {"search", "task_context", "assemble_context", "sessions", "status"} <= {
        q.removeprefix("query.") for q in queries
    }
    published = {c["address"] for k, c in document["channels"].items() if k.endswith(":publish")}
    assert published == {spec.subject("{namespace}") for spec in EVENT_TYPES.values()}
    assert document["asyncapi"].startswith("3.")
    refs = _references(document)
    assert len(refs) > 4 * len(CATALOGUE)
    for ref in refs:
        _resolve(document, ref)
    json.dumps(document)  # plain JSON throughout


# -- the SDK -----------------------------------------------------------------------------------

# Request fields an SDK method does not offer, and why (each entry must still be needed).
NOT_OFFERED = {
    ("task_context", "task_type"): "get_task_context keeps its published signature; the engine "
    "infers the task type from the description",
}
# SDK parameters that are not request fields, and why.
SDK_ONLY = {
    ("metrics", "every_namespace"): "asks every namespace instead of the client's",
    ("workflows", "every_namespace"): "asks every namespace instead of the client's",
}


def _marked() -> dict[str, list[str]]:
    asked: dict[str, list[str]] = {}
    for name, member in inspect.getmembers(MemoryClient, inspect.iscoroutinefunction):
        verb = asked_verb(member)
        if verb is not None:
            asked.setdefault(verb, []).append(name)
    return asked


def test_the_sdk_has_one_marked_method_per_verb() -> None:
    """Exactly one MemoryClient method asks each catalogued verb, and it is the verb's sdk."""
    asked = _marked()
    assert set(asked) == set(CATALOGUE)
    assert asked == {name: [spec.sdk] for name, spec in CATALOGUE.items()}
    assert asked_verb(MemoryClient.find_similar_decisions) is None  # a convenience over search


def _hidden(spec: VerbSpec, field: str) -> bool:
    return any(isinstance(m, Cli) and m.hidden for m in spec.request.model_fields[field].metadata)


@pytest.mark.parametrize("spec", CATALOGUE.values(), ids=list(CATALOGUE))
def test_each_sdk_method_offers_the_request_fields(spec: VerbSpec) -> None:
    """The method's parameters are the request's fields (hidden ones may be left out), except
    where NOT_OFFERED / SDK_ONLY say why."""
    method = getattr(MemoryClient, spec.sdk)
    parameters = set(inspect.signature(method).parameters) - {"self"}
    fields = set(spec.request.model_fields)
    wanted = {f for f in fields if not _hidden(spec, f)}
    excused = {f for (v, f) in NOT_OFFERED if v == spec.name}
    extra = {p for (v, p) in SDK_ONLY if v == spec.name}
    assert wanted - excused <= parameters, f"{spec.sdk} lacks {wanted - excused - parameters}"
    assert not excused & parameters, f"{spec.sdk} offers {excused & parameters}: drop the excuse"
    assert parameters - extra <= fields, f"{spec.sdk} has unknown {parameters - extra - fields}"
    assert extra <= parameters


PUBLISHED = {
    # name: [(parameter, kind, default)] of the methods the SDK had before the catalogue.
    "retrieve_workflow_patterns": [
        ("task_type", "POSITIONAL_OR_KEYWORD", None),
        ("min_success_rate", "POSITIONAL_OR_KEYWORD", 0.7),
        ("namespace", "KEYWORD_ONLY", None),
    ],
    "get_best_workflow_for_task": [
        ("task_type", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("optimization_target", "POSITIONAL_OR_KEYWORD", "success_rate"),
        ("namespace", "KEYWORD_ONLY", None),
    ],
    "get_task_success_metrics": [
        ("task_type", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("namespace", "KEYWORD_ONLY", None),
    ],
    "search_patterns": [
        ("task_type", "POSITIONAL_OR_KEYWORD", None),
        ("pattern_type", "POSITIONAL_OR_KEYWORD", None),
        ("limit", "POSITIONAL_OR_KEYWORD", 10),
        ("namespace", "KEYWORD_ONLY", None),
    ],
    "list_patterns": [
        ("pattern_type", "POSITIONAL_OR_KEYWORD", None),
        ("limit", "POSITIONAL_OR_KEYWORD", 50),
        ("namespace", "KEYWORD_ONLY", None),
    ],
    "extract_pattern": [
        ("task_type_pattern", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("pattern_type", "POSITIONAL_OR_KEYWORD", "success"),
        ("min_samples", "POSITIONAL_OR_KEYWORD", 5),
        ("namespace", "KEYWORD_ONLY", None),
    ],
    "get_learning_metrics": [("namespace", "KEYWORD_ONLY", None)],
    "search_similar": [
        ("text", "POSITIONAL_OR_KEYWORD", None),
        ("vector", "KEYWORD_ONLY", None),
        ("top_k", "KEYWORD_ONLY", 5),
        ("similarity_threshold", "KEYWORD_ONLY", 0.0),
        ("success_only", "KEYWORD_ONLY", False),
        ("collections", "KEYWORD_ONLY", None),
        ("task_type", "KEYWORD_ONLY", None),
        ("namespace", "KEYWORD_ONLY", None),
        ("mode", "KEYWORD_ONLY", "hybrid"),
        ("group_duplicates", "KEYWORD_ONLY", True),
        ("duplicate_similarity", "KEYWORD_ONLY", None),
    ],
    "find_similar_decisions": [
        ("context", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("top_k", "POSITIONAL_OR_KEYWORD", 5),
        ("namespace", "KEYWORD_ONLY", None),
        ("mode", "KEYWORD_ONLY", "hybrid"),
    ],
    "get_task_context": [
        ("task_description", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("top_k", "POSITIONAL_OR_KEYWORD", 5),
        ("namespace", "KEYWORD_ONLY", None),
        ("mode", "KEYWORD_ONLY", "hybrid"),
    ],
    "assemble_context": [
        ("task_description", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("max_tokens", "POSITIONAL_OR_KEYWORD", 1_000),
        ("tiers", "POSITIONAL_OR_KEYWORD", ("operational", "working", "longterm")),
        ("namespace", "KEYWORD_ONLY", None),
    ],
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_the_published_sdk_methods_keep_their_signatures(name: str) -> None:
    """The methods the SDK had before the catalogue keep their parameters, order, kinds and
    defaults (the public API); a parameter added since is keyword-only with a default (read
    your writes added ``min_sequence`` to each), so no call that worked breaks."""
    signature = inspect.signature(getattr(MemoryClient, name))
    got = [(p.name, p.kind.name, p.default) for p in signature.parameters.values()][1:]
    published = PUBLISHED[name]
    assert got[: len(published)] == published
    added = got[len(published) :]
    assert all(kind == "KEYWORD_ONLY" and d is not inspect.Parameter.empty for _, kind, d in added)
    assert [n for n, _, _ in added] == ["min_sequence"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.search_similar("x", top_k=0), "top_k must be between 1 and 1000, got 0"),
        (lambda m: m.search_similar("x", mode="semantic"), "mode must be"),
        (lambda m: m.assemble_context("x", tiers=[]), "tiers must not be empty"),
        (lambda m: m.get_best_workflow_for_task("t", "speed"), "optimization_target must be"),
        (lambda m: m.extract_pattern(".*", min_samples=0), "min_samples must be at least 1"),
        (lambda m: m.sql("SELECT 1", limit=0), "limit must be between 1 and 10000, got 0"),
        (lambda m: m.sessions(limit=0), "limit must be at least 1"),
        (lambda m: m.get_task_context("x" * 65_537), "task_description has 65,537 characters"),
        (lambda m: m.table_metrics(namespace="a", every_namespace=True), "exclude each other"),
    ],
    ids=[
        "top_k",
        "mode",
        "tiers",
        "optimization_target",
        "min_samples",
        "sql-limit",
        "sessions-limit",
        "task_description",
        "every_namespace",
    ],
)
async def test_a_bad_argument_is_refused_before_anything_is_sent(
    settings: Settings, nc: NatsClient, event_log: EventLog, call: Any, message: str
) -> None:
    """The SDK builds the verb's request model: a bad argument raises the UsageError (naming the
    parameter) the engine would answer, and nothing reaches engram.query.>."""
    asked: list[str] = []

    async def count(msg: Msg) -> None:
        asked.append(msg.subject)

    sub = await nc.subscribe(settings.stream.service.query_prefix + ">", cb=count)
    async with MemoryClient(settings=settings) as memory:
        with pytest.raises(UsageError) as refused:
            await call(memory)
        await nc.flush()
    await sub.unsubscribe()
    assert message in str(refused.value)
    assert asked == []


async def test_the_new_sdk_methods_read_validated_replies_from_an_engine(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """status, checkpoints, table_metrics, workflow_metrics, sql, export and sessions ask a
    running engine (sql and export enabled) and return its answers as validated models; the
    client's namespace scopes them unless another (or every) namespace is asked for."""
    operator = settings.model_copy(update={"query_sql": True, "query_export": True})
    async with (
        running(operator, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha", agent_id="a1") as alpha,
        MemoryClient(settings=settings, namespace="beta", agent_id="b1") as beta,
    ):
        for i in range(3):
            await alpha.store_workflow(
                task_type="deployment", workflow_steps=STEPS, success=i > 0, duration=2.0
            )
        await beta.store_workflow(
            task_type="review", workflow_steps=["read"], success=True, duration=1.0
        )
        await alpha.start_session("s1", goal="ship it")
        await alpha.store_execution(
            task_id="t1", execution_summary="shipped", success=True, session_id="s1"
        )
        await alpha.end_session("s1", success=True)
        await settle(engine)

        status = await alpha.status()
        assert isinstance(status, StatusReply)
        assert status.stream == settings.stream.name and status.instance == engine.instance
        assert status.last_sequence >= 7 and status.projections
        assert all(p.lag == 0 and not p.degraded for p in status.projections.values())

        checkpoints = await alpha.checkpoints()
        assert checkpoints["tables"] == status.projections["tables"].checkpoint
        assert set(checkpoints.values()) == {status.last_sequence}

        [metrics] = await alpha.table_metrics()
        assert isinstance(metrics, TaskMetrics)
        assert (metrics.namespace, metrics.task_type) == ("alpha", "deployment")
        assert (metrics.total_executions, metrics.successful_executions) == (3, 2)
        assert [m.task_type for m in await alpha.table_metrics(namespace="beta")] == ["review"]
        every = await alpha.table_metrics(every_namespace=True)
        assert {(m.namespace, m.task_type) for m in every} == {
            ("alpha", "deployment"),
            ("beta", "review"),
        }
        assert await alpha.table_metrics("review") == []

        [workflow] = await alpha.workflow_metrics("deployment")
        assert (workflow["workflow_steps"], workflow["executions"]) == (STEPS, 3)
        assert len(await beta.workflow_metrics(every_namespace=True)) == 2

        rows = await alpha.sql(
            "SELECT namespace, count(*) AS n FROM workflows GROUP BY namespace ORDER BY namespace"
        )
        assert isinstance(rows, SqlReply)
        assert rows.columns == ["namespace", "n"] and not rows.truncated
        assert rows.rows == [{"namespace": "alpha", "n": 3}, {"namespace": "beta", "n": 1}]
        assert (await alpha.sql("SELECT * FROM workflows", limit=1)).truncated

        exported = await alpha.export("nightly")
        assert isinstance(exported, ExportReply)
        target = (tmp_path / "engine" / "exports" / "nightly").resolve()
        assert exported.location == str(target)
        assert exported.tables["workflows"]["rows"] == 4
        assert exported.sequence == status.last_sequence
        assert (target / "manifest.json").is_file()

        sessions = await alpha.sessions()
        assert isinstance(sessions, SessionsReply)
        [session] = sessions.sessions
        assert (session["session_id"], session["namespace"]) == ("s1", "alpha")
        assert "summary" in session and sessions.overview["compacted_sessions"] == 1
        [bare] = (await alpha.sessions("s1", summary=False)).sessions
        assert "summary" not in bare and bare["event_id"] == session["event_id"]
        assert (await beta.sessions()).sessions == []
        assert (await alpha.sessions("s1", namespace="beta")).sessions == []

        # The engine validates with the same models: its refusal reads as the SDK's.
        refusals: list[tuple[str, dict[str, Any], Callable[[], Awaitable[object]]]] = [
            ("search", {"text": "x", "top_k": 0}, lambda: alpha.search_similar("x", top_k=0)),
            ("sessions", {"limit": 0}, lambda: alpha.sessions(limit=0)),
            ("extract_pattern", {}, lambda: alpha.extract_pattern(None)),  # type: ignore[arg-type]
        ]
        for verb, body, refuse in refusals:
            raw = await nc.request(
                settings.stream.service.tenant_query(alpha.namespace, verb),
                json.dumps(body).encode(),
                timeout=5,
            )
            with pytest.raises(UsageError) as local:
                await refuse()
            assert json.loads(raw.data) == {"error": str(local.value), "kind": "usage"}, verb


async def _serving(memory: MemoryClient) -> None:
    """Wait until the engine answers queries (its service starts after its projections)."""
    async with asyncio.timeout(10):
        while True:
            try:
                await memory.status()
                return
            except EngineUnavailableError:
                await asyncio.sleep(0.05)


async def test_an_operator_verb_that_is_off_is_a_query_error(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """sql and export on an engine that does not enable them: the SDK raises QueryError with
    the engine's reason (the request was valid, so it was sent)."""
    async with (
        running(settings, nc, tmp_path / "engine"),
        MemoryClient(settings=settings) as memory,
    ):
        await _serving(memory)
        with pytest.raises(QueryError, match="--enable-sql"):
            await memory.sql("SELECT 1")
        with pytest.raises(QueryError, match="--enable-export"):
            await memory.export("nightly")
        assert not (tmp_path / "engine" / "exports").exists()


async def test_an_answer_that_is_not_the_verbs_reply_is_a_query_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine answering with something the reply model refuses (another version, a bug)
    raises QueryError naming the verb, never pydantic's ValidationError (one exception root)."""
    import engine.recall

    async def answers_garbage(*_args: object, **_kwargs: object) -> dict[str, object]:
        return {"hits": "not a list"}

    class Offline(engine.recall.RecallVerbs):
        namespace = "default"
        _query_timeout_s = 1.0

        def _connection(self) -> Any:
            return None

    monkeypatch.setattr(engine.recall, "query_remote", answers_garbage)
    with pytest.raises(QueryError, match="the engine's answer to search is not a SearchReply"):
        await Offline().search_similar("anything")
