"""The workload of bench_queries: realistic task summaries over the nine task types and
workflows whose candidate step sequences have hidden success rates (deterministic per seed)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.events import Event, TaskExecuted, WorkflowExecuted, make_event

__all__ = [
    "NAMESPACE",
    "QUERY_TEXTS",
    "TASK_TYPES",
    "Candidate",
    "candidates",
    "generate",
    "summary",
]

NAMESPACE = "bench"

# Per task type: actions, objects, details (success), failure reasons, error patterns.
CORPUS: dict[str, tuple[tuple[str, ...], ...]] = {
    "code_generation": (
        ("Implemented", "Generated", "Scaffolded", "Wrote", "Added"),
        ("a CSV export endpoint", "the pagination helper", "a retry decorator",
         "the OAuth callback handler", "a typed config loader", "the webhook dispatcher",
         "a rate limiter middleware", "the invoice PDF renderer"),
        ("with type hints and docstrings", "behind a feature flag", "reusing the shared client",
         "following the repository conventions", "with input validation"),
        ("the generated code did not compile", "an import cycle appeared",
         "the schema it relied on had changed", "the linter rejected the module"),
        ("ImportError", "SyntaxError", "mypy: incompatible types", "circular import"),
    ),
    "data_analysis": (
        ("Analysed", "Summarised", "Aggregated", "Explored", "Charted"),
        ("last week's churn dataset", "the checkout funnel events", "regional sales figures",
         "support ticket volumes", "the A/B test results", "API latency percentiles",
         "monthly active users", "the cohort retention table"),
        ("and reported the trend", "grouped by region", "with a confidence interval",
         "and flagged two anomalies", "into a dashboard-ready table"),
        ("the source table had null timestamps", "the query ran out of memory",
         "two columns had inconsistent units", "the export was truncated"),
        ("MemoryError", "KeyError: 'region'", "timeout reading parquet", "division by zero"),
    ),
    "testing": (
        ("Wrote unit tests for", "Added integration tests for", "Raised coverage of",
         "Stabilised the flaky tests of", "Added property-based tests for"),
        ("the tokenizer", "the payment client", "the session store", "the CSV parser",
         "the search ranking", "the retry policy", "the auth middleware", "the report builder"),
        ("to 92% line coverage", "with pytest fixtures", "including edge cases",
         "and mocked the network", "running in under a minute"),
        ("the fixture database was not reachable", "a test depended on wall-clock time",
         "the mock drifted from the real API", "the suite timed out in CI"),
        ("AssertionError", "fixture 'db' not found", "pytest timeout", "flaky: passed on rerun"),
    ),
    "deployment": (
        ("Deployed", "Rolled out", "Released", "Promoted", "Shipped"),
        ("the payment service", "the search API", "the notification worker",
         "the analytics pipeline", "the web frontend", "the auth gateway",
         "the billing cron jobs", "the image resizer"),
        ("to staging with a canary", "to production behind a flag", "with zero downtime",
         "after the smoke tests passed", "via the helm chart"),
        ("the readiness probe failed", "the migration locked the orders table",
         "the canary error rate spiked", "the image pull was rate limited"),
        ("CrashLoopBackOff", "ImagePullBackOff", "migration lock timeout", "readiness probe 503"),
    ),
    "debugging": (
        ("Fixed", "Traced", "Investigated", "Patched", "Diagnosed"),
        ("a memory leak in the resizing worker", "the failing login test",
         "a race in the session cache", "the crash on empty uploads",
         "an off-by-one in pagination", "a deadlock in the job queue",
         "the wrong currency rounding", "a null pointer in the report export"),
        ("and added a regression test", "by bisecting the commit range",
         "after reproducing it under load", "with a one-line guard", "and documented the cause"),
        ("the bug did not reproduce locally", "the stack trace pointed into a vendored library",
         "logs from the incident had expired", "the fix broke another test"),
        ("NullPointerException", "segmentation fault", "deadlock detected", "TimeoutError"),
    ),
    "system_design": (
        ("Designed", "Proposed", "Sketched", "Reviewed", "Specified"),
        ("the storage layer for the event pipeline", "a sharding scheme for orders",
         "the caching strategy for search", "the multi-region failover",
         "an outbox for webhooks", "the rate limiting architecture",
         "the permissions model", "the data retention policy"),
        ("with a written trade-off analysis", "and got sign-off from the team",
         "with capacity estimates", "including a migration plan", "as an ADR"),
        ("the requirements kept changing", "the load estimates were missing",
         "the review found a single point of failure", "the cost exceeded the budget"),
        ("unresolved review comments", "missing capacity numbers", "SPOF in design",
         "budget exceeded"),
    ),
    "documentation": (
        ("Documented", "Rewrote the docs of", "Wrote a guide for", "Updated the README of",
         "Added examples to"),
        ("the public query API", "the deployment runbook", "the SDK quickstart",
         "the configuration options", "the event schema", "the on-call playbook",
         "the CLI commands", "the migration steps"),
        ("with runnable examples", "and fixed broken links", "for new contributors",
         "with diagrams", "and a troubleshooting section"),
        ("the API changed during the review", "the examples failed to run",
         "the docs build broke on a bad link", "nobody could confirm the behaviour"),
        ("broken link", "docs build failed", "example raised an exception", "outdated screenshot"),
    ),
    "optimization": (
        ("Optimised", "Sped up", "Reduced the latency of", "Cut the memory use of", "Profiled"),
        ("the slow orders query", "the search endpoint", "the nightly batch job",
         "the image thumbnailer", "the JSON serializer", "the report generator",
         "the cache warm-up", "the startup path"),
        ("by adding a composite index", "by batching the writes", "by caching the hot keys",
         "from 2.3 s to 180 ms", "by removing an N+1 query"),
        ("the benchmark was too noisy to tell", "the index made writes slower",
         "the cache returned stale data", "the profile pointed at the database driver"),
        ("regression in p99", "stale cache read", "lock contention", "out of memory"),
    ),
    "general": (
        ("Summarised", "Organised", "Triaged", "Answered", "Planned"),
        ("the meeting notes for the team", "the incoming support requests",
         "the backlog for next sprint", "a question about the roadmap",
         "the onboarding checklist", "the vendor comparison",
         "the weekly status update", "the retro action items"),
        ("and shared them in the channel", "with owners and dates", "in five bullet points",
         "for the product manager", "and filed follow-up tickets"),
        ("the request was ambiguous", "the needed context was missing",
         "the stakeholders disagreed", "the source document was unavailable"),
        ("missing context", "ambiguous request", "permission denied", "no owner"),
    ),
}  # fmt: skip
TASK_TYPES = tuple(CORPUS)
STEP_POOL = (
    "plan", "search_code", "read_files", "write_patch", "run_tests", "lint", "review",
    "summarise", "fetch_docs", "query_db", "deploy", "rollback", "notify", "profile",
    "benchmark", "write_docs", "ask_human", "reproduce", "bisect", "draft_design",
)  # fmt: skip
HIDDEN_RATES = (0.92, 0.8, 0.62, 0.4)
QUERY_TEXTS = (
    "fix the memory leak in the image resizing worker",
    "deploy the search API to production with a canary",
    "write unit tests for the CSV parser with edge cases",
    "speed up the slow orders query with an index",
    "analyse the churn dataset by region",
    "design a sharding scheme for the orders table",
    "document the SDK quickstart with examples",
    "implement a retry decorator for the payment client",
    "summarise the meeting notes and file follow-up tickets",
    "investigate the deadlock in the job queue",
    "the canary error rate spiked after the release",
    "flaky integration test of the session store timed out in CI",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    task_type: str
    steps: tuple[str, ...]
    rate: float
    duration: float
    cost: float


def candidates(seed: int) -> dict[str, list[Candidate]]:
    """Four step sequences per task type, each with a hidden success rate, duration and cost."""
    rng = random.Random(seed * 7 + 1)
    found: dict[str, list[Candidate]] = {}
    for task_type in TASK_TYPES:
        rates = list(HIDDEN_RATES)
        rng.shuffle(rates)
        found[task_type] = [
            Candidate(
                task_type,
                ("plan", *rng.sample(STEP_POOL[1:], rng.randint(2, 5))),
                rate,
                rng.uniform(10, 240),
                round(rng.uniform(0.01, 0.5), 4),
            )
            for rate in rates
        ]
    return found


def summary(rng: random.Random, task_type: str, success: bool) -> tuple[str, list[str]]:
    actions, objects, details, reasons, errors = CORPUS[task_type]
    action, obj = rng.choice(actions), rng.choice(objects)
    ticket = f"{rng.choice(('ENG', 'OPS', 'DATA', 'WEB'))}-{rng.randint(100, 9999)}"
    if success:
        text = f"{action} {obj} {rng.choice(details)} ({ticket}, {rng.randint(1, 40)} files)."
        return text, []
    text = f"{action} {obj} failed: {rng.choice(reasons)}; see {ticket}."
    return text, [rng.choice(errors)]


def generate(
    memories: int, workflows: int, seed: int, *, batch: str = "history"
) -> Iterator[Event]:
    """``memories`` task.executed and ``workflows`` workflow.executed events, interleaved.

    ``batch="history"`` spreads them over the last 30 days; any other name (e.g. ``"live"``)
    gives other events, ids and summaries over the last minute, from the same candidates.
    """
    history = batch == "history"
    rng = random.Random(seed if history else f"{seed}-{batch}")
    kinds = [True] * workflows + [False] * memories
    rng.shuffle(kinds)
    by_type = candidates(seed)
    span = timedelta(days=30) if history else timedelta(minutes=1)
    clock = datetime.now(UTC) - span
    step = span / max(1, len(kinds))
    for count, is_workflow in enumerate(kinds):
        clock += step
        task_type = rng.choice(TASK_TYPES)
        data: TaskExecuted | WorkflowExecuted
        if is_workflow:
            c = rng.choice(by_type[task_type])
            data = WorkflowExecuted(
                task_type=task_type,
                request=summary(rng, task_type, True)[0],
                workflow_steps=list(c.steps),
                success=rng.random() < c.rate,
                duration=round(max(0.5, rng.gauss(c.duration, c.duration / 5)), 3),
                cost=round(c.cost * rng.uniform(0.8, 1.2), 4),
            )
        else:
            success = rng.random() < 0.75
            text, errors = summary(rng, task_type, success)
            data = TaskExecuted(
                task_id=f"task-{batch}-{count:07d}",
                execution_summary=text,
                success=success,
                # Most agents say the type; the rest are classified from the summary.
                task_type=task_type if rng.random() < 0.9 else None,
                error_patterns=errors,
                metadata={"files": rng.randint(1, 40)},
            )
        yield make_event(
            data,
            namespace=NAMESPACE,
            agent_id=rng.choice(("planner", "coder", "reviewer", "tester", "deployer")),
            occurred_at=clock,
            event_id=f"bq-{seed}-{batch}-{count:09d}",
        )
