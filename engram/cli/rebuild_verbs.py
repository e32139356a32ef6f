"""engram replay: rebuild every projection into a fresh data directory from the stream."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.endpoint import open_nats
from engine.errors import ConfigurationError, UsageError
from engine.settings import Settings
from engine.stream import ReadRange
from engram.cli._common import EXIT_OK, emit_json
from engram.cli.progress import Progress
from engram.cli.serve import with_namespaces

__all__ = ["cmd_compact", "cmd_reindex", "cmd_replay", "cmd_snapshot", "parse_time"]


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601 with a zone (``Z`` accepted); raises UsageError otherwise."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--until {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise UsageError(f"--until {text!r} has no time zone (add Z or +00:00)")
    return value


async def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Read the stream (from --source-data-dir's server or --nats-url) into --data-dir; with
    --namespaces (ENGRAM_NAMESPACES) only those tenants, from their set's snapshot."""
    from consumers.replay import replay
    from consumers.tenants import bind_data_dir
    from engine.stream.engine_key import verifying_key
    from projections.projection_set import open_projections

    target = Path(args.data_dir) if args.data_dir else None
    if target is None:
        raise UsageError("replay needs --data-dir NEW (the directory to rebuild into)")
    settings = with_namespaces(args, settings)
    source = settings.model_copy(update={"data_dir": Path(args.source_data_dir)})
    existing = (target / "engram.duckdb").exists()
    if existing and not args.resume:
        raise UsageError(f"{target} already holds a database: choose a new directory or --resume")
    bind_data_dir(target, settings.namespaces, has_state=existing)
    window = ReadRange(
        from_seq=args.from_seq,
        until_seq=args.until_seq,
        until_time=parse_time(args.until) if args.until else None,
    )
    target_settings = settings.model_copy(update={"data_dir": target})
    restored = None
    if args.from_snapshot:
        from consumers.snapshotting import restore_latest

        async with open_nats(source) as endpoint:
            js = endpoint.nc.jetstream()
            store = _snapshot_store(args, js, settings)
            restored = await restore_latest(
                js, target_settings, store, target, snapshot_id=args.from_snapshot
            )
        if restored is None:
            print("engram: no valid snapshot found: replaying the whole stream", file=sys.stderr)
    projection_set = open_projections(target_settings)
    projections = projection_set.persistent
    try:
        async with open_nats(source) as endpoint:
            js = endpoint.nc.jetstream()
            info = await js.stream_info(settings.stream.name)
            verifier = await verifying_key(js, settings)  # ENGRAM_ENGINE_KEY or the stream's
            with Progress("replay", info.state.messages) as bar:
                report = await replay(
                    js,
                    settings.stream.name,
                    projections,
                    window,
                    batch_size=args.batch_size,
                    on_batch=bar.advance,
                    verifier=verifier,
                    subjects=settings.stream.events,
                    namespaces=settings.namespaces,
                )
    finally:
        projection_set.close()
    result = {
        "data_dir": str(target),
        "namespaces": None if settings.namespaces is None else [*settings.namespaces],
        "snapshot": restored.snapshot_id if restored else None,
        "messages": report.messages,
        "dead_letters": report.dead_letters,
        "first_sequence": report.first_sequence,
        "last_sequence": report.last_sequence,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second, 1),
    }
    if args.json:
        emit_json(result)
    else:
        print(
            f"replayed {report.messages} events (sequences {report.first_sequence}.."
            f"{report.last_sequence}) into {target} in {report.seconds:.2f}s "
            f"({report.events_per_second:,.0f} events/s), {report.dead_letters} dead letters"
        )
    return EXIT_OK


