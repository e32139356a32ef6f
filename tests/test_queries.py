"""An agent's whole journey against a running engine, through nothing but the SDK and the
documented NATS subjects: store what it did, ask what worked, get context within a token budget,
hear when something is learned — and never see another namespace's memories."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from engine import MemoryClient
from engine.errors import EngramError
from engine.settings import Settings
from engine.stream import EventLog, ReadRange
from tests.engines import running, settle
from tests.query_subjects import raw_subject

BEST = ["read_spec", "write_code", "run_tests"]
WORSE = ["write_code"]
BETA_STEPS = ["sketch", "ship"]
ALPHA_TEXT = "rotated the postgres credentials for the billing service"
BETA_TEXT = "tuned the kafka consumer lag alarm for the ingestion pipeline"


async def _store_alpha(memory: MemoryClient) -> None:
    for i in range(4):
        await memory.store_workflow(
            task_type="deployment", workflow_steps=BEST, success=True, duration=10.0 + i
        )
    for i in range(3):
        await memory.store_workflow(
            task_type="deployment", workflow_steps=WORSE, success=i == 0, duration=5.0
        )
    await memory.store_execution(
        task_id="a-1", execution_summary=ALPHA_TEXT, success=True, task_type="deployment"
    )
    await memory.store_execution(
        task_id="a-2",
        execution_summary="deploy of the billing service failed on a missing secret",
        success=False,
        task_type="deployment",
        error_patterns=["missing secret"],
    )
    await memory.add_knowledge(
        kind="procedure",
        title="Credential rotation",
        content="rotate postgres credentials: create the new role, deploy, drop the old role",
    )


async def _store_beta(memory: MemoryClient) -> None:
    for _ in range(3):
        await memory.store_workflow(
            task_type="deployment", workflow_steps=BETA_STEPS, success=True, duration=3.0
        )
    await memory.store_execution(
        task_id="b-1", execution_summary=BETA_TEXT, success=True, task_type="deployment"
    )


async def _ask_raw(nc: NatsClient, verb: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(raw_subject(verb, body), json.dumps(body).encode(), timeout=10)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


@pytest.mark.slow
async def test_an_agent_stores_asks_hears_and_stays_in_its_namespace(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    heard: list[dict[str, Any]] = []

    async def on_pattern(msg: Msg) -> None:
        event = json.loads(msg.data)
        heard.append({**event["data"], "namespace": event["namespace"]})

    listener = await nc.subscribe("memory.pattern.learned.*", cb=on_pattern)
    async with (
        running(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha", agent_id="a1") as alpha,
        MemoryClient(settings=settings, namespace="beta", agent_id="b1") as beta,
    ):
        await _store_alpha(alpha)
        await _store_beta(beta)
        await settle(engine)

        # Heard: the patterns announced, each version once, by a plain subscriber.
        await nc.flush()
        versions = Counter((p["pattern_id"], p["version"]) for p in heard)
        assert versions and max(versions.values()) == 1
        alpha_heard = [p for p in heard if p["namespace"] == "alpha"]
        assert any(p["pattern"].get("workflow_steps") == BEST for p in alpha_heard), alpha_heard

        # Asked what worked: the best workflow, patterns and metrics, per namespace.
        best = await alpha.get_best_workflow_for_task("deployment")
        assert best is not None
        assert (best.workflow_steps, best.namespace, best.executions) == (BEST, "alpha", 4)
        beta_best = await beta.get_best_workflow_for_task("deployment")
        assert beta_best is not None and beta_best.workflow_steps == BETA_STEPS
        fastest = await alpha.get_best_workflow_for_task("deployment", "duration")
        assert fastest is not None and fastest.workflow_steps == BEST  # WORSE is unreliable

        patterns = await alpha.retrieve_workflow_patterns("deployment", min_success_rate=0.0)
        assert [p.workflow_steps for p in patterns] == [BEST, WORSE]  # by success rate
        assert [p.success_rate for p in patterns] == [1.0, pytest.approx(1 / 3)]
        assert {p.namespace for p in patterns} == {"alpha"}
        assert await alpha.retrieve_workflow_patterns("deployment") == patterns[:1]

        metrics = await alpha.get_task_success_metrics("deployment")
        assert metrics is not None
        assert (metrics.total_executions, metrics.successful_executions) == (7, 5)
        assert await alpha.get_task_success_metrics("testing") is None

        learning = await alpha.get_learning_metrics()
        assert learning.total_workflows_executed == 7
        assert learning.learned_task_types == ["deployment"]
        assert (await beta.get_learning_metrics()).total_workflows_executed == 3

        listed = await alpha.list_patterns()
        assert listed and {p.namespace for p in listed} == {"alpha"}
        searched = await beta.search_patterns("deployment", "workflow")
        assert [p.workflow_steps for p in searched] == [BETA_STEPS]

        # Similar memories: the own namespace only, even for the other's exact words.
        hits = await alpha.search_similar(ALPHA_TEXT, top_k=5)
        assert hits[0].text == ALPHA_TEXT and hits[0].similarity_score > 0.9
        assert {h.namespace for h in hits} == {"alpha"}
        leaked = await alpha.search_similar(BETA_TEXT, top_k=10)
        assert BETA_TEXT not in {h.text for h in leaked}
        assert {h.namespace for h in leaked} <= {"alpha"}
        only_good = await alpha.search_similar("billing service", top_k=10, success_only=True)
        assert only_good and all(h.success is not False for h in only_good)

        # Task context in sentences, and its use recorded in the log.
        context = await alpha.get_task_context(
            "deploy the billing service with rotated postgres credentials"
        )
        assert context.task_type == "deployment"
        assert context.best_workflow is not None
        assert context.best_workflow.workflow_steps == BEST
        assert context.similar_tasks and context.similar_tasks[0].text == ALPHA_TEXT
        assert context.recommendations and all(
            isinstance(r, str) and r.endswith(".") for r in context.recommendations
        )
        assert all(t.namespace == "alpha" for t in context.similar_tasks)

        # Context within a budget: labelled tiers and sources, never over, never beta's.
        for budget in (40, 120, 2_000):
            assembled = await alpha.assemble_context(ALPHA_TEXT, max_tokens=budget)
            assert assembled.total_tokens <= budget
            assert assembled.total_tokens == sum(c.tokens for c in assembled.chunks)
            assert assembled.chunks
            assert {c.tier for c in assembled.chunks} <= {"operational", "working", "longterm"}
            assert all(BETA_TEXT not in c.text for c in assembled.chunks)
        tiers = {c.tier for c in assembled.chunks}
        assert tiers == {"operational", "working", "longterm"}, assembled.chunks
        knowledge = [c for c in assembled.chunks if "create the new role" in c.text]
        assert knowledge and knowledge[0].tier == "longterm"
        working = await alpha.assemble_context(ALPHA_TEXT, 2_000, tiers=("working",))
        assert {c.tier for c in working.chunks} == {"working"}

        # The documented subjects answer any NATS client the same, errors named.
        raw = await _ask_raw(nc, "best_workflow", {"task_type": "deployment", "namespace": "alpha"})
        assert raw["workflow"]["workflow_steps"] == BEST
        refused = await _ask_raw(nc, "assemble_context", {"max_tokens": 100})
        assert "task_description" in refused["error"] and refused["kind"]
        with pytest.raises(EngramError, match="max_tokens"):
            await alpha.assemble_context("anything", max_tokens=-1)
        await settle(engine)

    await listener.unsubscribe()
    usage: Counter[str] = Counter()
    async for stored in event_log.read(ReadRange()):
        event = json.loads(stored.data)
        usage[event["type"]] += event.get("namespace") == "alpha"
    assert usage["context.suggested"] >= 1
    assert usage["memory.recalled"] >= 1
    # Every announcement heard live is in the log, and no other: the log is the only truth.
    logged = Counter()
    async for stored in event_log.read(ReadRange(subject="memory.pattern.learned.*")):
        data = json.loads(stored.data)["data"]
        logged[(data["pattern_id"], data["version"])] += 1
    assert logged == Counter((p["pattern_id"], p["version"]) for p in heard)
