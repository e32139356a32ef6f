"""Recall on LoCoMo (issue 13): the evidence turns a running engine's search finds, for each
search mode and embedder, against a plain Okapi BM25 over the same turns; and search latency.

Usage::

    .venv/bin/python bench/bench_recall.py                      # every dev conversation
    .venv/bin/python bench/bench_recall.py --conversations 2 --embedders hashing
    .venv/bin/python bench/bench_recall.py --json > recall.json

One run:

1. reads the LoCoMo conversations from ``--data`` (``../shared/data/locomo-dev.zip`` beside the
   repository; read in place, never copied): every turn of every session, and the questions of
   categories 1-4 whose evidence names at least one turn (evidence split on ``;`` and ``,``;
   ids that point nowhere are dropped, see ``recall_metrics``);
2. per embedder (``--embedders``; default: the default embedder, ``hashing``, then every other
   registered embedder that can be built here, e.g. ``minilm`` with the semantic extra), on one
   embedded nats-server (or ``--nats-url``): a fresh stream and data directory, and an
   in-process ``engram.app.Engine`` (default ``Settings`` but the data directory, the
   stream, the embedder and snapshots off); publishes every turn
   through ``MemoryClient.publish_many`` as one ``task.executed`` in a namespace per
   conversation (``locomo-<file stem>``), ``execution_summary`` = ``"<speaker>: <text>"``,
   ``task_id`` = the turn's dia_id, so each hit maps back to its turn; waits until every
   projection has applied the stream and it is quiet;
3. times the search verb's handler alone for every question (the engine's verbs over the same
   projections, in-process, no NATS, recording nothing);
4. from a ``MemoryClient`` in a process of its own, asks every question with ``top_k`` 10 in
   its conversation's namespace, once per mode (``hybrid``, ``vector``, ``lexical`` when the SDK's
   ``search_similar`` has a ``mode`` parameter; else the one search there is, reported as
   ``vector``), timing each call (publish of the request to the decoded reply);
5. scores the client's answers: recall@5 and recall@10 of the question's evidence turns and the
   reciprocal rank of the first evidence turn, averaged over questions; the BM25 baseline
   (k1 1.5, b 0.75, lower-cased alphanumeric tokens) is scored on the same questions in the same
   run, with its own in-process time per question.

Why ``task.executed``: its ``execution_summary`` is indexed verbatim and a hit carries the
``task_id``, so the dia_id comes back with every hit; ``knowledge.added`` would index
``title + "\\n" + content`` (the title's words become searchable text) and its hits carry no
publisher id. ``success`` is true and ``task_type`` is ``conversation`` for every turn; no
filter is used.

With ``--nats-url`` the server must be a scratch one: the stream ``--stream`` (subjects
``memory.>``) is deleted and created again per embedder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from bench_queries import Figures, catch_up, direct_dispatcher
from nats.js.errors import NotFoundError
from recall_metrics import Bm25, Conversation, Question, Scores, conversation_of, score

from engine.client import MemoryClient
from engine.errors import EmbedderUnavailableError, EngramError
from engine.events import TaskExecuted, make_event
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engram.app import Engine
from projections.embedders.registry import DEFAULT_EMBEDDER, get_embedder, known_embedders

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "locomo-dev.zip"
TOP_K = 10
P99_TARGET_MS = 15.0
"""Issue 13: search p99 at most 15 ms with the default install at this size."""


def note(message: str) -> None:
    """Progress on stderr, so ``--json`` leaves stdout to the result."""
    print(message, file=sys.stderr, flush=True)


def load(path: Path, limit: int | None) -> list[Conversation]:
    """The conversations of the zip (one JSON object per ``*.json`` member), sorted by name."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".json"))
        if limit is not None:
            names = names[:limit]
        return [conversation_of(Path(n).stem, json.loads(archive.read(n))) for n in names]


def namespace_of(conversation: Conversation) -> str:
    return f"locomo-{conversation.name}"


def has_modes() -> bool:
    """Whether the SDK's search takes ``mode`` (hybrid search has landed)."""
    return "mode" in inspect.signature(MemoryClient.search_similar).parameters


def available(embedder: str) -> bool:
    """Whether ``embedder`` can be built here (its optional packages are installed)."""
    try:
        get_embedder(embedder)
    except EmbedderUnavailableError:
        return False
    return True


def default_embedders() -> list[str]:
    """The default install's embedder, hashing, then every other registered one available."""
    names = dict.fromkeys([DEFAULT_EMBEDDER, "hashing", *known_embedders()])
    return [n for n in names if available(n)]


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


