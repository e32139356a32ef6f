"""Engines that split the tenants (issue 12, item 4): two engines owning disjoint halves of four
namespaces share one stream on one real nats-server. Every query of a namespace is answered by
the engine owning it, whose projections hold its tenants only; each engine announces its own
tenants' patterns; killing one leaves the other's tenants fully served while the killed one's
get EngineUnavailableError, and a restart catches up; engines owning the same set form a queue
group (each request answered once)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from consumers.lease import BUCKET, lease_key
from engine import MemoryClient
from engine.errors import EngineUnavailableError, EngramError
from engine.events import Event, KnowledgeAdded, WorkflowExecuted, encode_event, make_event
from engine.query_client import query_remote
from engine.settings import Settings
from engine.stream import AppendResult, EventLog
from engine.stream.append import EncodedEvent
from engine.subjects import EventSubjects
from engram.app import Engine
from engram.cli.serve import serve_command
from tests.engines import running, settle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

HALF_A = ("alpha", "beta")
HALF_B = ("delta", "gamma")
FOUR = (*HALF_A, *HALF_B)
SUBJECTS = EventSubjects()


def _events(namespace: str, count: int, start: int = 0) -> list[Event]:
    """``count`` workflows of the namespace's own task type (a learnable pattern) and one
    knowledge document naming the namespace (a search finds it)."""
    flows: list[Event] = [
        make_event(
            WorkflowExecuted(
                task_type=f"{namespace}_task",
                workflow_steps=["plan", f"{namespace}-step-{i % 2}"],
                success=i % 3 != 0,
                duration=1.0,
            ),
            namespace=namespace,
        )
        for i in range(start, start + count)
    ]
    note = make_event(
        KnowledgeAdded(
            kind="procedure",
            title=f"{namespace} runbook {start}",
            content=f"how the {namespace} team restarts the {namespace} service, part {start}",
        ),
        namespace=namespace,
    )
    return [*flows, note]


async def _publish(nc: NatsClient, stream: str, events: Sequence[Event], *, v1: bool) -> None:
    """On the v2 subject (``memory.<type>.<namespace>``) or, ``v1``, on the old one with the
    namespace only in the body, as a stream written before wire contract v2 holds them."""
    js = nc.jetstream()
    for event in events:
        subject = SUBJECTS.subject(event.type, None if v1 else event.namespace)
        await js.publish(
            subject, encode_event(event), stream=stream, headers={"Nats-Msg-Id": event.id}
        )


async def _ask(nc: NatsClient, settings: Settings, namespace: str, verb: str) -> dict[str, Any]:
    """A raw request on the tenant's subject, ``engram.query.<namespace>.<verb>``."""
    subject = settings.stream.service.tenant_query(namespace, verb)
    return await query_remote(nc, verb, {}, timeout_s=3.0, subject=subject)


async def _served(settings: Settings, namespace: str) -> dict[str, Any]:
    """What the SDK answers for one namespace (every answer must be about it only)."""
    async with MemoryClient(settings=settings, namespace=namespace) as client:
        flows = await client.workflow_metrics()
        hits = await client.search_similar(f"{namespace} service runbook", top_k=10)
        patterns = await client.retrieve_workflow_patterns(min_success_rate=0.0)
    return {
        "task_types": {f["task_type"] for f in flows},
        "executions": sum(int(f["executions"]) for f in flows),
        "hit_namespaces": {h.namespace for h in hits},
        "hit_texts": [h.text for h in hits],
        "pattern_types": {p.task_type for p in patterns},
    }


def _holds(engine: Engine) -> dict[str, set[str]]:
    """The namespaces each of ``engine``'s projections holds rows, memories or patterns of."""
    reader = engine.set.store.reader()
    tables = {row[0] for row in reader.execute("SELECT namespace FROM workflows").fetchall()}
    vectors = {m.namespace for m in engine.set.vectors.memories.values()}
    return {"tables": tables, "vectors": vectors}


