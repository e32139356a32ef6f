"""The semantic cache (issue 16, point 4): ``cache.put`` / ``cache.evicted`` events, a projection
holding the cached prompts per namespace, and ``cache_lookup``.

In process (the projection alone, a deterministic embedder): the threshold's boundary, expiry in
event time per namespace, replacement and removal, a purge's forgetting down to the saved files,
a reopen built by another embedder. Against a real nats-server and engine: a paraphrase above
and below the default threshold, read-your-writes, expiry (a later event's time evicts; a lookup
past ``expires_at`` misses), replay and restart equal to the live state, tenants kept apart, a
purge, the status counts, and bad input named by field.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from nats.aio.client import Client as NatsClient

from consumers.purge import purge_namespace
from consumers.replay import replay
from consumers.snapshotting import restore_latest, take_snapshot
from engine import MemoryClient
from engine.errors import InvalidEventError, UsageError
from engine.events import WorkflowExecuted, make_event
from engine.events.cache import CacheEvicted, CachePut
from engine.settings import Settings
from engine.stream import EventLog
from engram.app import Engine
from projections.cache import SemanticCache, state_digest
from projections.embedders import HashingEmbedder
from projections.projection_set import open_projections
from projections.records import SequencedEvent
from projections.snapshots.stores import DirectorySnapshots
from tests.cli_runs import engram
from tests.engines import running, settle
from tests.states import clean_replay_state
from tests.strategies.events import purge_of

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PROMPT = "How do I rotate the billing service credentials?"
PARAPHRASE = "how do I rotate the billing credentials"
UNRELATED = "What is the capital of France?"


class TableEmbedder:
    """A deterministic embedder for the tests: each prompt's 2-d vector is given."""

    name = "table-2"
    dimension = 2

    def __init__(self, vectors: dict[str, tuple[float, float]]) -> None:
        self.vectors = vectors

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = np.asarray([self.vectors[t] for t in texts], dtype=np.float32).reshape(-1, 2)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _at_cosine(cosine: float) -> tuple[float, float]:
    """The unit 2-d vector whose cosine with (1, 0) is ``cosine``."""
    return cosine, math.sqrt(1 - cosine * cosine)


def _item(sequence: int, data: Any, seconds: float, namespace: str = "default") -> SequencedEvent:
    when = T0 + timedelta(seconds=seconds)
    event = make_event(
        data, namespace=namespace, agent_id="a", occurred_at=when, event_id=f"e-{sequence}"
    )
    return SequencedEvent(sequence, when, event)


def _put(prompt: str, ttl: float = 60.0, **fields: Any) -> CachePut:
    return CachePut(prompt=prompt, response=f"answer to {prompt}", ttl=ttl, **fields)


def _other() -> WorkflowExecuted:
    return WorkflowExecuted(workflow_steps=["plan"], success=True, duration=1.0)


def _apply(cache: SemanticCache, *items: SequencedEvent) -> None:
    cache.apply(list(items), [], items[-1].sequence)


# -- the projection alone ------------------------------------------------------------------------


def test_a_hit_needs_the_threshold_exactly() -> None:
    """With vectors at known cosines from the cached prompt's: 0.85 is a hit at the threshold
    0.85 (similarity reported 0.85), 0.849 a miss that still names the nearest prompt and its
    similarity, and a hit at the threshold 0.849; the cached prompt itself scores exactly 1."""
    embedder = TableEmbedder(
        {"cached": (1.0, 0.0), "at": _at_cosine(0.85), "under": _at_cosine(0.849)}
    )
    cache = SemanticCache(None, embedder)
    _apply(cache, _item(1, _put("cached"), 0))
    moment = T0.timestamp()
    at = cache.lookup("default", "at", at=moment, threshold=0.85)
    assert (at["hit"], at["similarity"], at["response"]) == (True, 0.85, "answer to cached")
    under = cache.lookup("default", "under", at=moment, threshold=0.85)
    assert (under["hit"], under["similarity"], under["prompt"]) == (False, 0.849, "cached")
    assert under["response"] is None and under["expires_at"] is None
    assert cache.lookup("default", "under", at=moment, threshold=0.849)["hit"] is True
    same = cache.lookup("default", "cached", at=moment, threshold=1.0)
    assert (same["hit"], same["similarity"]) == (True, 1.0)
    assert same["cached_at"] == T0.isoformat()
    assert same["expires_at"] == (T0 + timedelta(seconds=60)).isoformat()


