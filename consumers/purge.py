"""Purging a tenant (``engram purge``): its messages leave the stream, every projection and every
snapshot forgets it, and a replay rebuilds without it. The basis for erasure requests.

What a purge does, in this order (each step safe to run again, the whole command too):

1. Plan (``plan_purge``, all a dry run does): count the tenant's v2 messages per subject (the
   stream's own per-subject counts, cheap) and find its v1 messages (``memory.<type>`` with the
   namespace in the body) by reading every v1 message of the stream: the one costly step, in
   proportion to the v1 history (a stream written after v2 has none). It also looks up the
   tenant's last ``namespace.purged`` still in the stream (the last message on its subject)
   and the tenant's last v2 message.
2. Append ``namespace.purged`` (signed with the engine key, like every derived event) on the
   tenant's subject; its stream sequence P is the purge point. First, so that a crash after it
   leaves projections that forget the tenant (live and replayed alike) and a rerun that
   finishes; and so that events the tenant publishes meanwhile are either below P (purged
   below) or after it (kept: it starts afresh).
   **Resuming.** When the tenant has a ``namespace.purged`` in the stream and nothing after it
   (no v2 message but the marker, no v1 message), a purge resumes from that marker instead:
   P is its sequence, no new marker is appended, and steps 3 to 4 run again at P (a purge that
   failed after its marker, or whose v1 messages were kept, is finished this way; one that had
   finished takes one more snapshot and changes nothing else). A tenant that published since
   its last purge is purged anew (a new marker, its newer events go too). Only a namespace
   with neither messages nor a marker is refused: nothing to purge.
3. JetStream purge of ``memory.*.*.<namespace>`` below P (one request, however many messages),
   and deletion of the tenant's dead letters below P from the dead-letter stream (a scan of
   that stream: each dead letter's subject and body, by the same rule as the tables' dead
   letters, ``projections.purging.belongs_to``).
3b. The v1 messages found (and those stored between the plan and P): v1 subjects are shared by
   every tenant, so no filter takes one tenant's alone, and a stream engram created denies
   single-message deletes (``deny_delete``, which JetStream never lets an update lift). They
   are deleted one by one where the stream allows it; otherwise they stay until the history
   below them is compacted: with ``compact_legacy``, once the new snapshot (step 4) is stored
   and verified, the stream is purged below the last of them, every tenant's history there
   included (the snapshot holds the others' state, as after ``engram compact``); without it
   the report names them (``v1_kept``). The projections forget them either way.
4. Snapshots (``supersede_snapshots``): a new snapshot after P (``take_snapshot``), verified and
   checked to hold no row of the tenant below P; only then every older snapshot that holds
   the tenant (``holds_namespace``: its tables' rows or dead letters below P, or, taken below
   P, anything of it in any projection's files), or cannot be read to tell, is deleted. Order
   matters: history below a snapshot may have been compacted away, and then the old snapshot
   is the only copy of the other tenants' state below it. The store is listed again after
   the deletions until a listing shows nothing unchecked (an engine's scheduled snapshot
   stored meanwhile), at most ``SUPERSEDE_ROUNDS`` times.

What it does not do: it cannot reach copies outside engram (exports, backups of the stream or
of data directories, a subscriber's own store of pattern.learned events, logs), nor the
snapshots of an engine owning another set of namespaces unless asked for that set
(``also_sets``); JetStream keeps the message ids of purged messages for its duplicate window,
so the same id published again within it is dropped (nats-server issue 6782).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from consumers.deadletters import dead_letter_stream_name
from consumers.purge_snapshots import SnapshotsSuperseded, supersede_snapshots
from consumers.tenant_traces import purge_probe
from engine.errors import EngramError, UsageError
from engine.events import make_event
from engine.events.derived import NamespacePurged
from engine.permissions import connection_of, refused_or
from engine.settings import Settings
from engine.stream import ReadRange, read_stream
from engine.stream.append import Appender
from engine.stream.engine_key import signing_key
from projections.purging import belongs_to
from projections.snapshots.stores import SnapshotStore

__all__ = [
    "PURGE_TYPE",
    "PurgePlan",
    "PurgeReport",
    "plan_purge",
    "purge_namespace",
]

log = structlog.get_logger(__name__)

PURGE_TYPE = "namespace.purged"
AGENT_ID = "engram-purge"


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """What a purge of ``namespace`` would remove from the stream (as of ``last_sequence``)."""

    namespace: str
    stream: str
    first_sequence: int
    last_sequence: int
    v2_subjects: dict[str, int]
    """The tenant's v2 subjects and their messages (earlier purge markers left out)."""
    markers: int
    """Earlier ``namespace.purged`` events of the tenant (they go too, superseded)."""
    v1_sequences: tuple[int, ...]
    """The tenant's v1 messages, found by the scan."""
    v1_scanned: int
    """v1 messages read to find them (every v1 message of the stream)."""
    v1_bytes: int
    """Their bytes: the scan's cost."""
    subject_filter: str
    legacy_filter: str
    deletes_denied: bool = True
    """The stream denies single-message deletes (every stream engram creates): its v1
    messages can only go with the history below them (``compact_legacy``)."""
    marker_sequence: int | None = None
    """The sequence of the tenant's last ``namespace.purged`` still in the stream."""
    resume_at: int | None = None
    """``marker_sequence`` when the tenant has nothing after it: the purge resumes there (no
    new marker), finishing what an earlier purge left undone."""

    @property
    def v2_messages(self) -> int:
        return sum(self.v2_subjects.values())

    @property
    def messages(self) -> int:
        """The tenant's messages (purge markers aside)."""
        return self.v2_messages + len(self.v1_sequences)

    def check(self) -> None:
        """Raise UsageError when there is nothing to do: the tenant has no message on the
        stream and no purge of it to resume."""
        if not self.messages and self.resume_at is None:
            raise UsageError(
                f"namespace {self.namespace} has no events on stream {self.stream} and no "
                "purge of it to resume: nothing to purge"
            )

    def event(self, reason: str) -> NamespacePurged:
        return NamespacePurged(
            namespace=self.namespace,
            reason=reason,
            first_sequence=self.first_sequence,
            last_sequence=self.last_sequence,
            messages=self.messages,
            subject_filter=self.subject_filter,
            legacy_filter=self.legacy_filter,
        )


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge did."""

    plan: PurgePlan
    purge_sequence: int
    """The stream sequence of the ``namespace.purged`` event: the purge point."""
    resumed: bool
    """True when the purge resumed from an earlier ``namespace.purged`` (none was appended)."""
    v2_removed: int
    v1_removed: int
    v1_kept: tuple[int, ...]
    """v1 messages of the tenant still in the stream (it denies single deletes and the history
    below them was not compacted)."""
    compacted_below: int | None
    """With ``compact_legacy``: the stream was purged below this sequence (every tenant)."""
    compacted_messages: int
    dead_letters_removed: int
    dead_letters_scanned: int
    snapshots: list[SnapshotsSuperseded] = field(default_factory=list)
    seconds: float = 0.0


async def _v2_subjects(js: JetStreamContext, settings: Settings, namespace: str) -> dict[str, int]:
    """The tenant's v2 subjects and their messages (the stream's per-subject counts)."""
    wanted = settings.stream.events.of_namespace(namespace)
    info = await js.stream_info(settings.stream.name, subjects_filter=wanted)
    return dict(sorted((info.state.subjects or {}).items()))


async def _v1_of(
    js: JetStreamContext,
    settings: Settings,
    purge: NamespacePurged,
    window: ReadRange,
) -> tuple[list[int], int, int]:
    """(the tenant's v1 sequences in ``window``, messages read, bytes read)."""
    found: list[int] = []
    read = size = 0
    async for message in read_stream(
        js, settings.stream.name, window, batch=1_000, subjects=settings.stream.events
    ):
        read += 1
        size += len(message.data)
        if belongs_to(purge, message.subject, message.data):
            found.append(message.sequence)
    return found, read, size


async def _last_sequence(js: JetStreamContext, stream: str, subject: str) -> int | None:
    """The sequence of the last message on ``subject`` (wildcards allowed), None for none."""
    try:
        return int((await js.get_last_msg(stream, subject)).seq or 0) or None
    except NotFoundError:
        return None


async def plan_purge(js: JetStreamContext, settings: Settings, namespace: str) -> PurgePlan:
    """Count what a purge of ``namespace`` removes from the stream (nothing is changed)."""
    purge_probe(settings, namespace)  # refuses a namespace that is no subject token
    stream = settings.stream.name
    info = await js.stream_info(stream)
    subjects = settings.stream.events
    counts = await _v2_subjects(js, settings, namespace)
    marker = subjects.subject(PURGE_TYPE, namespace)
    markers = counts.pop(marker, 0)
    probe = purge_probe(settings, namespace)
    v1: list[int] = []
    read = size = 0
    if info.state.messages:
        window = ReadRange(until_seq=info.state.last_seq, subject=subjects.legacy)
        v1, read, size = await _v1_of(js, settings, probe, window)
    marked = await _last_sequence(js, stream, marker) if markers else None
    resume_at = None
    if marked is not None:
        last_v2 = await _last_sequence(js, stream, probe.subject_filter)
        if last_v2 == marked and not [s for s in v1 if s > marked]:
            resume_at = marked  # nothing of the tenant after its last purge: finish that one
    return PurgePlan(
        namespace=namespace,
        stream=stream,
        first_sequence=info.state.first_seq,
        last_sequence=info.state.last_seq,
        v2_subjects=counts,
        markers=markers,
        v1_sequences=tuple(v1),
        v1_scanned=read,
        v1_bytes=size,
        subject_filter=probe.subject_filter,
        legacy_filter=subjects.legacy,
        deletes_denied=bool(info.config.deny_delete),
        marker_sequence=marked,
        resume_at=resume_at,
    )


_DELETES_DENIED = 10057
"""JetStream's error code for a single-message delete on a stream with ``deny_delete``."""


async def _delete(js: JetStreamContext, stream: str, sequences: Sequence[int]) -> list[int]:
    """Delete each of ``sequences``; returns those the stream refused to delete (it denies
    single deletes: then none is tried further)."""
    for position, sequence in enumerate(sequences):
        try:
            await refused_or(  # a user refused deletes: PermissionDeniedError, not a timeout
                connection_of(js),
                js.delete_msg(stream, sequence),
                publishes=f"$JS.API.STREAM.MSG.DELETE.{stream}",
                what=f"deleting message {sequence} of {stream}",
            )
        except NotFoundError:
            continue  # gone already (a rerun, or the stream's limits)
        except APIError as exc:
            if exc.err_code == _DELETES_DENIED:
                return list(sequences[position:])
            raise
    return []


async def _purged(nc: NatsClient, purge: Awaitable[bool], stream: str) -> bool:
    """``purge`` of ``stream``; PermissionDeniedError at once when the broker refuses it."""
    return await refused_or(
        nc, purge, publishes=f"$JS.API.STREAM.PURGE.{stream}", what=f"purging {stream}"
    )


def _dead_letter_of(body: bytes, stream: str, purge: NamespacePurged, below: int) -> bool:
    """True for a dead letter (``consumers.deadletters`` body) of the purged tenant's message
    stored below ``below`` in ``stream``."""
    try:
        letter = json.loads(body)
        raw = base64.b64decode(letter.get("raw_base64", ""), validate=True)
        sequence = int(letter["sequence"])
        subject = str(letter["subject"])
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return False
    return letter.get("stream") == stream and sequence < below and belongs_to(purge, subject, raw)


async def purge_dead_letters(
    js: JetStreamContext, settings: Settings, namespace: str, below: int
) -> tuple[int, int]:
    """Delete the tenant's dead letters (of messages below ``below``) from the dead-letter
    stream; returns (removed, scanned)."""
    dlq = dead_letter_stream_name(settings.stream)
    try:
        info = await js.stream_info(dlq)
    except NotFoundError:
        return 0, 0
    if not info.state.messages:
        return 0, 0
    probe = purge_probe(settings, namespace)
    doomed: list[int] = []
    scanned = 0
    letters = settings.stream.service.dead_letter_prefix + ">"
    window = ReadRange(until_seq=info.state.last_seq, subject=letters)
    async for message in read_stream(js, dlq, window, batch=1_000):
        scanned += 1
        if _dead_letter_of(message.data, settings.stream.name, probe, below):
            doomed.append(message.sequence)
    kept = await _delete(js, dlq, doomed)
    return len(doomed) - len(kept), scanned


async def purge_namespace(
    nc: NatsClient,
    settings: Settings,
    namespace: str,
    reason: str,
    stores: Sequence[tuple[Settings, SnapshotStore]] = (),
    *,
    plan: PurgePlan | None = None,
    compact_legacy: bool = False,
) -> PurgeReport:
    """Purge ``namespace`` (the module says how); ``stores`` are the snapshot stores to
    supersede, each with the settings of the namespace set it belongs to; ``compact_legacy``
    compacts the history below the tenant's v1 messages when the stream denies deleting them
    (it needs a store of every namespace's snapshots). Resumes from the tenant's last
    ``namespace.purged`` when it has nothing after it (``PurgePlan.resume_at``). Raises
    UsageError when the tenant has neither messages on the stream nor a purge to resume."""
    began = time.monotonic()
    js = nc.jetstream()
    stream = settings.stream.name
    plan = plan or await plan_purge(js, settings, namespace)
    plan.check()
    if plan.resume_at is not None:
        point = plan.resume_at
        log.info("resuming the purge at its namespace.purged", namespace=namespace, sequence=point)
    else:
        key = await signing_key(js, settings)  # the engine's: only it may publish derived events
        event = make_event(
            plan.event(reason),
            namespace=namespace,
            agent_id=AGENT_ID,
            event_id=f"purge-{stream}-{namespace}-{plan.last_sequence}",
        )
        appender = Appender(nc, stream, signer=key, subjects=settings.stream.events)
        encoded = appender.encode(event)
        appended = await refused_or(
            nc, appender.append(encoded), publishes=encoded[1], what="appending namespace.purged"
        )
        point = appended.sequence
        log.info("namespace.purged appended", namespace=namespace, sequence=point)

    before = sum((await _v2_subjects(js, settings, namespace)).values())
    await _purged(nc, js.purge_stream(stream, subject=plan.subject_filter, seq=point), stream)
    after = sum((await _v2_subjects(js, settings, namespace)).values())
    legacy = list(plan.v1_sequences)
    if point - 1 > plan.last_sequence:  # v1 messages stored between the plan and the purge
        window = ReadRange(
            from_seq=plan.last_sequence + 1,
            until_seq=point - 1,
            subject=settings.stream.events.legacy,
        )
        late, _, _ = await _v1_of(js, settings, plan.event(reason), window)
        legacy += late
    kept = await _delete(js, stream, legacy)
    removed_letters, scanned = await purge_dead_letters(js, settings, namespace, point)

    superseded = [
        await supersede_snapshots(nc, store_settings, store, namespace, point)
        for store_settings, store in stores
    ]
    compacted_below, compacted = None, 0
    if kept and compact_legacy:
        covered = [
            s
            for (store_settings, _), s in zip(stores, superseded, strict=True)
            if store_settings.namespaces is None and s.snapshot_id is not None
        ]
        if not covered:
            raise EngramError(
                f"{len(kept)} v1 messages of {namespace} stay in the stream: compacting the "
                "history below them needs a snapshot of every namespace, and none was taken "
                "(the stream's snapshots are elsewhere, or there were none)"
            )
        compacted_below = max(kept) + 1
        held = (await js.stream_info(stream)).state.messages
        await _purged(nc, js.purge_stream(stream, seq=compacted_below), stream)
        compacted = held - (await js.stream_info(stream)).state.messages
        kept = []
    elif kept:
        log.warning(
            "v1 messages of the purged namespace stay in the stream: it denies single deletes; "
            "compact the history below them (engram purge --compact-legacy, or engram compact)",
            namespace=namespace,
            messages=len(kept),
            last=max(kept),
        )
    return PurgeReport(
        plan=plan,
        purge_sequence=point,
        resumed=plan.resume_at is not None,
        v2_removed=before - after,
        v1_removed=len(legacy) - len(kept),
        v1_kept=tuple(kept),
        compacted_below=compacted_below,
        compacted_messages=compacted,
        dead_letters_removed=removed_letters,
        dead_letters_scanned=scanned,
        snapshots=superseded,
        seconds=time.monotonic() - began,
    )