def _record_publishes(engine: Engine) -> list[str]:
    """The subjects ``engine``'s appender publishes on from now on (announcements included)."""
    subjects: list[str] = []
    original = engine.appender.append_many

    async def recording(batch: Sequence[EncodedEvent]) -> list[AppendResult | EngramError]:
        subjects.extend(subject for _, subject, _ in batch)
        return await original(batch)

    engine.appender.append_many = recording  # type: ignore[method-assign]
    return subjects


def _serve(
    settings: Settings, data_dir: Path, namespaces: Sequence[str]
) -> subprocess.Popen[bytes]:
    """``engram serve --namespaces ...`` as a process of its own (so it can be SIGKILLed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return subprocess.Popen(
        serve_command(str(settings.nats.url), settings.stream.name, data_dir, namespaces),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.3)


async def _caught_up(nc: NatsClient, settings: Settings, namespace: str) -> bool:
    """The engine owning ``namespace`` answers its status with every projection at lag 0."""
    try:
        status = await _ask(nc, settings, namespace, "status")
    except EngineUnavailableError:
        return False
    projections = status.get("projections") or {}
    return bool(projections) and all(p["lag"] == 0 for p in projections.values())


@contextlib.asynccontextmanager
async def _listening(nc: NatsClient, subject: str) -> AsyncIterator[list[Msg]]:
    heard: list[Msg] = []

    async def on_message(msg: Msg) -> None:
        heard.append(msg)

    sub = await nc.subscribe(subject, cb=on_message)
    try:
        yield heard
    finally:
        await sub.unsubscribe()


async def test_two_engines_split_four_namespaces_and_survive_each_other(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Engine A owns alpha and beta, engine B delta and gamma, on one stream holding events of
    all four on v2 subjects and some on v1 subjects (namespace in the body only).

    - each namespace's metrics, search and patterns are its own and complete (v1 events
      included), and its status is answered by its owner (the instance);
    - A's tables and vectors hold alpha and beta only, B's delta and gamma only;
    - pattern.learned of each namespace is heard on its v2 subject, published by its owner
      (the engine's appender), each (pattern, version) once, under each set's own lease;
    - B restarted as ``engram serve --namespaces delta,gamma`` catches up on what was
      published while it was away; SIGKILLed, its namespaces get EngineUnavailableError (no
      responders) while A keeps serving and projecting its own; restarted, B catches up.
    """
    stream = settings.stream.name
    a = settings.model_copy(update={"namespaces": HALF_A})
    b = settings.model_copy(update={"namespaces": HALF_B})
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    expected = Counter[str]()

    async with (
        _listening(nc, "memory.pattern.learned.*") as learned,
        running(a, nc, dir_a) as engine_a,
        running(b, nc, dir_b) as engine_b,
    ):
        published_a, published_b = _record_publishes(engine_a), _record_publishes(engine_b)
        for namespace in FOUR:
            await _publish(nc, stream, _events(namespace, 24), v1=False)
            await _publish(nc, stream, _events(namespace, 6, start=100), v1=True)
            expected[namespace] += 30
        await settle(engine_a)
        await settle(engine_b)

        async def every_namespace_heard() -> bool:  # announcements follow the catch-up
            return {SUBJECTS.parse(m.subject)[1] for m in learned} == set(FOUR)  # type: ignore[index]

        await _eventually(every_namespace_heard, timeout_s=30.0)
        await settle(engine_a)
        await settle(engine_b)

        answers = {ns: await _served(settings, ns) for ns in FOUR}
        statuses = {ns: await _ask(nc, settings, ns, "status") for ns in FOUR}
        holds_a, holds_b = _holds(engine_a), _holds(engine_b)
        kv = await nc.jetstream().key_value(BUCKET)
        lease_a = (await kv.get(lease_key(stream, HALF_A))).value
        lease_b = (await kv.get(lease_key(stream, HALF_B))).value
        instance_a, instance_b = engine_a.instance, engine_b.instance

    for namespace in FOUR:
        got = answers[namespace]
        assert got["task_types"] == {f"{namespace}_task"}, (namespace, got)
        assert got["executions"] == expected[namespace], (namespace, got)
        assert got["hit_namespaces"] == {namespace}, (namespace, got)
        assert any(f"{namespace} runbook" in text for text in got["hit_texts"])
        assert got["pattern_types"] == {f"{namespace}_task"}, (namespace, got)
        owner = instance_a if namespace in HALF_A else instance_b
        assert statuses[namespace]["instance"] == owner
        assert statuses[namespace]["namespaces"] == list(HALF_A if owner == instance_a else HALF_B)
    assert holds_a == {"tables": set(HALF_A), "vectors": set(HALF_A)}
    assert holds_b == {"tables": set(HALF_B), "vectors": set(HALF_B)}
    assert (lease_a, lease_b) == (instance_a.encode(), instance_b.encode())

    # Announcements: every namespace's on its own subject, from its owner, each version once.
    heard = Counter((m.subject, json.loads(m.data)["data"]["pattern_id"]) for m in learned)
    heard_namespaces = {SUBJECTS.parse(subject)[1] for subject, _ in heard}  # type: ignore[index]
    assert heard_namespaces == set(FOUR)
    versions = Counter(
        (json.loads(m.data)["data"]["pattern_id"], json.loads(m.data)["data"]["version"])
        for m in learned
    )
    assert set(versions.values()) == {1}
    announced_a = {s for s in published_a if s.startswith("memory.pattern.learned.")}
    announced_b = {s for s in published_b if s.startswith("memory.pattern.learned.")}
    assert announced_a == {f"memory.pattern.learned.{ns}" for ns in HALF_A}
    assert announced_b == {f"memory.pattern.learned.{ns}" for ns in HALF_B}

    async with running(a, nc, dir_a):
        # B away: what its tenants publish meanwhile is caught up by B restarted as a process.
        for namespace in HALF_B:
            await _publish(nc, stream, _events(namespace, 5, start=200), v1=False)
            expected[namespace] += 5
        process = _serve(settings, dir_b, HALF_B)
        try:
            for namespace in HALF_B:
                await _eventually(lambda ns=namespace: _caught_up(nc, settings, ns))  # type: ignore[misc]
                assert (await _served(settings, namespace))["executions"] == expected[namespace]
            process.send_signal(signal.SIGKILL)  # no drain, no lease release
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

        # B killed: its tenants have no responder; A's are fully served and still projected.
        for namespace in HALF_B:
            with pytest.raises(EngineUnavailableError, match="no engine"):
                await _served(settings, namespace)
        for namespace in FOUR:
            await _publish(nc, stream, _events(namespace, 3, start=300), v1=namespace == "beta")
            expected[namespace] += 3
        for namespace in HALF_A:
            await _eventually(lambda ns=namespace: _caught_up(nc, settings, ns))  # type: ignore[misc]
            got = await _served(settings, namespace)
            assert got["task_types"] == {f"{namespace}_task"}
            assert got["executions"] == expected[namespace]

        # B restarted in-process on its data directory: it catches up, with its tenants only.
        async with running(b, nc, dir_b) as engine_b:
            await settle(engine_b)
            for namespace in HALF_B:
                got = await _served(settings, namespace)
                assert got["executions"] == expected[namespace]
                assert got["task_types"] == {f"{namespace}_task"}
            assert _holds(engine_b) == {"tables": set(HALF_B), "vectors": set(HALF_B)}