def test_the_same_prompt_hits_whatever_the_vectors_say() -> None:
    """The cached prompt asked again (case and spacing aside) is a hit of similarity 1 found
    without the graph walk: here the embedder gives the two spellings orthogonal vectors. A
    lookup naming another model, or judged after expiry, does not take that shortcut."""
    embedder = TableEmbedder({"Cached  prompt": (1.0, 0.0), "cached prompt": (0.0, 1.0)})
    cache = SemanticCache(None, embedder)
    _apply(cache, _item(1, _put("Cached  prompt", model="m1"), 0))
    moment = T0.timestamp()
    again = cache.lookup("default", "cached prompt", at=moment, threshold=0.85)
    assert (again["hit"], again["similarity"], again["prompt"]) == (True, 1.0, "Cached  prompt")
    other = cache.lookup("default", "cached prompt", at=moment, threshold=0.85, model="m2")
    assert other["hit"] is False
    late = cache.lookup("default", "cached prompt", at=moment + 61, threshold=0.85)
    assert late["hit"] is False


def test_expiry_follows_each_namespaces_event_time() -> None:
    """A put with ttl 10 stays while its namespace's events are at most 10 s later (another
    namespace's later events change nothing), and is evicted by the first event of its
    namespace past ``expires_at``; a lookup judged past ``expires_at`` misses even before that
    (the entry is still held); a put already expired by the namespace's clock is evicted as it
    arrives."""
    cache = SemanticCache(None, HashingEmbedder(dimension=32))
    _apply(cache, _item(1, _put(PROMPT, ttl=10), 0, "alpha"))
    _apply(cache, _item(2, _other(), 500, "beta"), _item(3, _other(), 10, "alpha"))
    assert cache.stats()["alpha"] == {
        "entries": 1,
        "puts": 1,
        "replaced": 0,
        "expired": 0,
        "removed": 0,
    }
    alive = T0.timestamp() + 10
    assert cache.lookup("alpha", PROMPT, at=alive, threshold=0.85)["hit"] is True
    assert cache.lookup("alpha", PROMPT, at=alive + 0.5, threshold=0.85)["hit"] is False
    _apply(cache, _item(4, _other(), 10.5, "alpha"))
    assert cache.stats()["alpha"]["entries"] == 0 and cache.stats()["alpha"]["expired"] == 1
    assert cache.lookup("alpha", PROMPT, at=T0.timestamp(), threshold=0.85)["similarity"] is None
    _apply(cache, _item(5, _put(UNRELATED, ttl=5), 1, "alpha"))  # 1 + 5 < the clock (10.5)
    assert cache.stats()["alpha"] == {
        "entries": 0,
        "puts": 2,
        "replaced": 0,
        "expired": 2,
        "removed": 0,
    }


def test_a_newer_put_replaces_and_an_eviction_removes() -> None:
    """The same prompt (case and spacing aside) and model: the newer put replaces the older;
    another model's put of it is an entry of its own, and a lookup naming a model sees only
    its entries; ``cache.evicted`` removes one entry, a repeat of it (or of a put: the same
    envelope id) changes nothing."""
    cache = SemanticCache(None, HashingEmbedder(dimension=32))
    first = _item(1, _put(PROMPT), 0)
    _apply(
        cache,
        first,
        _item(2, CachePut(prompt=PROMPT.upper() + "  ", response={"v": 2}, ttl=60), 1),
        _item(3, CachePut(prompt=PROMPT, response="from m1", ttl=60, model="m1"), 2),
    )
    moment = T0.timestamp() + 3
    assert cache.lookup("default", PROMPT, at=moment, threshold=0.85, model="m1")["response"] == (
        "from m1"
    )
    assert cache.stats()["default"] == {
        "entries": 2,
        "puts": 3,
        "replaced": 1,
        "expired": 0,
        "removed": 0,
    }
    repeat = SequencedEvent(5, first.stored_at, first.event)  # the same envelope id again
    _apply(cache, _item(4, CacheEvicted(prompt=PROMPT.lower()), 3), repeat)
    assert cache.lookup("default", PROMPT, at=moment, threshold=0.85)["response"] == "from m1"
    assert cache.lookup("default", PROMPT, at=moment, threshold=0.85, model="m2")["hit"] is False
    assert cache.stats()["default"]["removed"] == 1 and cache.duplicates_seen() == 1


