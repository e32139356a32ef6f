"""``engram backup``, ``engram backup verify`` and ``engram restore``: backups of the log.

- ``engram backup --to DIR [--incremental] [--include-engine-key] [--accept-gap]``
- ``engram backup verify DIR``: no server needed; exit 1 naming each failing file
- ``engram restore --from DIR --stream NEW [--subject-prefix P] [--until TIME | --until-seq N]
  [--replace] [--replicas N] [--without-engine-key]``

``consumers.backup`` says what is written, checked and restored, and in which order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.endpoint import open_nats
from engine.settings import Settings
from engram.cli._common import EXIT_FAILURE, EXIT_OK, emit_json
from engram.cli.rebuild_verbs import parse_time

__all__ = ["add_backup_verbs", "cmd_backup", "cmd_restore", "cmd_verify"]


def add_backup_verbs(sub: Any, verb: Any) -> None:
    """Register ``engram backup [verify]`` and ``engram restore``."""
    p: argparse.ArgumentParser = verb(
        sub, "backup", "back up the stream's messages into a directory (full or incremental)"
    )
    p.add_argument("--to", dest="to", metavar="DIR", help="the backup directory")
    p.add_argument(
        "--incremental",
        action="store_true",
        help="add what the stream got since the directory's last run (a full backup when the "
        "directory holds none yet)",
    )
    p.add_argument(
        "--include-engine-key",
        action="store_true",
        dest="include_engine_key",
        help="also write the engine key, IN CLEAR, to DIR/engine-key.json (mode 0600); by "
        "default only its fingerprint is recorded",
    )
    p.add_argument(
        "--accept-gap",
        action="store_true",
        dest="accept_gap",
        help="when messages the backup lacks are gone from the stream, record the gap and go "
        "on (default: refuse)",
    )
    p.add_argument(
        "--segment-mb",
        type=float,
        default=64.0,
        dest="segment_mb",
        help="raw megabytes of messages per segment file (default 64)",
    )
    p.set_defaults(handler=cmd_backup)
    backup_sub = p.add_subparsers(dest="backup_verb", metavar="verify")
    v = backup_sub.add_parser(
        "verify", help="check every checksum, sequence and the run chain (no server needed)"
    )
    v.add_argument("directory", metavar="DIR")
    v.add_argument("--json", action="store_true", help="print JSON instead of text")
    v.set_defaults(handler=cmd_verify)

    r: argparse.ArgumentParser = verb(
        sub, "restore", "recreate a stream from a backup, whole or up to a point in time"
    )
    r.add_argument("--from", dest="source", required=True, metavar="DIR")
    r.add_argument(
        "--subject-prefix",
        dest="subject_prefix",
        help="the restored stream's subject prefix (default: the original's); another one lets "
        "it live on the original's server",
    )
    until = r.add_mutually_exclusive_group()
    until.add_argument(
        "--until", help="only messages the original stream stored at or before TIME (ISO 8601)"
    )
    until.add_argument("--until-seq", type=int, dest="until_seq")
    r.add_argument("--replicas", type=int, help="default: the original stream's")
    r.add_argument(
        "--replace",
        action="store_true",
        help="delete an existing stream of that name first (and its engine key record)",
    )
    r.add_argument(
        "--without-engine-key",
        action="store_true",
        dest="without_engine_key",
        help="record no engine key for the new stream (the key is lost: its engines generate "
        "another, and the restored derived events read as forged)",
    )
    r.set_defaults(handler=cmd_restore)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


async def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.backup import take_backup
    from engine.errors import UsageError

    if args.to is None:
        raise UsageError("engram backup needs --to DIR (or: engram backup verify DIR)")
    if args.segment_mb <= 0:
        raise UsageError(f"--segment-mb must be positive, got {args.segment_mb:g}")
    directory = Path(args.to)
    async with open_nats(settings) as endpoint:
        result = await take_backup(
            endpoint.nc.jetstream(timeout=settings.nats.request_timeout_s),
            settings,
            directory,
            incremental=args.incremental,
            include_engine_key=args.include_engine_key,
            accept_gap=args.accept_gap,
            segment_bytes=int(args.segment_mb * 1024 * 1024),
        )
    manifest, run = result.manifest, result.run
    key = manifest.engine_key
    if args.json:
        emit_json(
            {
                "directory": str(directory),
                "stream": manifest.stream,
                "run": None if run is None else run.model_dump(mode="json"),
                "first_seq": manifest.first_seq,
                "last_seq": manifest.last_seq,
                "messages": manifest.messages,
                "engine_key": key.model_dump(mode="json"),
                "seconds": round(result.seconds, 3),
            }
        )
        return EXIT_OK
    if result.incremental_requested_but_full:
        print(f"no backup in {directory} yet: taking a full one")
    if run is None:
        print(
            f"nothing new: stream {manifest.stream} has no message after sequence "
            f"{manifest.last_seq}, the backup's last"
        )
        return EXIT_OK
    size = sum(s.size for s in run.segments)
    print(
        f"backup of stream {manifest.stream}: run {run.number} ({run.kind}), sequences "
        f"{run.first_seq}..{run.last_seq}: {run.messages:,} messages in "
        f"{_count(len(run.segments), 'segment')} ({size:,} bytes) into {directory} in "
        f"{result.seconds:.2f}s "
        f"({result.messages_per_second:,.0f} messages/s)"
    )
    if run.gap is not None:
        print(
            f"WARNING: gap recorded: sequences {run.gap.first_seq}..{run.gap.last_seq} are not "
            "in this backup (gone from the stream before it read them)",
            file=sys.stderr,
        )
    if key.included:
        print(
            f"WARNING: the engine key is in {directory / 'engine-key.json'} IN CLEAR: keep "
            "this backup as secret as the key",
            file=sys.stderr,
        )
    elif key.fingerprint is not None:
        print(
            f"engine key: fingerprint {key.fingerprint} recorded, not the key (a restore finds "
            "it in ENGRAM_ENGINE_KEY or, on the same server, in the original stream's record)"
        )
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.backup import verify_backup

    report = verify_backup(Path(args.directory))
    manifest = report.manifest
    if args.json:
        emit_json(
            {
                "directory": args.directory,
                "ok": report.ok,
                "stream": None if manifest is None else manifest.stream,
                "runs": 0 if manifest is None else len(manifest.runs),
                "segments_checked": report.segments_checked,
                "messages_checked": report.messages_checked,
                "first_seq": None if manifest is None else manifest.first_seq,
                "last_seq": None if manifest is None else manifest.last_seq,
                "problems": [{"file": p.where, "problem": p.problem} for p in report.problems],
                "warnings": list(report.warnings),
            }
        )
        return EXIT_OK if report.ok else EXIT_FAILURE
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not report.ok:
        for problem in report.problems:
            print(f"engram: backup verify FAILED: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    assert manifest is not None
    print(
        f"backup {args.directory} of stream {manifest.stream}: OK: "
        f"{_count(len(manifest.runs), 'run')}, {_count(report.segments_checked, 'segment')}, "
        f"{report.messages_checked:,} messages, sequences "
        f"{manifest.first_seq}..{manifest.last_seq}, every SHA-256 and sequence checked"
    )
    return EXIT_OK


async def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.backup import restore_backup
    from engine.errors import UsageError

    if args.stream is None:
        raise UsageError("engram restore needs --stream NEW (the stream to create)")
    async with open_nats(settings) as endpoint:
        report = await restore_backup(
            endpoint.nc,
            settings,
            Path(args.source),
            stream=args.stream,
            subject_prefix=args.subject_prefix,
            until_seq=args.until_seq,
            until_time=parse_time(args.until) if args.until else None,
            replicas=args.replicas,
            replace=args.replace,
            without_engine_key=args.without_engine_key,
        )
    prefix = report.subjects[0].removesuffix(".>")
    if args.json:
        emit_json(
            {
                "stream": report.stream,
                "subjects": list(report.subjects),
                "first_seq": report.first_seq,
                "last_seq": report.last_seq,
                "messages": report.messages,
                "holes": report.placeholders,
                "msg_ids_dropped": report.msg_ids_dropped,
                "gaps": [list(g) for g in report.gaps],
                "cut": report.cut,
                "engine_key": report.key,
                "seconds": round(report.seconds, 3),
            }
        )
        return EXIT_OK
    print(
        f"restored {report.messages:,} messages into stream {report.stream} "
        f"({report.subjects[0]}), sequences {report.first_seq}..{report.last_seq} as in the "
        f"original ({report.placeholders:,} holes kept), "
        f"{report.cut or 'the whole backup'}, in {report.seconds:.2f}s "
        f"({report.messages_per_second:,.0f} messages/s)"
    )
    print(report.key)
    for first, last in report.gaps:
        print(
            f"WARNING: sequences {first}..{last} were not in the backup (a recorded gap)",
            file=sys.stderr,
        )
    if report.msg_ids_dropped:
        print(
            f"{report.msg_ids_dropped} messages repeated a Nats-Msg-Id published just before "
            "and were restored without it"
        )
    print(
        f"engines of it: ENGRAM_STREAM__NAME={report.stream} "
        f"ENGRAM_STREAM__SUBJECT_PREFIX={prefix} (on a server shared with other engines, also "
        "a service prefix of their own: ENGRAM_STREAM__SERVICE_PREFIX)"
    )
    return EXIT_OK
