"""engram purge: remove a tenant from the stream, every projection and every snapshot
(``consumers.purge`` says how and what it costs)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.endpoint import open_nats
from engine.errors import ConfigurationError, UsageError
from engine.events import NAMESPACE_PATTERN
from engine.settings import Settings, parse_namespaces
from engram.cli._common import EXIT_OK, emit_json
from engram.cli.serve import add_namespaces_flag, with_namespaces

if TYPE_CHECKING:
    from consumers.purge import PurgePlan

__all__ = ["add_purge_verb", "cmd_purge"]

Verb = Callable[..., argparse.ArgumentParser]


def add_purge_verb(sub: Any, verb: Verb) -> None:
    """Register ``engram purge``."""
    p = verb(sub, "purge", "remove a tenant from the stream, projections and snapshots (operator)")
    p.add_argument("--namespace", required=True, help="the tenant to purge")
    p.add_argument(
        "--reason",
        required=True,
        help="why (an erasure request's reference): recorded in the namespace.purged event",
    )
    p.add_argument("--yes", action="store_true", help="do it without asking")
    p.add_argument(
        "--dry-run",
        action="store_true",
        dest="dry_run",
        help="count what would go (reads every v1 message of the stream) and change nothing",
    )
    p.add_argument(
        "--compact-legacy",
        action="store_true",
        dest="compact_legacy",
        help="the tenant's v1 messages (memory.<type>) cannot be deleted one by one from a stream "
        "engram created: purge every tenant's history below the last of them once the new "
        "snapshot is stored and verified (as engram compact does)",
    )
    p.add_argument(
        "--snapshots-dir",
        dest="snapshots_dir",
        help="snapshots in a directory instead of the stream's Object Store bucket",
    )
    p.add_argument(
        "--also-set",
        action="append",
        default=[],
        dest="also_sets",
        metavar="NS[,NS...]",
        help="also supersede the snapshots of engines owning this set of namespaces "
        "(repeatable; a set without the tenant is skipped)",
    )
    add_namespaces_flag(p, "supersede the snapshots of this set instead of every namespace's")
    p.set_defaults(handler=cmd_purge)


def _sets(args: argparse.Namespace, settings: Settings) -> list[Settings]:
    """The settings of each namespace set whose snapshots hold the tenant, if any."""
    chosen = [with_namespaces(args, settings)]
    for text in args.also_sets:
        try:
            namespaces = parse_namespaces(text)
        except ValueError as exc:
            raise ConfigurationError(f"--also-set: {exc}") from None
        chosen.append(settings.model_copy(update={"namespaces": namespaces}))
    return [s for s in chosen if s.namespaces is None or args.namespace in s.namespaces]


def _confirm(namespace: str) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            f"purging {namespace} removes its messages from the stream for good: pass --yes "
            "(or --dry-run to see what would go)"
        )
    answer = input(f"purge every message of namespace {namespace}? type its name to confirm: ")
    if answer.strip() != namespace:
        raise UsageError("not confirmed: nothing was purged")


def _resume_text(plan: PurgePlan) -> str:
    return (
        f"the purge of {plan.namespace} at its namespace.purged (sequence {plan.resume_at}; "
        "nothing of the tenant after it, so no new marker): the stream below it, the dead "
        "letters and the snapshots again"
    )


def _plan_text(plan: PurgePlan) -> str:
    v1 = (
        f"{len(plan.v1_sequences):,} v1 messages, found by reading {plan.v1_scanned:,} v1 "
        f"messages ({plan.v1_bytes:,} bytes)"
    )
    if plan.v1_sequences and plan.deletes_denied:
        v1 += (
            " (the stream denies single deletes: they go only with --compact-legacy, which "
            f"compacts every tenant's history below sequence {max(plan.v1_sequences) + 1})"
        )
    return (
        f"namespace {plan.namespace} on stream {plan.stream} (sequences "
        f"{plan.first_sequence}..{plan.last_sequence}): {plan.v2_messages:,} v2 messages on "
        f"{len(plan.v2_subjects)} subjects ({plan.subject_filter}), {v1}"
        + (f", {plan.markers} earlier purge markers" if plan.markers else "")
    )


async def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    """engram purge --namespace NS --reason TEXT [--yes] [--dry-run]: see consumers.purge."""
    from consumers.purge import plan_purge, purge_namespace
    from consumers.snapshotting import default_store
    from projections.snapshots.stores import DirectorySnapshots

    if not re.fullmatch(NAMESPACE_PATTERN, args.namespace):
        raise UsageError(f"--namespace {args.namespace!r} does not match {NAMESPACE_PATTERN}")
    sets = _sets(args, settings)
    async with open_nats(settings) as endpoint:
        js = endpoint.nc.jetstream()
        plan = await plan_purge(js, settings, args.namespace)
        if args.dry_run:
            if args.json:
                emit_json({"dry_run": True, **_plan_json(plan)})
            elif plan.resume_at is not None:
                print(f"would resume {_resume_text(plan)}; nothing changed (dry run)")
            else:
                print(f"would purge {_plan_text(plan)}; nothing changed (dry run)")
            return EXIT_OK
        plan.check()  # nothing to purge: refused before asking
        if not args.yes:
            _confirm(args.namespace)
        stores = [
            (
                chosen,
                DirectorySnapshots(Path(args.snapshots_dir))
                if args.snapshots_dir
                else default_store(js, chosen),
            )
            for chosen in sets
        ]
        report = await purge_namespace(
            endpoint.nc,
            settings,
            args.namespace,
            args.reason,
            stores,
            plan=plan,
            compact_legacy=args.compact_legacy,
        )
    result = {
        "dry_run": False,
        **_plan_json(plan),
        "purge_sequence": report.purge_sequence,
        "resumed": report.resumed,
        "v2_removed": report.v2_removed,
        "v1_removed": report.v1_removed,
        "v1_kept": list(report.v1_kept),
        "compacted_below": report.compacted_below,
        "compacted_messages": report.compacted_messages,
        "dead_letters_removed": report.dead_letters_removed,
        "dead_letters_scanned": report.dead_letters_scanned,
        "snapshots": [
            {
                "location": s.location,
                "snapshot_id": s.snapshot_id,
                "deleted": list(s.deleted),
                "kept": list(s.kept),
            }
            for s in report.snapshots
        ],
        "seconds": round(report.seconds, 3),
    }
    if args.json:
        emit_json(result)
        return EXIT_OK
    done = (
        f"resumed {_resume_text(plan)}"
        if report.resumed
        else f"purged {_plan_text(plan)}: namespace.purged at sequence {report.purge_sequence}"
    )
    print(
        f"{done}; {report.v2_removed:,} v2 and {report.v1_removed:,} v1 messages and "
        f"{report.dead_letters_removed} dead letters (of {report.dead_letters_scanned} read) "
        f"removed in {report.seconds:.1f}s"
    )
    if report.compacted_below is not None:
        print(
            f"the stream's history below sequence {report.compacted_below} was compacted "
            f"({report.compacted_messages:,} messages of every tenant) to remove the v1 ones"
        )
    if report.v1_kept:
        print(
            f"{len(report.v1_kept):,} v1 messages of {args.namespace} stay in the stream (it "
            f"denies single deletes; the last is {max(report.v1_kept)}): to remove them, run "
            "again with --compact-legacy before the tenant publishes again (it resumes this "
            "purge; once the tenant has published, a rerun is a new purge that removes its new "
            "events too), or compact the history below them (engram compact)",
            file=sys.stderr,
        )
    for s in report.snapshots:
        if s.snapshot_id is None:
            print(f"snapshots in {s.location}: none to supersede")
        else:
            print(
                f"snapshots in {s.location}: {s.snapshot_id} taken after the purge; deleted "
                f"{', '.join(s.deleted) or 'none'}; kept {', '.join(s.kept) or 'none'}"
            )
    return EXIT_OK


def _plan_json(plan: PurgePlan) -> dict[str, Any]:
    return {
        "namespace": plan.namespace,
        "stream": plan.stream,
        "first_sequence": plan.first_sequence,
        "last_sequence": plan.last_sequence,
        "v2_messages": plan.v2_messages,
        "v2_subjects": plan.v2_subjects,
        "v1_messages": len(plan.v1_sequences),
        "v1_scanned": plan.v1_scanned,
        "v1_bytes_read": plan.v1_bytes,
        "earlier_purges": plan.markers,
        "deletes_denied": plan.deletes_denied,
        "resume_at": plan.resume_at,
    }