async def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """engram reindex --embedder NAME: build the new index beside the live one, then switch."""
    from consumers.reindex import reindex

    async with open_nats(settings) as endpoint:
        js = endpoint.nc.jetstream()
        info = await js.stream_info(settings.stream.name)
        with Progress(f"reindex ({args.embedder})", info.state.messages) as bar:
            report = await reindex(
                js, settings.stream.name, settings, args.embedder, on_batch=bar.advance
            )
    result = {
        "embedder": args.embedder,
        "active": True,
        "messages": report.messages,
        "last_sequence": report.last_sequence,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second, 1),
    }
    if args.json:
        emit_json(result)
    else:
        print(
            f"index for {args.embedder} built from {report.messages} events in "
            f"{report.seconds:.1f}s and made active (a running engine switches over once it "
            "has tailed it to the end of the stream)"
        )
    return EXIT_OK


def _snapshot_store(args: argparse.Namespace, js: Any, settings: Settings) -> Any:
    from consumers.snapshotting import default_store
    from projections.snapshots.stores import DirectorySnapshots

    directory = getattr(args, "to", None) or getattr(args, "snapshots_dir", None)
    return DirectorySnapshots(Path(directory)) if directory else default_store(js, settings)


async def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    """engram snapshot [--to DIR] [--namespaces A,B]: every projection at one sequence,
    verifiable, stored (of those tenants only, named for their set, with --namespaces)."""
    from consumers.snapshotting import take_snapshot

    settings = with_namespaces(args, settings)
    async with open_nats(settings) as endpoint:
        js = endpoint.nc.jetstream()
        store = _snapshot_store(args, js, settings)
        with Progress("snapshot", None) as bar:
            manifest = await take_snapshot(
                endpoint.nc, settings, store, at_seq=args.at_seq, on_batch=bar.advance
            )
    result = {
        "snapshot_id": manifest.snapshot_id,
        "namespaces": None if settings.namespaces is None else [*settings.namespaces],
        "sequence": manifest.sequence,
        "files": len(manifest.files),
        "total_bytes": manifest.total_bytes,
        "location": store.location,
        "embedder": manifest.embedder,
    }
    if args.json:
        emit_json(result)
    else:
        print(
            f"snapshot {manifest.snapshot_id} covers sequences 1..{manifest.sequence}: "
            f"{len(manifest.files)} files, {manifest.total_bytes:,} bytes in {store.location}"
        )
    return EXIT_OK


async def cmd_compact(args: argparse.Namespace, settings: Settings) -> int:
    """engram compact [--dry-run] --older-than SECONDS: purge what a verified snapshot covers."""
    from consumers.compaction import compact, plan_compaction

    if settings.namespaces is not None:
        raise ConfigurationError(
            "compaction purges every tenant's history, so it needs a snapshot of every "
            f"namespace: run it without ENGRAM_NAMESPACES (set to {','.join(settings.namespaces)})"
        )
    async with open_nats(settings) as endpoint:
        js = endpoint.nc.jetstream()
        store = _snapshot_store(args, js, settings)
        plan = await plan_compaction(js, settings, store, args.older_than)
        purged = 0 if args.dry_run else await compact(js, settings, plan)
    result = {
        "dry_run": args.dry_run,
        "snapshot_id": plan.snapshot_id,
        "snapshot_sequence": plan.snapshot_sequence,
        "first_sequence": plan.first_sequence,
        "purge_below": plan.purge_below,
        "would_purge": plan.messages,
        "purged": purged,
        "cutoff": plan.cutoff,
    }
    if args.json:
        emit_json(result)
    elif plan.snapshot_id is None:
        print("nothing to compact: no verified snapshot covers any of the stream")
    else:
        verb = "would purge" if args.dry_run else "purged"
        count = plan.messages if args.dry_run else purged
        print(
            f"{verb} {count} events (sequences {plan.first_sequence}..{plan.purge_below - 1}, "
            f"stored before {plan.cutoff}); snapshot {plan.snapshot_id} (sequence "
            f"{plan.snapshot_sequence}) plus the tail rebuilds everything"
        )
    return EXIT_OK