async def test_engines_owning_the_same_set_form_a_queue_group(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Two engines owning alpha and beta (and one owning gamma) on one stream: each request on
    ``engram.query.alpha.status`` is answered exactly once, by one or the other of the two
    (both answer some), never by gamma's engine; the two hold one lease between them."""
    stream = settings.stream.name
    pair = settings.model_copy(update={"namespaces": HALF_A})
    other = settings.model_copy(update={"namespaces": ("gamma",)})
    await _publish(nc, stream, _events("alpha", 4) + _events("gamma", 4), v1=False)
    async with (
        running(pair, nc, tmp_path / "one") as one,
        running(pair, nc, tmp_path / "two") as two,
        running(other, nc, tmp_path / "gamma") as third,
    ):
        for engine in (one, two, third):
            await settle(engine)
        subject = settings.stream.service.tenant_query("alpha", "status")
        answered_by: Counter[str] = Counter()
        replies_per_request: list[int] = []
        for i in range(24):
            inbox = f"_INBOX.split.{i}"
            async with _listening(nc, inbox) as replies:
                await nc.publish(subject, b"{}", reply=inbox)

                async def answered(replies: list[Msg] = replies) -> bool:
                    return bool(replies)

                await _eventually(answered, timeout_s=10.0)  # however loaded the machine
                await asyncio.sleep(0.2)  # room for a second, wrong, reply
            replies_per_request.append(len(replies))
            for reply in replies:
                answered_by[json.loads(reply.data)["instance"]] += 1
        kv = await nc.jetstream().key_value(BUCKET)
        holder = (await kv.get(lease_key(stream, HALF_A))).value
        pair_instances = {one.instance, two.instance}
        third_instance = third.instance

    assert replies_per_request == [1] * 24
    assert set(answered_by) == pair_instances  # both members answer, gamma's never
    assert third_instance not in answered_by
    assert holder is not None and holder.decode() in pair_instances


async def test_a_data_directory_of_another_set_is_refused(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """An engine started on a data directory whose projections hold another namespace set
    refuses to run (its checkpoint would skip the new tenants' earlier events) instead of
    silently serving the wrong tenants."""
    await _publish(nc, settings.stream.name, _events("alpha", 3), v1=False)
    half = settings.model_copy(update={"namespaces": HALF_A})
    async with running(half, nc, tmp_path / "d") as engine:
        await settle(engine)
    other = settings.model_copy(update={"namespaces": ("alpha", "gamma")})
    with pytest.raises(Exception, match="holds the projections of namespaces alpha, beta"):
        async with running(other, nc, tmp_path / "d"):
            await asyncio.sleep(2)
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(settings.stream.name + "_DLQ")


async def test_snapshots_of_a_set_hold_its_tenants_and_restore_into_its_engines_only(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """``take_snapshot`` with namespaces alpha, beta holds their events only, under an id and
    in a bucket naming the set; a new engine owning that set starts from it (its tables hold
    alpha and beta), one owning delta and gamma, or every namespace, does not (and replays)."""
    from consumers.snapshotting import default_store, snapshot_id_for, take_snapshot
    from consumers.tenants import set_key

    stream = settings.stream.name
    for namespace in FOUR:
        await _publish(nc, stream, _events(namespace, 6), v1=namespace == "gamma")
    half = settings.model_copy(update={"namespaces": HALF_A, "data_dir": tmp_path / "snap"})
    store = default_store(nc.jetstream(), half)
    manifest = await take_snapshot(nc, half, store)
    assert manifest.snapshot_id == snapshot_id_for(manifest.sequence, HALF_A)
    assert store.bucket == f"{stream}_SNAPSHOTS_{set_key(HALF_A)}"
    assert await default_store(nc.jetstream(), settings).snapshot_ids() == []

    async with running(half, nc, tmp_path / "a") as owner:
        await settle(owner)
        restored_by_owner = owner.restored_from
        holds_owner = _holds(owner)
    other = settings.model_copy(update={"namespaces": HALF_B})
    async with running(other, nc, tmp_path / "b") as stranger:
        await settle(stranger)
        restored_by_stranger = stranger.restored_from
        holds_stranger = _holds(stranger)
    async with running(settings, nc, tmp_path / "all") as everyone:
        await settle(everyone)
        restored_by_all = everyone.restored_from
        holds_all = _holds(everyone)

    assert restored_by_owner == manifest.snapshot_id
    assert holds_owner == {"tables": set(HALF_A), "vectors": set(HALF_A)}
    assert (restored_by_stranger, restored_by_all) == (None, None)
    assert holds_stranger == {"tables": set(HALF_B), "vectors": set(HALF_B)}
    assert holds_all == {"tables": set(FOUR), "vectors": set(FOUR)}
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(f"OBJ_{store.bucket}")
