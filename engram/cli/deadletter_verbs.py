"""``engram dead-letters``: every projection's dead letters, each once, from the dead-letter
stream (with the engine running or not: only the NATS server is needed)."""

from __future__ import annotations

import argparse

from engine.endpoint import open_nats
from engine.settings import Settings
from engram.cli._common import EXIT_OK, emit_json

__all__ = ["cmd_dead_letters"]

_COLUMNS = ["sequence", "projection", "kind", "subject", "stored_at", "reason"]


async def cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    """engram dead-letters [--projection P] [--kind K] [--limit N] [--json]."""
    from consumers.deadletter_view import read_dead_letters
    from engram.cli.query_verbs import print_table

    async with open_nats(settings) as endpoint:
        js = endpoint.nc.jetstream(timeout=settings.nats.request_timeout_s)
        reply = await read_dead_letters(
            js, settings.stream, projection=args.projection, kind=args.kind, limit=args.limit
        )
    if args.json:
        emit_json(reply)
        return EXIT_OK
    if not reply["exists"]:
        print(f"no dead-letter stream {reply['stream']}: nothing was ever dead-lettered")
        return EXIT_OK
    print_table(reply["dead_letters"], _COLUMNS)
    shown = len(reply["dead_letters"])
    note = f"{reply['total']} dead letters"
    if reply["truncated"]:
        note += f" ({shown} newest shown; --limit)"
    if reply["collapsed"]:
        note += f", {reply['collapsed']} repeated copies folded"
    if reply["unreadable"]:
        note += f", {reply['unreadable']} messages on {reply['stream']} are not dead letters"
    print(note)
    return EXIT_OK
