"""``export`` over NATS is an operator verb, off unless the engine is told (``--enable-export``,
``ENGRAM_QUERY_EXPORT=true``, see test_query_hardening); when on, a remote export writes only
under the engine's ``<data dir>/exports``, and a path outside it (absolute, with ``..``, through
a symlink) is refused naming the allowed place. Read from ``--data-dir`` on one's own machine,
``engram export --to DIR`` writes DIR wherever it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from nats.aio.client import Client as NatsClient

from consumers.queries.dispatch import EXPORTS_DIR, OperatorAccess, export_target
from engine import MemoryClient
from engine.errors import ForbiddenError, UsageError
from engine.settings import Settings
from engine.stream import EventLog
from projections.tables.store import TableStore
from tests.cli_runs import engram
from tests.engines import running, settle


@pytest.fixture
def remote(tmp_path: Path) -> OperatorAccess:
    """What an engine serving NATS from ``tmp_path/data`` with export enabled allows a client."""
    return OperatorAccess.remote(tmp_path / "data", sql=False, export=True)


@pytest.mark.parametrize(
    "requested",
    [
        "/etc/engram-export",
        "{tmp}/stolen",
        "{tmp}/data",
        "{tmp}/data/exports",
        "{tmp}/data/exports/../escape",
        "../escape",
        "../../escape",
        "nightly/../../escape",
        ".",
        "link/inside-the-link",
    ],
)
def test_a_remote_export_outside_the_export_directory_is_refused(
    remote: OperatorAccess, tmp_path: Path, requested: str
) -> None:
    """Absolute paths elsewhere, ``..`` and a symlink leading out are refused, and the error
    names where a remote export may go."""
    root = tmp_path / "data" / EXPORTS_DIR
    root.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ForbiddenError) as refused:
        export_target(remote, requested.format(tmp=tmp_path))
    assert f"{root.resolve()}/<name>" in str(refused.value)


def test_a_remote_export_goes_under_the_export_directory(
    remote: OperatorAccess, tmp_path: Path
) -> None:
    """A name, a nested name or an absolute path inside the export directory are accepted;
    an empty one is a usage error; a local reader writes where it is told."""
    root = (tmp_path / "data" / EXPORTS_DIR).resolve()
    assert export_target(remote, "nightly") == root / "nightly"
    assert export_target(remote, "2026/11/28") == root / "2026" / "11" / "28"
    assert export_target(remote, str(root / "abs")) == root / "abs"
    with pytest.raises(UsageError, match="empty"):
        export_target(remote, "  ")
    assert export_target(OperatorAccess(local=True), "/anywhere/x") == Path("/anywhere/x")
    with pytest.raises(ForbiddenError):
        export_target(OperatorAccess(), "x")  # a dispatcher told nothing allows nothing
    with pytest.raises(ForbiddenError, match="--enable-export"):  # the engine's default
        export_target(OperatorAccess.remote(tmp_path / "data", sql=True), "x")


async def _ask(nc: NatsClient, payload: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request("engram.query.export", json.dumps(payload).encode(), timeout=20)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


@pytest.mark.slow
async def test_a_running_engine_exports_only_under_its_data_directory(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Over NATS, export enabled: outside paths are refused and nothing is written there; a
    name is written under <data dir>/exports/<name>, also through ``engram export --to NAME``;
    a name the file system refuses is an error reply, not silence."""
    settings = settings.model_copy(update={"query_export": True})
    data_dir = settings.data_dir
    exports = (data_dir / EXPORTS_DIR).resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with running(settings, nc, data_dir) as engine:
        async with MemoryClient(settings=settings) as memory:
            for i in range(3):
                await memory.store_workflow(
                    task_type="deployment", workflow_steps=["plan"], success=True, duration=i
                )
        await settle(engine)
        exports.mkdir(parents=True, exist_ok=True)
        (exports / "link").symlink_to(elsewhere)
        for requested in (str(tmp_path / "stolen"), "../escape", "link/x", str(data_dir)):
            reply = await _ask(nc, {"to": requested})
            assert reply.get("kind") == "forbidden", reply
            assert f"{exports}/<name>" in reply["error"]
        assert not (tmp_path / "stolen").exists()
        reply = await _ask(nc, {"to": "n" * 256})  # over the file system's NAME_MAX (255)
        assert reply.get("kind") in ("usage", "failure"), reply
        assert "too long" in reply["error"], reply
        reply = await _ask(nc, {"to": "n" * 300})
        assert reply.get("kind") == "usage" and "at most 256" in reply["error"], reply
        assert not (data_dir / "escape").exists()
        assert list(elsewhere.iterdir()) == []

        reply = await _ask(nc, {"to": "nightly"})
        assert reply["location"] == str(exports / "nightly")
        manifest = json.loads((exports / "nightly" / "manifest.json").read_text())
        assert manifest["tables"]["workflows"]["rows"] == 3
        workflows = pq.read_table(exports / "nightly" / manifest["tables"]["workflows"]["path"])
        assert workflows.num_rows == 3

        conn = ["--nats-url", str(settings.nats.url), "--stream", settings.stream.name]
        conn += ["--data-dir", str(tmp_path / "no-database-here")]
        code, out, err = await engram("export", "--to", "by-cli", *conn, cwd=tmp_path)
        assert code == 0, err
        assert str(exports / "by-cli") in out
        assert (exports / "by-cli" / "manifest.json").exists()
        code, out, err = await engram(
            "export", "--to", tmp_path / "cli-stolen", *conn, cwd=tmp_path
        )
        assert code == 1 and f"{exports}/<name>" in err
        assert not (tmp_path / "cli-stolen").exists()


async def test_a_local_export_writes_where_it_is_told(tmp_path: Path) -> None:
    """``engram export --to DIR --data-dir D`` on one's own machine writes DIR anywhere."""
    data_dir = tmp_path / "data"
    store = TableStore.open(data_dir)
    store.reader().execute("INSERT INTO checkpoints VALUES ('tables', 4, NULL)")
    store.close()
    target = tmp_path / "elsewhere" / "export"
    code, out, err = await engram(
        "export", "--to", target, "--json", "--data-dir", data_dir, cwd=tmp_path
    )
    assert code == 0, err
    assert json.loads(out)["location"] == str(target)
    assert json.loads((target / "manifest.json").read_text())["sequence"] == 4
