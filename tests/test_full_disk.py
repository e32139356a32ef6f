"""End to end on a real full disk: the engine's data directory on a 30 MB tmpfs that fills up.

Mounting a tmpfs needs root (CI runs as root); elsewhere the test is skipped, saying why. The
injected-fault tests (tests/test_io_faults.py) cover every write point without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from consumers.deadletters import dead_letter_stream_name
from engine.settings import Settings
from engine.stream import EventLog
from tests.engines import running, settle
from tests.faults import ENOSPC_TEXT, leftovers
from tests.histories import realistic_history
from tests.states import clean_replay_state, saved_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 30 MB tmpfs mounted for this test (skipped when it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 30 MB tmpfs needs root (CI runs the suite as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def _fill(path: Path) -> int:
    """Write ``path`` until the disk is full; returns the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as handle:
        for chunk in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    written += handle.write(b"\0" * chunk)
    with (
        pytest.raises(OSError, match=ENOSPC_TEXT) as full,
        (path.parent / "probe").open("wb", buffering=0) as probe,
    ):
        probe.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    return written


async def _dead_letters_published(log: EventLog, settings: Settings) -> int:
    info = await log.js.stream_info(dead_letter_stream_name(settings.stream))
    return int(info.state.messages)


async def test_a_full_data_disk_stalls_the_engine_then_it_catches_up_losing_nothing(
    small_disk: Path, event_log: EventLog, nc: NatsClient, settings: Settings, tmp_path: Path
) -> None:
    """The data directory's disk fills up while events arrive: no valid event becomes a dead
    letter (table or stream), engram status shows the tables projection degraded with 'No space
    left on device'; once space is freed the engine catches up by itself, its state equals a
    clean replay, and no temporary file is left on the disk."""
    settings = settings.model_copy(update={"data_dir": small_disk / "data"})
    async with running(settings, nc, settings.data_dir) as engine:
        await event_log.append_many(realistic_history(0, 500))
        await settle(engine)
        filler = small_disk / "filler"
        _fill(filler)
        await event_log.append_many(realistic_history(500, 1_000))
        async with asyncio.timeout(30):
            while not (await engine.status())["projections"]["tables"]["degraded"]:
                await asyncio.sleep(0.1)
        status = await engine.status()
        tables = status["projections"]["tables"]
        assert ENOSPC_TEXT in tables["reason"], tables["reason"]
        assert tables["lag"] > 0
        assert await _dead_letters_published(event_log, settings) == 0
        await asyncio.sleep(1.0)  # it keeps retrying, and still dead-letters nothing
        assert (await engine.status())["projections"]["tables"]["checkpoint"] == tables[
            "checkpoint"
        ]
        filler.unlink()
        (small_disk / "probe").unlink(missing_ok=True)
        await settle(engine)
        status = await engine.status()
        assert all(not p["degraded"] for p in status["projections"].values())
        letters = engine.set.store.reader().execute("SELECT count(*) FROM dead_letters")
        assert letters.fetchone() == (0,)
    assert await _dead_letters_published(event_log, settings) == 0
    assert leftovers(small_disk) == []
    clean = await clean_replay_state(event_log.js, settings, tmp_path / "clean")
    live = saved_state(settings)
    assert live == clean
    # Every memory event counted once (identical texts, the decisions "go", are one memory).
    assert sum(m["occurrences"] for m in live["memories"].values()) == 1_500 // 10 * 3