def test_evicted_nodes_are_compacted_away_the_same_in_any_batching() -> None:
    """1,300 puts of which 1,200 expire: once the graph's deleted nodes pass COMPACT_AT and
    outnumber the live ones it is rebuilt from the live vectors (no deleted node left); applied
    in one batch or in batches of 7, the state and the lookups' answers are the same."""
    from projections.cache.prompt_index import COMPACT_AT

    items = [
        _item(
            i + 1,
            _put(f"prompt number {i} about topic {i % 37}", ttl=5 if i < 1_200 else 10_000),
            i,
        )
        for i in range(1_300)
    ]
    items.append(_item(1_301, _other(), 2_000))
    whole, split = (SemanticCache(None, HashingEmbedder(dimension=32)) for _ in range(2))
    _apply(whole, *items)
    for start in range(0, len(items), 7):
        _apply(split, *items[start : start + 7])
    for cache in (whole, split):
        index = cache.state.namespaces["default"].index
        assert index is not None and index.live == 100
        assert index.deleted < COMPACT_AT  # compacted at least once on the way
        assert cache.stats()["default"]["expired"] == 1_200
    assert whole.read(state_digest) == split.read(state_digest)
    moment = T0.timestamp() + 2_000
    for i in (1_200, 1_250, 1_299, 5):
        prompt = f"prompt number {i} about topic {i % 37}"
        answers = [c.lookup("default", prompt, at=moment, threshold=0.85) for c in (whole, split)]
        assert answers[0] == answers[1]
        assert (answers[0]["prompt"] == prompt) is (i >= 1_200)  # the evicted one is gone


def _files(directory: Path) -> list[bytes]:
    bodies = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        body = path.read_bytes()
        bodies.append(gzip.decompress(body) if path.name.endswith(".gz") else body)
    return bodies


def test_a_purge_forgets_the_tenant_down_to_the_saved_files(tmp_path: Path) -> None:
    """Saved with alpha's and beta's entries; after beta's ``namespace.purged`` and a save, no
    cache file holds beta's prompt or response or names beta, alpha's entries answer as
    before, and beta's later puts start it afresh; reopened, the state is the same."""
    secret = "zebra quartz beta secret prompt"
    cache = SemanticCache(tmp_path, HashingEmbedder(dimension=32))
    _apply(
        cache,
        _item(1, _put(PROMPT), 0, "alpha"),
        _item(2, _put(secret), 0, "beta"),
        _item(3, _other(), 1, "beta"),
    )
    cache.flush()
    assert any(b"zebra quartz" in body for body in _files(tmp_path))
    purge = make_event(purge_of("beta"), namespace="beta", occurred_at=T0, event_id="purge")
    _apply(cache, SequencedEvent(4, T0, purge))
    cache.flush()
    assert not any(b"zebra quartz" in body for body in _files(tmp_path))
    assert not any("beta" in p.name for p in tmp_path.iterdir())
    assert cache.lookup("beta", secret, at=T0.timestamp(), threshold=0.5)["similarity"] is None
    assert cache.lookup("alpha", PARAPHRASE, at=T0.timestamp(), threshold=0.85)["hit"] is True
    _apply(cache, _item(5, _put(secret), 2, "beta"))
    assert cache.stats()["beta"] == {
        "entries": 1,
        "puts": 1,
        "replaced": 0,
        "expired": 0,
        "removed": 0,
    }
    before = cache.read(state_digest)
    cache.close()
    reopened = SemanticCache(tmp_path, HashingEmbedder(dimension=32))
    assert reopened.read(state_digest) == before and reopened.checkpoint() == 5