# -- the baseline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    """One row: a search (mode and embedder, or the baseline) scored and timed."""

    name: str
    embedder: str
    scores: Scores
    client: Figures | None
    handler: Figures | None

    def to_json(self) -> dict[str, Any]:
        def latency(f: Figures | None) -> dict[str, float] | None:
            if f is None:
                return None
            return {"p50_ms": round(f.p50, 3), "p99_ms": round(f.pct(0.99), 3),
                    "mean_ms": round(f.mean, 3), "calls": len(f.samples_ms)}  # fmt: skip

        return {
            "mode": self.name,
            "embedder": self.embedder,
            **self.scores.to_json(),
            "client_latency": latency(self.client),
            "handler_latency": latency(self.handler),
        }


def baseline(conversations: Sequence[Conversation]) -> Measured:
    """BM25 over each conversation's turns, scored like the engine; timed per question."""
    results: list[tuple[Question, list[str]]] = []
    samples: list[float] = []
    for c in conversations:
        index = Bm25([t.memory_text for t in c.turns])
        for question in c.questions:
            start = time.perf_counter()
            ranked = index.rank(question.text, TOP_K)
            samples.append((time.perf_counter() - start) * 1e3)
            results.append((question, [c.turns[i].dia_id for i in ranked]))
    return Measured("bm25", "-", score(results), None, Figures("bm25", tuple(samples)))


# -- the engine side ------------------------------------------------------------------------


def turn_events(conversation: Conversation) -> list[Any]:
    namespace = namespace_of(conversation)
    return [
        make_event(
            TaskExecuted(
                task_id=turn.dia_id,
                execution_summary=turn.memory_text,
                success=True,
                task_type="conversation",
                metadata={"dia_id": turn.dia_id, "conversation": conversation.name},
            ),
            namespace=namespace,
            occurred_at=turn.occurred_at,
            # Deterministic: a retried run stores each turn once.
            event_id=f"{namespace}-{turn.dia_id}",
        )
        for turn in conversation.turns
    ]


def requests(conversations: Sequence[Conversation]) -> list[tuple[str, str]]:
    """(namespace, question) of every measured question, in order."""
    return [(namespace_of(c), q.text) for c in conversations for q in c.questions]


def search_payload(namespace: str, text: str, mode: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"namespace": namespace, "text": text, "top_k": TOP_K}
    if mode is not None:
        payload["mode"] = mode
    return payload


def ranked_ids(hits: Sequence[Any]) -> list[str]:
    """dia_ids of the hits, best first (``task_id`` of a SearchHit or of a hit dict)."""
    found = []
    for hit in hits:
        task_id = hit["task_id"] if isinstance(hit, dict) else hit.task_id
        if task_id is not None:
            found.append(str(task_id))
    return found


@dataclass(frozen=True, slots=True)
class ClientJob:
    """What the searching client needs (picklable: it runs in another process)."""

    url: str
    stream: str
    asks: tuple[tuple[str, str], ...]
    modes: tuple[str | None, ...]
    warmup: int


async def client_phase(job: ClientJob) -> dict[str | None, tuple[list[list[str]], list[float]]]:
    """Per mode: the ranked dia_ids of every question and each call's time in ms."""
    settings = Settings(nats=NatsSettings(url=job.url), stream=StreamSettings(name=job.stream))
    found: dict[str | None, tuple[list[list[str]], list[float]]] = {}
    async with MemoryClient(settings=settings, ensure_stream=False) as memory:

        async def ask(namespace: str, text: str, mode: str | None) -> list[Any]:
            if mode is None:
                return await memory.search_similar(text, top_k=TOP_K, namespace=namespace)
            options: dict[str, Any] = {"mode": mode}  # only when the SDK has it
            return await memory.search_similar(text, top_k=TOP_K, namespace=namespace, **options)

        for mode in job.modes:
            for namespace, text in job.asks[: job.warmup]:
                await ask(namespace, text, mode)
            rankings, samples = [], []
            for namespace, text in job.asks:
                start = time.perf_counter()
                hits = await ask(namespace, text, mode)
                samples.append((time.perf_counter() - start) * 1e3)
                rankings.append(ranked_ids(hits))
            found[mode] = (rankings, samples)
    return found


def client_process(job: ClientJob) -> dict[str | None, tuple[list[list[str]], list[float]]]:
    configure_logging(level="warning")
    return asyncio.run(client_phase(job))


