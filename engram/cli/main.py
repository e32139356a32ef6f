"""``engram``: the command line. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or input."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine import __version__
from engine.errors import EngramError
from engine.events import EVENT_TYPES
from engine.logconfig import configure_logging
from engine.settings import Settings
from engram.cli._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    add_connection_flags,
    add_global_flags,
    add_output_flags,
    exit_code_for,
    settings_from_args,
)

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int] | int]


def _verb(
    sub: Any, name: str, help_text: str, *, nats: bool = True, output: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    add_global_flags(parser)
    if nats:
        add_connection_flags(parser)
    if output:
        add_output_flags(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from engram.cli import (
        auth_verbs,
        backup_verbs,
        catalogue_verbs,
        deadletter_verbs,
        demo,
        http_verbs,
        log_verbs,
        mcp_verbs,
        purge_verbs,
        rebuild_verbs,
        serve,
        stream_verbs,
    )

    parser = argparse.ArgumentParser(
        prog="engram", description="engram: an event-sourced memory engine for AI agents"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"engram {__version__} (distribution engram-jetstream, wire contract v2)",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = _verb(
        sub, "serve", "run the engine (starts an embedded nats-server if needed)", output=False
    )
    stream_verbs.add_downgrade_flag(p)
    serve.add_operator_flags(p)
    http_verbs.add_serve_http_flags(p)
    p.set_defaults(handler=serve.cmd_serve)

    stream_verbs.add_stream_verbs(sub, _verb)
    auth_verbs.add_auth_verb(sub, _verb)
    http_verbs.add_http_verb(sub, _verb)

    p = _verb(sub, "publish", "validate and append one event")
    p.add_argument("type", choices=sorted(EVENT_TYPES), metavar="TYPE", help="event type")
    p.add_argument("--data", required=True, help="the event's data object, as JSON")
    p.add_argument("--namespace", default="default")
    p.add_argument("--agent-id", dest="agent_id")
    p.add_argument("--session-id", dest="session_id")
    p.add_argument("--id", help="event id (default: a new UUIDv7); reuse it to retry safely")
    p.set_defaults(handler=log_verbs.cmd_publish)

    p = _verb(sub, "ingest", "append every event of a JSON-lines file")
    p.add_argument("file", help="one event envelope per line")
    p.set_defaults(handler=log_verbs.cmd_ingest)

    p = _verb(sub, "tail", "print events in stream order")
    p.add_argument("--from-seq", type=int, dest="from_seq", help="first sequence to print")
    p.add_argument("--type", help="only this event type (e.g. workflow.executed)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.set_defaults(handler=log_verbs.cmd_tail)

    # status, metrics, sql, export, search, patterns, context ...: one per catalogued verb.
    catalogue_verbs.add_query_verbs(sub, _verb)

    p = _verb(sub, "replay", "rebuild every projection into a new data directory")
    p.add_argument(
        "--source-data-dir",
        default="engram-data",
        help="data directory whose embedded server holds the stream "
        "(ignored with --nats-url; default ./engram-data)",
    )
    p.add_argument("--from-seq", type=int, dest="from_seq")
    until = p.add_mutually_exclusive_group()
    until.add_argument("--until", help="stop after the last event stored at or before TIME")
    until.add_argument("--until-seq", type=int, dest="until_seq")
    p.add_argument("--batch-size", type=int, default=5_000)
    p.add_argument("--resume", action="store_true", help="continue into an existing directory")
    p.add_argument(
        "--from-snapshot",
        nargs="?",
        const="latest",
        dest="from_snapshot",
        help="start from a snapshot (ID, or the newest valid one) and replay the tail",
    )
    p.add_argument(
        "--snapshots-dir",
        dest="snapshots_dir",
        help="snapshots in a directory instead of the stream's Object Store bucket",
    )
    serve.add_namespaces_flag(p, "rebuild only these tenants (from their set's snapshot)")
    p.set_defaults(handler=rebuild_verbs.cmd_replay)

    p = _verb(sub, "snapshot", "snapshot every projection at one sequence (verifiable)")
    p.add_argument("--to", help="a directory instead of the stream's Object Store bucket")
    p.add_argument("--at-seq", type=int, dest="at_seq", help="default: the last sequence")
    serve.add_namespaces_flag(p, "snapshot only these tenants (an engine owning them restores it)")
    p.set_defaults(handler=rebuild_verbs.cmd_snapshot)

    p = _verb(sub, "compact", "purge stream history a verified snapshot covers (opt-in)")
    p.add_argument(
        "--older-than",
        type=float,
        required=True,
        dest="older_than",
        help="only events stored more than this many seconds ago",
    )
    p.add_argument("--dry-run", action="store_true", dest="dry_run")
    p.add_argument("--snapshots-dir", dest="snapshots_dir")
    p.set_defaults(handler=rebuild_verbs.cmd_compact)

    purge_verbs.add_purge_verb(sub, _verb)
    backup_verbs.add_backup_verbs(sub, _verb)
    mcp_verbs.add_mcp_verb(sub, _verb)

    p = _verb(sub, "reindex", "build the vector index with another embedder, then switch")
    p.add_argument(
        "--embedder",
        required=True,
        help="hashing, minilm-onnx, minilm-numpy or minilm (see README, Embeddings)",
    )
    p.set_defaults(handler=rebuild_verbs.cmd_reindex)

    p = _verb(sub, "dead-letters", "every projection's dead letters, each once (operators)")
    p.add_argument("--projection", help="only those this projection refused (e.g. vectors)")
    p.add_argument("--kind", help="only this kind (e.g. invalid_json, dimension_mismatch)")
    p.add_argument("--limit", type=int, default=1_000, help="at most this many, the newest")
    p.set_defaults(handler=deadletter_verbs.cmd_dead_letters)

    p = _verb(sub, "schema", "JSON Schema of the event types", nats=False)
    p.add_argument("type", nargs="?", help="one event type (default: all)")
    p.add_argument(
        "--asyncapi",
        action="store_true",
        help="the whole event and query API as an AsyncAPI 3.0 document",
    )
    p.set_defaults(handler=log_verbs.cmd_schema)

    p = _verb(sub, "demo", "simulated agents publishing to engram (the main job)")
    p.add_argument("--tasks", type=int, default=400, help="tasks per orchestrator")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(handler=demo.cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except EngramError as exc:
        print(f"engram: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Long-running verbs narrate at info; one-shot verbs only speak up when something is wrong.
    long_running = args.verb == "serve" or (args.verb == "http" and args.http_verb is None)
    quiet = not long_running and getattr(args, "log_level", None) is None
    configure_logging(json=settings.log_json, level="warning" if quiet else settings.log_level)
    handler: Handler = args.handler
    try:
        outcome = handler(args, settings)
        if not isinstance(outcome, int):
            outcome = asyncio.run(_awaited(outcome))
        return outcome
    except EngramError as exc:
        print(f"engram: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE


async def _awaited(outcome: Awaitable[int]) -> int:
    return await outcome


if __name__ == "__main__":
    sys.exit(main())
