"""``engram stream apply`` says each limit it kept once: in its own output, not again as a log
warning (``engram serve``, which has no output of its own, still logs it)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from tests.cli_runs import engram


async def test_a_kept_limit_is_reported_once(
    nc: NatsClient, nats_url: str, stream_name: str, tmp_path: Path
) -> None:
    """Applying a lower duplicate window to a stream with a higher one: the text output names
    the kept limit on one line and stderr is silent about it; with --json it is only in the
    JSON's ``kept``."""
    conn = ["--nats-url", nats_url, "--stream", stream_name, "--data-dir", str(tmp_path / "d")]
    try:
        created = await engram("stream", "apply", "--duplicate-window", "600", *conn, cwd=tmp_path)
        assert created.code == 0, created.err

        text = await engram("stream", "apply", "--duplicate-window", "60", *conn, cwd=tmp_path)
        assert text.code == 0, text.err
        both = text.out + text.err
        assert both.count("duplicate_window") == 2  # the kept line and the configuration table
        kept = [line for line in text.out.splitlines() if line.lstrip().startswith("kept ")]
        assert kept == [
            "  kept duplicate_window: existing 600 s, wanted 60 s "
            "(--allow-stream-downgrade lowers it)"
        ]
        assert "kept" not in text.err

        as_json = await engram(
            "stream", "apply", "--duplicate-window", "60", "--json", *conn, cwd=tmp_path
        )
        assert as_json.code == 0, as_json.err
        assert as_json.json()["kept"] == {"duplicate_window": {"existing": 600.0, "wanted": 60.0}}
        assert as_json.err == ""
    finally:
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(stream_name)