async def running(engine: Engine, task: asyncio.Task[None], limit_s: float = 120.0) -> None:
    """Wait until the engine has created the stream and opened its projections."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if task.done():
            task.result()  # raises what stopped it
            raise SystemExit("the engine stopped before it was running")
        with contextlib.suppress(EngramError):
            engine.set  # noqa: B018 - raises until the projections are open
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"the engine was not running after {limit_s:.0f} s")


async def measure_embedder(
    args: argparse.Namespace,
    url: str,
    tmp: Path,
    embedder: str,
    conversations: Sequence[Conversation],
    modes: tuple[str | None, ...],
) -> list[Measured]:
    stream = StreamSettings(name=args.stream)
    settings = Settings(
        data_dir=tmp / f"engine-{embedder}",
        nats=NatsSettings(url=url),
        stream=stream,
        embedder=embedder,
        snapshot_every_events=0,
        snapshot_every_s=0.0,
    )
    engine_nc = await nats.connect(url, name="engram-bench-recall-engine")
    stop = asyncio.Event()
    engine_task: asyncio.Task[None] | None = None
    try:
        with contextlib.suppress(NotFoundError):
            await engine_nc.jetstream().delete_stream(args.stream)
        engine = Engine(settings, engine_nc, url)
        started = time.perf_counter()
        engine_task = asyncio.create_task(engine.run(stop))
        await running(engine, engine_task)

        client_settings = Settings(nats=NatsSettings(url=url), stream=stream)
        async with MemoryClient(settings=client_settings, ensure_stream=False) as memory:
            events = [e for c in conversations for e in turn_events(c)]
            report = await memory.publish_many(events)
        if report.rejected:
            first = next(r for r in report.results if isinstance(r, Exception))
            raise SystemExit(f"{report.rejected} of {len(events)} turns not stored: {first}")
        last = max(s for s in report.sequences if s is not None)
        await catch_up(engine, last, args.max_project_s)
        note(f"[{embedder}] {len(events):,} turns stored and projected in "
             f"{time.perf_counter() - started:.1f} s "
             f"({len(engine.set.vectors.memories):,} memories indexed)")  # fmt: skip

        asks = requests(conversations)
        direct = direct_dispatcher(engine.set)
        handlers: dict[str | None, Figures] = {}
        for mode in modes:
            samples = []
            for namespace, text in asks:
                start = time.perf_counter()
                await direct.handle("search", search_payload(namespace, text, mode))
                samples.append((time.perf_counter() - start) * 1e3)
            handlers[mode] = Figures(f"{mode}", tuple(samples))

        job = ClientJob(url, args.stream, tuple(asks), modes, args.warmup)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            loop = asyncio.get_running_loop()
            answers = await loop.run_in_executor(pool, client_process, job)

        questions = [q for c in conversations for q in c.questions]
        measured = []
        for mode in modes:
            rankings, samples = answers[mode]
            measured.append(
                Measured(
                    mode or "vector",
                    embedder,
                    score(zip(questions, rankings, strict=True)),
                    Figures(f"{mode}", tuple(samples)),
                    handlers[mode],
                )
            )
            note(f"[{embedder}] {mode or 'vector'}: recall@10 {measured[-1].scores.recall_10:.3f}")
        return measured
    finally:
        stop.set()
        if engine_task is not None:
            await engine_task
        with contextlib.suppress(Exception):
            await engine_nc.jetstream().delete_stream(args.stream)
        await engine_nc.drain()


# -- output ---------------------------------------------------------------------------------


def latency_cell(f: Figures | None) -> str:
    return "-" if f is None else f"{f.p50:.2f} / {f.pct(0.99):.2f}"


def table(rows: Sequence[Measured], base: Measured) -> str:
    lines = [
        "| search | embedder | recall@5 | recall@10 | MRR | recall@10 - BM25 | "
        "client p50 / p99 ms | handler p50 / p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in (*rows, base):
        s = m.scores
        delta = s.recall_10 - base.scores.recall_10
        lines.append(
            f"| {m.name} | {m.embedder} | {s.recall_5:.3f} | {s.recall_10:.3f} | {s.mrr:.3f} | "
            f"{delta:+.3f} | {latency_cell(m.client)} | {latency_cell(m.handler)} |"
        )
    return "\n".join(lines)


def category_table(rows: Sequence[Measured], base: Measured) -> str:
    from recall_metrics import CATEGORIES

    head = " | ".join(CATEGORIES.values())
    lines = [f"| search | embedder | {head} |", "|---|---|" + "---:|" * len(CATEGORIES)]
    for m in (*rows, base):
        cells = " | ".join(
            f"{m.scores.by_category[c]:.3f}" if c in m.scores.by_category else "-"
            for c in CATEGORIES
        )
        lines.append(f"| {m.name} | {m.embedder} | {cells} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    conversations = load(args.data, args.conversations)
    modes: tuple[str | None, ...] = ("hybrid", "vector", "lexical") if has_modes() else (None,)
    embedders = args.embedders or default_embedders()
    base = baseline(conversations)
    rows: list[Measured] = []
    load_before = os.getloadavg()[0]
    for embedder in embedders:
        rows += await measure_embedder(args, url, tmp, embedder, conversations, modes)
    return {
        "data": str(args.data),
        "conversations": [c.name for c in conversations],
        "turns": sum(len(c.turns) for c in conversations),
        "questions": sum(len(c.questions) for c in conversations),
        "questions_without_evidence": sum(c.skipped for c in conversations),
        "dangling_evidence_ids": sum(c.dangling for c in conversations),
        "mode_parameter": has_modes(),
        "top_k": TOP_K,
        "machine": machine(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
        "baseline": base,
    }


def report(result: dict[str, Any]) -> str:
    rows, base = result["rows"], result["baseline"]
    default = next(
        (m for m in rows if m.embedder == DEFAULT_EMBEDDER and m.name in ("hybrid", "vector")), None
    )
    lines = [
        f"LoCoMo {', '.join(result['conversations'])}: {result['turns']:,} turns, "
        f"{result['questions']:,} questions of categories 1-4 "
        f"({result['questions_without_evidence']} without evidence left out, "
        f"{result['dangling_evidence_ids']} evidence ids pointing nowhere dropped); top_k "
        f"{result['top_k']}; search modes "
        f"{'hybrid, vector, lexical' if result['mode_parameter'] else 'none yet (vector only)'}",
        f"{result['machine']}; 1-minute load average {result['load_average'][0]:.2f} before, "
        f"{result['load_average'][1]:.2f} after",
        "",
        table(rows, base),
        "",
        "recall@10 by category:",
        "",
        category_table(rows, base),
    ]
    if default is not None:
        p99 = default.client.pct(0.99) if default.client else float("nan")
        verdict = "met" if p99 <= P99_TARGET_MS else "MISSED"
        lines += [
            "",
            f"default search ({default.name}, {default.embedder}) client p99 {p99:.2f} ms: "
            f"target <= {P99_TARGET_MS:.0f} ms {verdict}",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the LoCoMo zip (../shared/data/locomo-dev.zip)")  # fmt: skip
    parser.add_argument("--conversations", type=int, default=None,
                        help="only the first N conversations (by file name)")  # fmt: skip
    parser.add_argument("--embedders", type=lambda s: [e.strip() for e in s.split(",") if e],
                        help="comma-separated (the default embedder, hashing, then every "
                             "other one installed)")  # fmt: skip
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per mode (20)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON (the tables go to stderr)")  # fmt: skip
    parser.add_argument("--max-project-s", type=float, default=1_800.0,
                        help="give up when projections are not caught up by then")  # fmt: skip
    parser.add_argument("--nats-url", help="use this (scratch) server instead of an embedded one")
    parser.add_argument("--stream", default="ENGRAM_BENCH_RECALL", help="stream to (re)create")
    args = parser.parse_args(argv)
    unknown = set(args.embedders or ()) - set(known_embedders())
    if unknown:
        parser.error(f"unknown embedders {sorted(unknown)}; known: {list(known_embedders())}")
    if not args.data.is_file():
        parser.error(f"no LoCoMo data at {args.data} (see --data)")
    configure_logging(level="warning")
    # catch_up prints its progress: to stderr, so stdout holds the result alone.
    with (
        contextlib.redirect_stdout(sys.stderr),
        tempfile.TemporaryDirectory(prefix="engram-bench-recall-") as tmp,
    ):
        if args.nats_url:
            result = asyncio.run(run(args, args.nats_url, Path(tmp)))
        else:
            with EmbeddedServer(Path(tmp) / "nats") as server:
                result = asyncio.run(run(args, server.url, Path(tmp)))
    if args.json:
        out = {**result, "rows": [m.to_json() for m in result["rows"]],
               "baseline": result["baseline"].to_json()}  # fmt: skip
        print(json.dumps(out, indent=2))
        note(report(result))  # the tables too, on stderr
    else:
        print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
