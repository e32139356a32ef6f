"""``engram http``: the HTTP API as a process of its own, and its API keys.

- ``engram http [--listen 127.0.0.1:8080] [--keys PATH] [--max-body-bytes N]``: serve;
- ``engram http keys add NAME --namespace NS [--namespace NS2 ...] [--operator]``: make a key
  (printed once; the file keeps its SHA-256 only);
- ``engram http keys list`` / ``engram http keys revoke NAME``.

``--keys`` defaults to ``<data dir>/http-keys.json``. ``engram serve --http ADDR [--http-keys
PATH]`` runs the same gateway beside the engine (``http_beside``). The HTTP packages are the
``http`` extra: imported only when one of these runs.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigurationError
from engine.settings import Settings
from engram.cli._common import EXIT_OK, emit_json

__all__ = ["add_http_verb", "add_serve_http_flags", "http_beside"]

KEYS_FILE = "http-keys.json"
DEFAULT_LISTEN = "127.0.0.1:8080"


def _keys_path(args: argparse.Namespace, settings: Settings, name: str = "keys_path") -> Path:
    given = getattr(args, name, None)
    return Path(given) if given else settings.data_dir / KEYS_FILE


def _keys_flag(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument(
        "--keys",
        dest="keys_path",
        default=default,
        metavar="PATH",
        help=f"the API keys file (default: <data dir>/{KEYS_FILE})",
    )


def add_http_verb(sub: Any, verb: Any) -> None:
    """``engram http`` and ``engram http keys add|list|revoke``."""
    p: argparse.ArgumentParser = verb(
        sub, "http", "serve the HTTP API (a gateway to the engines over NATS)"
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; port 0: any free port)",
    )
    _keys_flag(p)
    _limit_flag(p, "--max-body-bytes")
    p.add_argument("--no-mcp", action="store_true", help="do not serve MCP at /mcp")
    p.set_defaults(handler=cmd_http)
    http_sub = p.add_subparsers(dest="http_verb", metavar="keys")
    keys = http_sub.add_parser("keys", help="make, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_verb", required=True, metavar="add|list|revoke")

    add = keys_sub.add_parser("add", help="make a key (printed once: only its hash is kept)")
    add.add_argument("name", help="who the key is for (letters, digits, '.', '_', '-')")
    add.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        default=[],
        metavar="NS",
        help="a namespace the key may read and write (repeat for several)",
    )
    add.add_argument(
        "--operator",
        action="store_true",
        help="may call operator verbs (status, checkpoints, sql, export; metrics over every "
        "namespace)",
    )
    listing = keys_sub.add_parser("list", help="every key: name, id, namespaces, operator")
    revoke = keys_sub.add_parser("revoke", help="remove a key (the gateway refuses it at once)")
    revoke.add_argument("name")
    for parser, handler in (
        (add, cmd_keys_add),
        (listing, cmd_keys_list),
        (revoke, cmd_keys_revoke),
    ):
        _keys_flag(parser, argparse.SUPPRESS)
        parser.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
        )
        parser.set_defaults(handler=handler)


def _limit_flag(parser: argparse._ActionsContainer, flag: str) -> None:
    from_default = 1_048_576
    parser.add_argument(
        flag,
        type=int,
        default=from_default,
        dest="max_body_bytes",
        metavar="N",
        help=f"refuse request bodies larger than N bytes (413; default {from_default:,})",
    )


def add_serve_http_flags(parser: argparse.ArgumentParser) -> None:
    """``engram serve --http HOST:PORT [--http-keys PATH]``."""
    group = parser.add_argument_group("HTTP API (the http extra)")
    group.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="also serve the HTTP API here, in this process (talking to the engine over NATS)",
    )
    group.add_argument(
        "--http-keys",
        dest="http_keys",
        metavar="PATH",
        help=f"its API keys file (default: <data dir>/{KEYS_FILE})",
    )
    _limit_flag(group, "--http-max-body-bytes")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def cmd_http(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM; ConfigurationError (exit 2) for unusable keys or address."""
    from engram.http.server import prepare_gateway, run_prepared

    if args.max_body_bytes < 1:
        raise ConfigurationError("--max-body-bytes must be at least 1")
    prepared = prepare_gateway(
        settings,
        args.listen,
        _keys_path(args, settings),
        max_body_bytes=args.max_body_bytes,
        with_mcp=not args.no_mcp,
    )
    await run_prepared(prepared, _stop_on_signals())
    return EXIT_OK


def http_beside(
    args: argparse.Namespace, settings: Settings, nats_url: str, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """For ``engram serve --http``: the gateway as a task beside the engine, on the engine's
    NATS server (its keys read and its address bound now: ConfigurationError before the engine
    starts). When it fails, ``stop`` is set (the engine stops too) and awaiting the task
    raises the failure. None without ``--http``."""
    listen = getattr(args, "http", None)
    if not listen:
        return None
    from engram.http.server import prepare_gateway, run_prepared

    nats = settings.nats.model_copy(update={"url": nats_url})
    prepared = prepare_gateway(
        settings.model_copy(update={"nats": nats}),
        listen,
        _keys_path(args, settings, "http_keys"),
        max_body_bytes=args.max_body_bytes,
    )
    task = asyncio.create_task(run_prepared(prepared, stop), name="http-gateway")

    def stop_engine(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            stop.set()

    task.add_done_callback(stop_engine)
    return task


def cmd_keys_add(args: argparse.Namespace, settings: Settings) -> int:
    from engram.http.keys import KeyFile

    path = _keys_path(args, settings)
    record, token = KeyFile(path).add(args.name, args.namespaces, operator=args.operator)
    if getattr(args, "json", False):
        emit_json(
            {
                "name": record.name,
                "id": record.key_id,
                "key": token,
                "namespaces": list(record.namespaces),
                "operator": record.operator,
                "keys_file": str(path),
            }
        )
    else:
        sys.stdout.write(token + "\n")
    print(
        f"engram: key {record.name!r} ({', '.join(record.namespaces) or 'no namespace'}"
        f"{', operator' if record.operator else ''}) added to {path}; it is shown only now",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    from engram.http.keys import KeyFile

    records = KeyFile(_keys_path(args, settings)).records()
    if getattr(args, "json", False):
        emit_json([{k: v for k, v in r.to_json().items() if k != "sha256"} for r in records])
        return EXIT_OK
    for r in records:
        role = "operator" if r.operator else "agent"
        sys.stdout.write(
            f"{r.name}\t{r.key_id}\t{','.join(r.namespaces) or '-'}\t{role}\t{r.created_at}\n"
        )
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from engram.http.keys import KeyFile

    path = _keys_path(args, settings)
    record = KeyFile(path).revoke(args.name)
    if getattr(args, "json", False):
        emit_json({"revoked": record.name, "id": record.key_id})
    else:
        print(f"engram: key {record.name!r} revoked in {path}", file=sys.stderr)
    return EXIT_OK
