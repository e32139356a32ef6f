"""Log backups: backup, verify and restore throughput against raw nats-py reads and publishes.

Usage::

    .venv/bin/python bench/bench_backup.py                  # embedded nats-server, 100,000 events
    .venv/bin/python bench/bench_backup.py --n 20000 --rounds 1
    .venv/bin/python bench/bench_backup.py --nats-url nats://127.0.0.1:4222

One run fills a fresh stream with ``--n`` events shaped like agent sessions
(``bench_projection.fill``: ``EventLog.append_many``, so every message carries its
``Nats-Msg-Id`` and ``Nats-Expected-Stream`` headers), then measures over the same messages:

(1) raw read: an ephemeral pull consumer without acks fetching batches of 5,000 until the last
    sequence, touching each body: the floor for reading the stream with nats-py;
(2) backup: ``take_backup`` (a full one, 64 MB segments) into a fresh directory: the same kind
    of read, plus headers and nanosecond timestamps kept, zstd Parquet segments, SHA-256, the
    manifest; the bytes on disk against the stream's;
(3) verify: ``verify_backup`` (every checksum, every segment decoded and checked);
(4) raw publish: the same subjects, bodies and headers published into a second stream with
    nats-py's ``js.publish_async`` (at most 2,000 acks pending), awaited to the last ack;
(5) restore: ``restore_backup`` of the backup into a second stream (another subject prefix):
    verification first, then the pipelined publishing with every ack checked, then the final
    configuration update.

Each of (1)..(5) runs ``--rounds`` times; the best run counts. With ``--nats-url`` the server
must be a scratch one: the streams ``--stream`` (``memory.>``) and ``<stream>_R``
(``restored.memory.>``) are deleted and created again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bench_projection import Timed, best, fill
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.errors import NotFoundError

from consumers.backup import restore_backup, take_backup, verify_backup
from consumers.backup.verify import read_segment
from engine.connection import connect
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog

RESTORED_PREFIX = "restored.memory"


async def timed(work: Callable[[], Awaitable[int]]) -> Timed:
    cpu, start = time.process_time(), time.perf_counter()
    messages = await work()
    return Timed(time.perf_counter() - start, time.process_time() - cpu, messages)


async def raw_read(nc: NatsClient, stream: str, last_seq: int) -> int:
    js = nc.jetstream(timeout=5.0)
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        mem_storage=True,
        inactive_threshold=60.0,
    )
    sub = await js.pull_subscribe("memory.>", stream=stream, config=config)
    received = body_bytes = 0
    seen = 0
    while seen < last_seq:
        msgs = await sub.fetch(5_000, timeout=2.0)
        for msg in msgs:
            body_bytes += len(msg.data)
        received += len(msgs)
        seen = msgs[-1].metadata.sequence.stream
    info = await sub.consumer_info()
    await sub.unsubscribe()
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(stream, info.name)
    return received


async def raw_publish(
    nc: NatsClient, stream: str, messages: Sequence[tuple[str, bytes, dict[str, str]]]
) -> int:
    js = nc.jetstream(timeout=5.0, publish_async_max_pending=2_000)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(stream)
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{RESTORED_PREFIX}.>"]))
    futures = [
        await js.publish_async(
            f"{RESTORED_PREFIX}.{subject[len('memory.') :]}",
            body,
            headers={k: v for k, v in headers.items() if k != "Nats-Expected-Stream"},
        )
        for subject, body, headers in messages
    ]
    await js.publish_async_completed()
    failed = sum(1 for f in futures if f.exception() is not None)
    if failed:
        raise SystemExit(f"raw publish: {failed} failed")
    return len(futures)


async def bench(args: argparse.Namespace, url: str, tmp: Path) -> None:
    settings = Settings(
        data_dir=tmp / "data", nats=NatsSettings(url=url), stream=StreamSettings(name=args.stream)
    )
    restored_name = args.stream + "_R"
    nc = await connect(NatsSettings(), url)
    try:
        log = EventLog(nc, settings.stream)
        fill_start = time.perf_counter()
        last_seq, stream_bytes = await fill(log, args.n, args.seed)
        print(
            f"filled {args.n:,} events ({stream_bytes:,} bytes stored) in "
            f"{time.perf_counter() - fill_start:.1f}s"
        )
        js = nc.jetstream(timeout=5.0)
        reads, backups, verifies, publishes, restores = [], [], [], [], []
        directory = tmp / "backup"
        for _ in range(args.rounds):
            reads.append(await timed(lambda: raw_read(nc, args.stream, last_seq)))
            shutil.rmtree(directory, ignore_errors=True)

            async def backup() -> int:
                result = await take_backup(js, settings, directory)
                assert result.run is not None
                return result.run.messages

            backups.append(await timed(backup))

            async def verify() -> int:
                report = await asyncio.to_thread(verify_backup, directory)
                assert report.ok, report.problems
                return report.messages_checked

            verifies.append(await timed(verify))
        manifest_segments = verify_backup(directory).manifest
        assert manifest_segments is not None
        disk = sum(s.size for s in manifest_segments.segments)
        raw = sum(s.raw_bytes for s in manifest_segments.segments)
        messages = [
            (m.subject, m.data, dict(m.headers))
            for s in manifest_segments.segments
            for m in read_segment(directory, s).messages()
        ]
        for _ in range(args.rounds):
            publishes.append(await timed(lambda: raw_publish(nc, restored_name, messages)))

            async def restore() -> int:
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(restored_name)
                report = await restore_backup(
                    nc, settings, directory, stream=restored_name, subject_prefix=RESTORED_PREFIX
                )
                return report.messages

            restores.append(await timed(restore))
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(restored_name)
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(args.stream)
    finally:
        await nc.drain()

    def line(label: str, run: Timed, floor: Timed | None = None) -> str:
        ratio = f"  {run.seconds / floor.seconds:5.2f}x the raw time" if floor else ""
        return (
            f"  {label:<34} {run.seconds:7.2f}s {run.rate:>10,.0f} msg/s "
            f"{run.cpu_us:6.1f} us CPU/msg{ratio}"
        )

    read, taken, checked = best(reads), best(backups), best(verifies)
    published, restored = best(publishes), best(restores)
    print(f"{args.n:,} events, best of {args.rounds}:")
    print(line("raw nats-py read (pull, no acks)", read))
    print(line("engram backup (full)", taken, read))
    print(line("engram backup verify", checked))
    print(line("raw nats-py publish_async", published))
    print(line("engram restore (verify + publish)", restored, published))
    print(
        f"  backup size: {disk:,} bytes in {len(manifest_segments.segments)} segments, "
        f"{raw / disk:.1f}x smaller than the raw messages ({raw:,} bytes), "
        f"{stream_bytes / disk:.1f}x smaller than the stream's store ({stream_bytes:,} bytes)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="events in the stream (100,000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each step, best counts (3)")
    parser.add_argument("--nats-url", help="use this (scratch) server instead of an embedded one")
    parser.add_argument("--stream", default="ENGRAM_BENCH_BACKUP", help="stream to (re)create")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    configure_logging(json=False, level="warning")
    with tempfile.TemporaryDirectory(prefix="engram-bench-backup-") as tmp:
        if args.nats_url:
            asyncio.run(bench(args, args.nats_url, Path(tmp)))
            return 0
        with EmbeddedServer(Path(tmp) / "nats") as server:
            asyncio.run(bench(args, server.url, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
