"""``engram stream apply`` and ``engram stream info``: the operator's verbs on the stream itself.

``apply`` is, with ``engram serve``, the only way the CLI creates or changes the stream; every
other verb and the SDK only look it up.
"""

from __future__ import annotations

import argparse
from typing import Any

from nats.js.api import StreamConfig, StreamInfo

from engine.connection import server_address
from engine.endpoint import open_nats
from engine.settings import Settings
from engine.stream import EventLog
from engine.stream.setup import LIMIT_FIELDS
from engram.cli._common import EXIT_OK, emit_json

__all__ = ["add_downgrade_flag", "add_stream_verbs", "cmd_stream_apply", "cmd_stream_info"]


def add_downgrade_flag(parser: argparse.ArgumentParser) -> None:
    """``--allow-stream-downgrade`` (serve and stream apply)."""
    parser.add_argument(
        "--allow-stream-downgrade",
        action="store_true",
        default=None,
        dest="allow_stream_downgrade",
        help="let lower settings lower the existing stream's replicas, duplicate window, "
        "max age, max bytes or max message size (default: keep the stronger existing value "
        "and log the difference)",
    )


def add_stream_verbs(sub: Any, verb: Any) -> None:
    """Register ``stream apply`` and ``stream info`` (``verb`` is main's ``_verb`` factory)."""
    stream = sub.add_parser("stream", help="create, update or show the event stream (operators)")
    actions = stream.add_subparsers(dest="stream_action", required=True, metavar="ACTION")

    p = verb(actions, "apply", "create the stream, or raise its limits to the settings'")
    add_downgrade_flag(p)
    limits = p.add_argument_group("limits (default: ENGRAM_STREAM__*, else engram's defaults)")
    limits.add_argument("--replicas", type=int, dest="stream_replicas")
    limits.add_argument(
        "--duplicate-window", type=float, dest="stream_duplicate_window", help="seconds"
    )
    limits.add_argument("--max-age", type=float, dest="stream_max_age", help="seconds; 0: none")
    limits.add_argument("--max-bytes", type=int, dest="stream_max_bytes", help="-1: none")
    limits.add_argument("--max-msg-size", type=int, dest="stream_max_msg_size", help="-1: none")
    p.set_defaults(handler=cmd_stream_apply)

    p = verb(actions, "info", "the stream's configuration and state (changes nothing)")
    p.set_defaults(handler=cmd_stream_info)


def _describe(info: StreamInfo) -> dict[str, Any]:
    config: StreamConfig = info.config
    described: dict[str, Any] = {
        "stream": config.name,
        "subjects": list(config.subjects or ()),
        "storage": str(getattr(config.storage, "value", config.storage)),
    }
    described.update({field: getattr(config, field) for field in LIMIT_FIELDS})
    described.update(
        {
            "messages": info.state.messages,
            "bytes": info.state.bytes,
            "first_sequence": info.state.first_seq,
            "last_sequence": info.state.last_seq,
        }
    )
    return described


def _print(described: dict[str, Any]) -> None:
    for key, value in described.items():
        print(f"{key:>16}: {value}")


async def cmd_stream_apply(args: argparse.Namespace, settings: Settings) -> int:
    """engram stream apply: create the stream or raise its limits; prints what it did and
    each lower limit it kept (exit 0 either way)."""
    async with open_nats(settings) as endpoint:
        log = EventLog(endpoint.nc, settings.stream, timeout_s=settings.nats.request_timeout_s)
        applied = await log.apply(warn_kept=False)  # said below, once, in the verb's output
        where = server_address(endpoint.nc)
    described = {"action": applied.action, "server": where, **_describe(applied.info)}
    described["kept"] = {
        k.field: {"existing": k.existing, "wanted": k.wanted} for k in applied.kept
    }
    if args.json:
        emit_json(described)
        return EXIT_OK
    print(f"stream {settings.stream.name} {applied.action} on {where}")
    for kept in applied.kept:
        print(f"  kept {kept.describe()} (--allow-stream-downgrade lowers it)")
    _print(_describe(applied.info))
    return EXIT_OK


async def cmd_stream_info(args: argparse.Namespace, settings: Settings) -> int:
    """engram stream info: the stream's configuration and state; exit 1 when it is missing."""
    async with open_nats(settings) as endpoint:
        log = EventLog(endpoint.nc, settings.stream, timeout_s=settings.nats.request_timeout_s)
        described = _describe(await log.lookup())
    if args.json:
        emit_json(described)
    else:
        _print(described)
    return EXIT_OK
