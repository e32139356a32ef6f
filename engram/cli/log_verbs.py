"""Verbs on the log itself: publish, ingest, tail, status, schema."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.endpoint import open_nats
from engine.errors import EngramError, InvalidEventError, UsageError
from engine.events import EVENT_TYPES, Event, typed_event_model, validate_event
from engine.events.codec import decode_event
from engine.events.registry import require_agent_type
from engine.ids import new_event_id
from engine.settings import Settings
from engine.stream import AppendResult, EventLog, ReadRange
from engine.subjects import EventSubjects
from engram.cli._common import EXIT_OK, EXIT_USAGE, emit_json
from engram.cli.progress import Progress

__all__ = ["cmd_ingest", "cmd_publish", "cmd_schema", "cmd_tail", "envelope_from"]


def envelope_from(raw: dict[str, Any], *, now: datetime | None = None) -> Event:
    """Complete a partial envelope (id, schema_version, namespace, occurred_at may be omitted)
    and validate it. Give ``id`` to make re-ingesting the same file idempotent.

    Raises ForbiddenEventTypeError for a type only the engine publishes (``publish`` exits 2,
    ``ingest`` reports the line as rejected), before anything is sent.
    """
    event_type = raw.get("type")
    if isinstance(event_type, str):
        require_agent_type(event_type)
    spec = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    filled = dict(raw)
    filled.setdefault("id", new_event_id())
    if spec is not None:
        filled.setdefault("schema_version", spec.version)
    filled.setdefault("occurred_at", (now or datetime.now(UTC)).isoformat())
    return validate_event(filled)


async def _open_log(settings: Settings, endpoint_nc: Any) -> EventLog:
    """The log on an existing stream: a verb looks the stream up and never creates or changes
    it (StreamNotFoundError says to start ``engram serve`` or run ``engram stream apply``); a
    user refused the stream's info (a tenant's agent) goes on without it."""
    log = EventLog(
        endpoint_nc,
        settings.stream,
        timeout_s=settings.nats.request_timeout_s,
        max_in_flight=settings.publish_max_in_flight,
    )
    await log.lookup_if_allowed()
    return log


async def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """engram publish TYPE --data JSON: validate, append, print the sequence."""
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--data is not JSON: {exc.msg} at column {exc.colno}") from None
    raw: dict[str, Any] = {"type": args.type, "data": data, "namespace": args.namespace}
    for key in ("agent_id", "session_id", "id"):
        if getattr(args, key, None):
            raw[key] = getattr(args, key)
    event = envelope_from(raw)
    async with open_nats(settings) as endpoint:
        log = await _open_log(settings, endpoint.nc)
        result = await log.append(event)
    if args.json:
        emit_json(
            {"id": result.event_id, "sequence": result.sequence, "duplicate": result.duplicate}
        )
    else:
        note = " (duplicate: already stored)" if result.duplicate else ""
        print(f"stored {event.type} {event.id} at sequence {result.sequence}{note}")
    return EXIT_OK


@dataclass
class IngestReport:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] | None = None

    def as_dict(self) -> dict[str, Any]:
        rejected = self.rejected or []
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(rejected),
            "errors": [{"line": line, "reason": reason} for line, reason in rejected],
        }


async def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """engram ingest FILE.jsonl: append every valid line; report rejected lines with reasons."""
    path = Path(args.file)
    try:
        # A CLI reading its input file before any I/O starts: blocking is fine here.
        lines = path.read_text(encoding="utf-8").splitlines()  # noqa: ASYNC240
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    report = IngestReport(rejected=[])
    assert report.rejected is not None
    batch: list[tuple[int, Event]] = []
    now = datetime.now(UTC)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise InvalidEventError(f"line is a JSON {type(raw).__name__}, not an object")
            batch.append((number, envelope_from(raw, now=now)))
        except json.JSONDecodeError as exc:
            report.rejected.append((number, f"not JSON: {exc.msg} at column {exc.colno}"))
        except EngramError as exc:
            report.rejected.append((number, str(exc)))
    async with open_nats(settings) as endpoint:
        log = await _open_log(settings, endpoint.nc)
        with Progress("ingest", len(batch)) as bar:
            chunk = max(1, settings.publish_max_in_flight)
            for start in range(0, len(batch), chunk):
                part = batch[start : start + chunk]
                results = await log.append_many([event for _, event in part])
                for (number, _), result in zip(part, results, strict=True):
                    if isinstance(result, AppendResult):
                        report.accepted += 1
                        report.duplicates += int(result.duplicate)
                    else:
                        report.rejected.append((number, str(result)))
                bar.advance(len(part))
    report.rejected.sort()
    if args.json:
        emit_json(report.as_dict())
    else:
        print(
            f"accepted {report.accepted} (of which {report.duplicates} already stored), "
            f"rejected {len(report.rejected)}"
        )
        for number, reason in report.rejected:
            print(f"  line {number}: {reason}")
    return EXIT_OK if not report.rejected else EXIT_USAGE


def _tail_line(
    sequence: int, stored_at: datetime, subject: str, body: bytes, subjects: EventSubjects
) -> dict[str, Any]:
    entry: dict[str, Any] = {"sequence": sequence, "stored_at": stored_at.isoformat()}
    entry["subject"] = subject
    try:
        entry["event"] = decode_event(body, subject, subjects=subjects).to_json_dict()
    except InvalidEventError as exc:
        entry["error"] = str(exc)
        entry["raw"] = body[:2_000].decode("utf-8", errors="replace")
    return entry


def _human(entry: dict[str, Any]) -> str:
    event = entry.get("event")
    if event is None:
        return f"#{entry['sequence']} {entry['subject']} INVALID: {entry['error']}"
    data = json.dumps(event["data"], ensure_ascii=False)
    if len(data) > 120:
        data = data[:117] + "..."
    who = event.get("agent_id", "-")
    head = f"#{entry['sequence']} {event['occurred_at']} {event['type']}"
    return f"{head} [{event['namespace']}] {who} {data}"


async def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    """engram tail: print events in order; stops at the end unless --follow.

    ``--type T`` shows T's events on their v2 subjects (``memory.T.<namespace>``) and on the v1
    one (``memory.T``): no single filter matches both, so every event is read and the others
    are left out here (a message on no event subject is shown, as invalid, only without it)."""
    events = settings.stream.events
    window = ReadRange(from_seq=args.from_seq, subject=events.wildcard, follow=args.follow)
    async with open_nats(settings) as endpoint:
        log = await _open_log(settings, endpoint.nc)
        async for stored in log.read(window):
            if args.type and events.type_of(stored.subject) != args.type:
                continue
            entry = _tail_line(stored.sequence, stored.time, stored.subject, stored.data, events)
            if args.json:
                emit_json(entry)
            else:
                print(_human(entry))
            sys.stdout.flush()
    return EXIT_OK


async def stream_status(settings: Settings, nc: Any) -> dict[str, Any]:
    log = await _open_log(settings, nc)
    state = await log.state()
    return {
        "stream": state.name,
        "subjects": list(state.subjects),
        "messages": state.messages,
        "bytes": state.bytes,
        "first_sequence": state.first_sequence,
        "last_sequence": state.last_sequence,
        "consumers": state.consumers,
        "replicas": state.replicas,
    }


def cmd_schema(args: argparse.Namespace, _settings: Settings) -> int:
    """engram schema [TYPE]: the JSON Schema of one event type, or of all of them."""
    if args.asyncapi:
        from consumers.asyncapi import asyncapi_document

        emit_json(asyncapi_document())
        return EXIT_OK
    if args.type:
        model = typed_event_model(args.type)
        if model is None:
            known = ", ".join(sorted(EVENT_TYPES))
            print(f"engram: unknown event type {args.type!r}; known: {known}", file=sys.stderr)
            return EXIT_USAGE
        emit_json(model.model_json_schema())
        return EXIT_OK
    schemas = {}
    for name in EVENT_TYPES:
        model = typed_event_model(name)
        assert model is not None
        schemas[name] = model.model_json_schema()
    if args.json:
        emit_json(schemas)
    else:
        print(json.dumps(schemas, indent=2))
    return EXIT_OK
