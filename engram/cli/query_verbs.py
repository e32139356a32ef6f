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
from engine.endpoint import open_nats
from engine.errors import EngramError, StoreLockedError
from engine.events.envelope import check_namespace
from engine.settings import Settings
from engine.verbs import verb as catalogued
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
    owning every namespace, or with ``--namespace`` of the one owning that namespace)."""
    from engine.errors import EngineUnavailableError
    from engine.query_client import query_remote

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
    if args.json:
        emit_json(status)
    else:
        for key, value in status.items():
            if key != "projections":
                print(f"{key:>16}: {value}")
        for name, info in status["projections"].items():
            lag = f"lag {info['lag']}"
            if info.get("duplicates"):  # repeated envelope ids it ignored
                lag += f", {info['duplicates']} duplicates"
            print(f"{'projection':>16}: {name} at {info['checkpoint']} ({lag})")
    return EXIT_OK
