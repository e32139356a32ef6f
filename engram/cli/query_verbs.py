"""Asking a query verb, and how the table verbs' replies print: metrics, sql, export, status.
Asked of the running engine over NATS, or read straight from ``--data-dir`` when no engine holds
it (e.g. a replayed directory). The sub-commands come from the catalogue (catalogue_verbs).

Over NATS a verb is asked on a tenant's subject, ``engram.query.<namespace>.<verb>``, when a
namespace is named (``--namespace``) or the verb is about one (``default`` unless named), else on
the operator's ``engram.query.<verb>``, answered by an engine owning every namespace
(``query_subject``)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.connection import redact_url
from engine.endpoint import NatsEndpoint, open_nats
from engine.errors import EngramError, StoreLockedError
from engine.events.envelope import check_namespace
from engine.settings import Settings
from engine.verbs import verb as catalogued
from engine.verbs.replies import StreamDurability
from engram.cli._common import EXIT_OK, emit_json
from engram.cli.log_verbs import stream_status

__all__ = [
    "ask",
    "cmd_status",
    "print_export",
    "print_metrics",
    "print_sql",
    "print_table",
    "print_workflows",
    "query_subject",
]


def query_subject(
    settings: Settings, verb: str, payload: dict[str, Any], namespace: str | None = None
) -> str:
    """The subject ``verb`` is asked on: the tenant's of ``namespace`` (else of the request's
    ``namespace``; else ``default`` for a verb about one tenant), or the operator's. Raises
    UsageError for a namespace that is not one subject token, naming the pattern."""
    spec = catalogued(verb)
    asked = namespace if namespace is not None else payload.get("namespace")
    if asked is None and spec.scope == "tenant":
        asked = "default"
    return spec.subject(
        None if asked is None else check_namespace(str(asked)), settings.stream.service
    )


async def ask(
    settings: Settings,
    verb: str,
    payload: dict[str, Any],
    remote_payload: dict[str, Any] | None = None,
    *,
    namespace: str | None = None,
) -> dict[str, Any]:
    """The data directory's database when it exists and is free, else the engine over NATS
    (on ``query_subject``: ``namespace`` names the tenant whose engine answers an operator
    verb).

    A NATS URL alone does not mean "ask the engine": ``--data-dir`` of a replayed or
    point-in-time directory must answer from that directory, not from whichever engine serves
    the URL (e.g. with ``ENGRAM_NATS_URL`` set). Only a locked database is the engine's to answer.
    The engine is sent ``remote_payload`` when given (e.g. a path meant for its host).
    """
    from engine.query_client import query_remote
    from engram.local_queries import query_local
    from projections.tables import DATABASE_FILE

    remote = payload if remote_payload is None else remote_payload
    subject = query_subject(settings, verb, remote, namespace)  # a bad namespace: before all
    if not settings.nats.url or (settings.data_dir / DATABASE_FILE).exists():
        try:
            return await query_local(settings.data_dir, verb, payload)
        except StoreLockedError:
            pass  # the engine holds it: ask the engine
    async with open_nats(settings) as endpoint:
        return await query_remote(
            endpoint.nc,
            verb,
            remote,
            settings.nats.request_timeout_s,
            subject=subject,
        )


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(no rows)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row_cells in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row_cells, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def print_metrics(reply: dict[str, Any], _request: Any) -> None:
    """engram metrics: TaskMetrics per task type."""
    print_table(
        reply["metrics"],
        [
            "namespace",
            "task_type",
            "total_executions",
            "successful_executions",
            "success_rate",
            "avg_duration",
            "avg_cost",
        ],
    )


def print_workflows(reply: dict[str, Any], _request: Any) -> None:
    """engram metrics --workflows: metrics per workflow within task types."""
    print_table(
        reply["workflows"],
        [
            "namespace",
            "task_type",
            "workflow_steps",
            "executions",
            "success_rate",
            "avg_duration",
            "avg_cost",
        ],
    )


def print_sql(reply: dict[str, Any], _request: Any) -> None:
    """engram sql "SELECT ...": SQL over copies of the tables, for operators.

    It runs in a sandbox that changes nothing and reaches no file or network; over NATS only
    when the engine allows it (``serve --enable-sql``), always with ``--data-dir``."""
    print_table(reply["rows"], reply["columns"])
    if reply.get("truncated"):  # by --limit, by sql's memory bound, or to fit one message
        note = f"; {reply['note']}" if reply.get("note") else ""
        print(f"(truncated at {len(reply['rows'])} rows{note})")


def print_export(manifest: dict[str, Any], _request: Any) -> None:
    """engram export --to DIR: every table as Parquet at one sequence.

    Read from ``--data-dir``, DIR is a path here. Asked of a running engine, DIR is as given:
    a name under the engine's ``<data dir>/exports`` (the only place it writes for a client).
    """
    print(f"exported at sequence {manifest['sequence']} to {manifest['location']}:")
    for name, info in manifest["tables"].items():
        print(f"  {name:>16}: {info['rows']} rows")


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """engram status: the stream, and per projection its checkpoint and lag (of the engine
    owning every namespace, or with ``--namespace`` of the one owning that namespace); the
    stream's durability; and the readiness verdict ``/readyz`` gives (one function, from the
    engine's status reply: not ready when no engine answers)."""
    from engine.errors import EngineUnavailableError
    from engine.query_client import query_remote
    from engine.verbs.replies import StatusReply
    from engram.observability.readiness import readiness

    namespace: str | None = getattr(args, "namespace", None)
    subject = query_subject(settings, "status", {}, namespace)
    async with open_nats(settings) as endpoint:
        status: dict[str, Any] = {"nats_url": redact_url(endpoint.url), "server": endpoint.source}
        stream = await stream_status(settings, endpoint.nc)
        status.update(stream)
        try:
            engine = await query_remote(
                endpoint.nc,
                "status",
                {},
                timeout_s=2.0,
                subject=subject,
            )
            status["engine"] = "running"
            status["projections"] = engine["projections"]
            reply = StatusReply.model_validate(engine)
            if reply.cache is not None:
                status["cache"] = reply.cache.model_dump(mode="json")
            verdict = readiness(reply, max_lag=settings.ready_max_lag)
            durability = reply.durability or await _durability(settings, endpoint)
        except EngineUnavailableError:
            status["engine"] = "stopped"
            try:
                checkpoints = (await ask(settings, "checkpoints", {}, namespace=namespace))[
                    "checkpoints"
                ]
            except EngramError:  # no database yet: nothing projected
                checkpoints = {}
            status["projections"] = {
                name: {
                    "checkpoint": seq,
                    "last_sequence": stream["last_sequence"],
                    "lag": max(0, stream["last_sequence"] - seq),
                }
                for name, seq in checkpoints.items()
            }
            verdict = readiness(None, problem=f"no engine answers on {subject}")
            durability = await _durability(settings, endpoint)
        status["durability"] = durability.model_dump()
        status.update(verdict.as_json())
    if args.json:
        emit_json(status)
    else:
        _print_status(status)
    return EXIT_OK


