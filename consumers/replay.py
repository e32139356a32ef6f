"""Replay: rebuild projections from the log, from scratch, from a sequence, up to a point.

Reads with an ephemeral ordered consumer (no acks) in large batches; decodes each message once
and applies each batch to every projection above its own checkpoint. Dead letters are recorded
in the projections but not republished (the live engine already did). Derived events are
verified with the stream's engine key like the live engine does (forged ones are dead letters).
Given ``namespaces``, only those tenants' events are applied (an engine owning some namespaces
only); the others' move the checkpoints and go nowhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext

from consumers.applying import apply_isolating
from consumers.decoding import decode_batch
from engine.signing import Verifier
from engine.stream import ReadRange, StoredMessage, read_stream
from engine.stream.engine_key import stored_verifier
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects
from projections.base import Projection

__all__ = ["ReplayReport", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayReport:
    messages: int
    dead_letters: int
    first_sequence: int | None
    last_sequence: int | None
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def _apply(
    projections: Sequence[Projection],
    batch: Sequence[StoredMessage],
    checkpoints: dict[str, int],
    verifier: Verifier,
    subjects: EventSubjects,
    namespaces: tuple[str, ...] | None,
) -> int:
    owned = None if namespaces is None else frozenset(namespaces)
    events, dead = decode_batch(batch, "", verifier=verifier, subjects=subjects, namespaces=owned)
    last = batch[-1].sequence
    dead_count = len(dead)
    for projection in projections:
        floor = checkpoints[projection.name]
        if last <= floor:
            continue
        mine = [e for e in events if e.sequence > floor]
        letters = [
            dataclasses.replace(d, projection=projection.name) for d in dead if d.sequence > floor
        ]
        dead_count += len(apply_isolating(projection, mine, letters, last, subjects))
        checkpoints[projection.name] = last
    return dead_count


async def replay(
    js: JetStreamContext,
    stream: str,
    projections: Sequence[Projection],
    window: ReadRange | None = None,
    *,
    batch_size: int = 5_000,
    on_batch: Callable[[int], None] | None = None,
    verifier: Verifier | None = None,
    subjects: EventSubjects = DEFAULT_SUBJECTS,
    namespaces: tuple[str, ...] | None = None,
) -> ReplayReport:
    """Apply the log within ``window`` to ``projections`` (each resumes above its checkpoint).

    ``verifier`` checks derived events (engine.stream.engine_key.verifying_key); by default the
    key the stream's engines generated, which needs no settings. Raises EngineKeyError when the
    stream is signed with ``ENGRAM_ENGINE_KEY`` and no verifier is given. ``subjects`` are the
    stream's event subjects (``settings.stream.events``; ``memory.<type>`` by default).
    ``namespaces``: the tenants to apply (None: every one).
    """
    window = window or ReadRange()
    if verifier is None:
        verifier = await stored_verifier(js, stream)
    checkpoints = {p.name: await asyncio.to_thread(p.checkpoint) for p in projections}
    start = min(checkpoints.values(), default=0) + 1
    if window.from_seq is not None:
        start = max(start, window.from_seq)
    window = dataclasses.replace(window, from_seq=start, follow=False)
    began = time.monotonic()
    total = dead = 0
    first: int | None = None
    last: int | None = None
    buffer: list[StoredMessage] = []

    async def flush() -> None:
        nonlocal dead
        dead += await asyncio.to_thread(
            _apply, projections, list(buffer), checkpoints, verifier, subjects, namespaces
        )
        if on_batch is not None:
            on_batch(len(buffer))
        buffer.clear()

    reading = read_stream(js, stream, window, batch=min(batch_size, 5_000), subjects=subjects)
    async for message in reading:
        buffer.append(message)
        total += 1
        first = message.sequence if first is None else first
        last = message.sequence
        if len(buffer) >= batch_size:
            await flush()
    if buffer:
        await flush()
    return ReplayReport(total, dead, first, last, time.monotonic() - began)