def test_a_cache_saved_by_another_embedder_is_embedded_again(tmp_path: Path) -> None:
    """Reopened with another embedder (a reindex since), the saved prompts are embedded again:
    the entries are kept and found with the new embedder's vectors."""
    cache = SemanticCache(tmp_path, HashingEmbedder(dimension=32))
    _apply(cache, _item(1, _put(PROMPT), 0), _item(2, _put(UNRELATED), 0))
    cache.close()
    manifest = json.loads((tmp_path / "cache-manifest.json").read_text())
    reopened = SemanticCache(tmp_path, HashingEmbedder(dimension=64))
    assert (manifest["embedder"], manifest["dimension"]) == ("hashing", 32)
    assert reopened.stats()["default"]["entries"] == 2
    hit = reopened.lookup("default", PARAPHRASE, at=T0.timestamp(), threshold=0.85)
    assert hit["hit"] is True and hit["prompt"] == PROMPT
    reopened.close()
    assert json.loads((tmp_path / "cache-manifest.json").read_text())["dimension"] == 64


# -- against a real engine -----------------------------------------------------------------------


async def _serving(engine: Engine) -> None:
    """Until the engine answers queries and its projections are caught up."""
    async with asyncio.timeout(30):
        while engine.dispatcher is None:
            await asyncio.sleep(0.02)
    await settle(engine)


async def _stats(engine: Engine) -> dict[str, Any]:
    status = await engine.status()
    cache = status["cache"]
    assert isinstance(cache, dict)
    return cache


async def test_a_paraphrase_hits_above_the_threshold_and_misses_below(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Over NATS: a put, then (with its sequence as min_sequence) a paraphrase sharing most
    words hits with the cached response and its times; an unrelated prompt misses, naming the
    nearest prompt and its similarity; with a threshold above the paraphrase's similarity it
    misses; ``engram cache-lookup`` finds it too; ``status`` (the SDK's and ``engram
    status``'s text) counts the lookups, hits and hit rate."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha") as memory,
    ):
        await _serving(engine)
        seq = await memory.cache_put(
            PROMPT, {"steps": ["vault rotate", "redeploy"]}, ttl=3600, model="m1"
        )
        hit = await memory.cache_lookup(PARAPHRASE, min_sequence=seq)
        assert hit.hit and hit.similarity is not None and 0.85 <= hit.similarity < 1
        assert hit.response == {"steps": ["vault rotate", "redeploy"]}
        assert (hit.prompt, hit.model, hit.threshold) == (PROMPT, "m1", 0.85)
        assert hit.cached_at is not None and hit.expires_at == hit.cached_at + timedelta(hours=1)
        assert memory.last_read is not None and memory.last_read.sequence >= seq
        miss = await memory.cache_lookup(UNRELATED)
        assert not miss.hit and miss.response is None and miss.prompt == PROMPT
        assert miss.similarity is not None and miss.similarity < 0.85
        strict = await memory.cache_lookup(PARAPHRASE, threshold=min(1.0, hit.similarity + 0.01))
        assert not strict.hit and strict.similarity == hit.similarity
        cache = (await memory.status()).cache
        assert cache is not None
        assert (cache.lookups, cache.hits, cache.hit_rate) == (3, 1, round(1 / 3, 4))
        assert (cache.entries, cache.puts, cache.evictions) == (1, 1, 0)
        assert cache.namespaces is not None and cache.namespaces["alpha"]["hits"] == 1
        connection = ["--nats-url", settings.nats.url, "--stream", settings.stream.name]
        run = await engram(
            "cache-lookup", PARAPHRASE, "--namespace", "alpha", *connection, "--json", cwd=tmp_path
        )
        assert run.code == 0, run.err
        assert run.json()["hit"] is True and run.json()["response"]["steps"][0] == "vault rotate"
        status = await engram("status", *connection, cwd=tmp_path)
        assert status.code == 0, status.err
        assert "1 entries, 1 puts, 0 evictions" in status.out
        assert "4 lookups, 2 hits (hit rate 50.0%): counted by this engine" in status.out


async def test_read_your_writes_always_hits(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Twenty puts of new prompts, each looked up at once with the put's sequence as
    min_sequence: every lookup hits the prompt just cached (never stale)."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha") as memory,
    ):
        await _serving(engine)
        for i in range(20):
            prompt = f"deploy service number {i} to the staging cluster"
            seq = await memory.cache_put(prompt, f"runbook {i}", ttl=600)
            found = await memory.cache_lookup(prompt, min_sequence=seq)
            assert found.hit and found.response == f"runbook {i}", i
            assert memory.last_read is not None and not memory.last_read.stale