async def _durability(settings: Settings, endpoint: NatsEndpoint) -> StreamDurability:
    """The stream's durability as this command sees it (the embedded server's sync interval
    when this data directory's server is the one connected to, else unknown)."""
    from engram.observability.durability import server_sync_interval, stream_durability

    info = await endpoint.nc.jetstream().stream_info(settings.stream.name)
    sync = server_sync_interval(settings.server_dir, endpoint.url)
    return stream_durability(info.config, sync, info.state.messages)


_SECTIONS = ("projections", "cache", "durability", "ready", "reasons")


def _print_cache(cache: dict[str, Any]) -> None:
    """The semantic cache: what the log decided, then what this engine counted."""
    print(
        f"{'cache':>16}: {cache['entries']} entries, {cache['puts']} puts, "
        f"{cache['evictions']} evictions ({cache['expired']} expired, {cache['removed']} "
        "removed): from the log"
    )
    rate = "" if cache.get("hit_rate") is None else f" (hit rate {cache['hit_rate']:.1%})"
    print(
        f"{'':>16}  {cache['lookups']} lookups, {cache['hits']} hits{rate}: counted by this "
        f"engine since {cache['counting_since']} (lookups are queries, not events: a restart "
        "or another engine counts afresh)"
    )


def _print_status(status: dict[str, Any]) -> None:
    for key, value in status.items():
        if key not in _SECTIONS:
            print(f"{key:>16}: {value}")
    for name, info in status["projections"].items():
        lag = f"lag {info['lag']}"
        if info.get("duplicates"):  # repeated envelope ids it ignored
            lag += f", {info['duplicates']} duplicates"
        if info.get("degraded"):
            lag += f", degraded: {info.get('reason')}"
        print(f"{'projection':>16}: {name} at {info['checkpoint']} ({lag})")
    if status.get("cache"):
        _print_cache(status["cache"])
    durability = status["durability"]
    limits = ", ".join(
        f"{name} {_limit(durability[key], unit)}"
        for name, key, unit in (
            ("max_age", "max_age_s", "s"),
            ("max_bytes", "max_bytes", ""),
            ("max_msg_size", "max_msg_size", ""),
        )
    )
    copies, storage = durability["replicas"], durability["storage"]
    print(f"{'durability':>16}: {copies} replica(s), {storage} storage")
    print(f"{'':>16}  {limits}, duplicate window {durability['duplicate_window_s']:g}s")
    print(f"{'sync_interval':>16}: {durability['sync_interval']}")
    if durability.get("persist_mode"):
        print(f"{'persist_mode':>16}: {durability['persist_mode']}")
    if durability.get("warning"):
        print(f"{'warning':>16}: {durability['warning']}")
    print(f"{'ready':>16}: {'yes' if status['ready'] else 'no'}")
    for reason in status["reasons"]:
        print(f"{'':>16}  - {reason}")


def _limit(value: float, unit: str) -> str:
    """A stream limit as printed: 0 / -1 mean none."""
    return "none" if value <= 0 else f"{value:g}{unit}"
