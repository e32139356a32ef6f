"""Running the ``engram`` CLI as a real subprocess, the way a user does, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["ENGRAM", "REPO", "Run", "cli_env", "engram"]

ENGRAM = [sys.executable, "-m", "engram.cli.main"]
REPO = Path(__file__).resolve().parent.parent


class Run(NamedTuple):
    """One finished ``engram`` process (unpacks as ``code, out, err``)."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def cli_env() -> dict[str, str]:
    """The caller's environment without ENGRAM_* (flags decide, not the developer's shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PYTHONPATH"] = str(REPO)
    return env


async def engram(*args: str | Path, cwd: Path) -> Run:
    """Run ``engram ARGS`` to completion in ``cwd`` (so ./engram-data never lands in the repo);
    killed after 60 s."""
    proc = await asyncio.create_subprocess_exec(
        *ENGRAM,
        *map(str, args),
        cwd=cwd,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