async def test_expiry_in_event_time_and_replay_and_restart_equal_live(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A put with ttl 3600: a lookup now hits; one judged past expires_at (``at``) misses
    while the entry is still held; an event of the namespace stamped past expires_at evicts
    it (status: 0 entries, 1 expired) and a lookup now misses. A replay of the stream into a
    new directory, and the engine restarted on its own, hold the same cache state."""
    now = datetime.now(UTC)
    data_dir = tmp_path / "engine"
    async with (
        running(settings, nc, data_dir) as engine,
        MemoryClient(settings=settings, namespace="alpha") as memory,
    ):
        await _serving(engine)
        seq = await memory.cache_put(PROMPT, "use vault", ttl=3600, occurred_at=now)
        assert (await memory.cache_lookup(PROMPT, min_sequence=seq)).hit
        late = await memory.ask(
            "cache_lookup", {"prompt": PROMPT, "at": (now + timedelta(seconds=3601)).isoformat()}
        )
        assert late.reply.hit is False  # type: ignore[attr-defined]
        assert (await _stats(engine))["entries"] == 1
        await memory.store_workflow(
            workflow_steps=["plan"],
            success=True,
            duration=1.0,
            occurred_at=now + timedelta(seconds=3601),
        )
        await settle(engine)
        stats = await _stats(engine)
        assert (stats["entries"], stats["expired"], stats["evictions"]) == (0, 1, 1)
        assert not (await memory.cache_lookup(PROMPT)).hit
        await memory.cache_put(UNRELATED, "Paris", ttl=7200, occurred_at=now + timedelta(hours=1))
        await settle(engine)
        live = engine.set.cache.read(state_digest)
    replayed = await clean_replay_state(nc.jetstream(), settings, tmp_path / "replay")
    assert replayed["cache"] == live
    async with running(settings, nc, data_dir) as engine:
        await settle(engine)
        assert engine.set.cache.read(state_digest) == live
        assert (await _stats(engine))["lookups"] == 0  # runtime counts start again


async def test_a_snapshot_and_its_tail_restore_the_live_cache(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A snapshot taken with cached entries holds the cache's files; a new data directory
    restored from it, then replaying only the tail (a put, a removal and a later event that
    evicts an entry), has the live engine's cache state and answers the same lookup."""
    now = datetime.now(UTC)
    store = DirectorySnapshots(tmp_path / "snapshots")
    operator = settings.model_copy(update={"data_dir": tmp_path / "operator"})
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha") as memory,
    ):
        await _serving(engine)
        await memory.cache_put(PROMPT, "use vault", ttl=600, occurred_at=now)
        await memory.cache_put(UNRELATED, "Paris", ttl=60, occurred_at=now)
        taken = await take_snapshot(nc, operator, store)
        assert any(name.startswith("cache/cache-index-alpha") for name in taken.files)
        await memory.cache_put("deploy the api to staging", "make deploy", ttl=600)
        await memory.cache_evict(PROMPT)
        await memory.store_workflow(
            workflow_steps=["plan"],
            success=True,
            duration=1.0,
            occurred_at=now + timedelta(seconds=61),
        )
        await settle(engine)
        live = engine.set.cache.read(state_digest)
        assert engine.set.cache.stats()["alpha"]["expired"] == 1
    target = settings.model_copy(update={"data_dir": tmp_path / "restored"})
    restored = await restore_latest(nc.jetstream(), target, store, target.data_dir)
    assert restored is not None and restored.sequence == taken.sequence
    projections = open_projections(target)
    try:
        assert projections.cache.checkpoint() == taken.sequence
        await replay(nc.jetstream(), settings.stream.name, projections.persistent)
        assert projections.cache.read(state_digest) == live
        found = projections.cache.lookup(
            "alpha", "deploy the api to staging", at=now.timestamp(), threshold=0.85
        )
        assert found["response"] == "make deploy"
    finally:
        projections.close()


async def test_tenants_never_answer_each_other_and_a_purge_removes_one(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """alpha's cached prompt answers alpha and never beta (beta's lookup of the very prompt
    finds nothing); beta's own entry answers beta. ``engram purge`` of beta: beta's cache is
    gone from the running engine, alpha's answers as before."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha") as alpha,
        MemoryClient(settings=settings, namespace="beta") as beta,
    ):
        await _serving(engine)
        seq = await alpha.cache_put(PROMPT, "alpha's answer", ttl=600)
        assert (await alpha.cache_lookup(PROMPT, min_sequence=seq)).response == "alpha's answer"
        nothing = await beta.cache_lookup(PROMPT, min_sequence=seq)
        assert not nothing.hit and nothing.similarity is None and nothing.prompt is None
        seq = await beta.cache_put(UNRELATED, "beta's answer", ttl=600)
        assert (await beta.cache_lookup(UNRELATED, min_sequence=seq)).response == "beta's answer"
        assert not (await alpha.cache_lookup(UNRELATED)).hit
        await settle(engine)
        await purge_namespace(nc, settings, "beta", "erasure")
        await settle(engine)
        assert "beta" not in engine.set.cache.stats()
        assert engine.set.cache.read(lambda s: s.holds("beta")) is True  # the purge's own id
        gone = await beta.cache_lookup(UNRELATED)
        assert not gone.hit and gone.similarity is None
        assert (await alpha.cache_lookup(PARAPHRASE)).response == "alpha's answer"


async def test_bad_input_is_refused_naming_the_field(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """The SDK refuses a blank prompt, a ttl of 0, a negative one, one above a year and a null
    response before sending, naming the field; a lookup with an empty prompt or a threshold of
    0 is a usage error naming it; a malformed put published by a plain client (ttl -1) is a dead
    letter: the cache never holds it."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, namespace="alpha") as memory,
    ):
        await _serving(engine)
        for field, call in [
            ("prompt", memory.cache_put("  ", "x")),
            ("ttl", memory.cache_put(PROMPT, "x", ttl=0)),
            ("ttl", memory.cache_put(PROMPT, "x", ttl=-5)),
            ("ttl", memory.cache_put(PROMPT, "x", ttl=10 * 366 * 86400)),
            ("response", memory.cache_put(PROMPT, None)),
        ]:
            with pytest.raises(InvalidEventError, match=field):
                await call
        with pytest.raises(UsageError, match="prompt is required"):
            await memory.cache_lookup("")
        with pytest.raises(UsageError, match="threshold"):
            await memory.cache_lookup(PROMPT, threshold=0)
        reply = await nc.request(
            "engram.query.alpha.cache_lookup", json.dumps({"prompt": PROMPT, "at": "soon"}).encode()
        )
        assert json.loads(reply.data)["kind"] == "usage" and "at" in json.loads(reply.data)["error"]
        body = {
            "id": "bad-put",
            "type": "cache.put",
            "schema_version": 1,
            "namespace": "alpha",
            "occurred_at": T0.isoformat(),
            "data": {"prompt": PROMPT, "response": "x", "ttl": -1},
        }
        ack = await event_log.js.publish("memory.cache.put.alpha", json.dumps(body).encode())
        await settle(engine)
        assert engine.set.cache.checkpoint() <= ack.seq
        assert "alpha" not in engine.set.cache.stats()
        assert (await engine.status())["projections"]["cache"]["lag"] == 0
