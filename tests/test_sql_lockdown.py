"""``engram sql`` changes nothing and reaches no file or network, over NATS and with --data-dir,
and over NATS it is an operator verb that is off unless the engine is told otherwise.

The attack table runs with the text check (``ensure_read_only``) switched off: the guarantee is
the sandbox's, not the check's. State is compared whole: every table's content hash (checkpoints
included), the catalog (tables, views, macros, sequences, types, indexes, databases, secrets) and
every global setting of the engine's DuckDB instance; over --data-dir the database file's bytes.
No file may appear outside.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from consumers.queries import readers
from engine import MemoryClient
from engine.connection import connect
from engine.errors import QueryError, UsageError
from engine.query_client import query_remote
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine
from engram.cli.main import build_parser
from engram.local_queries import query_local
from projections.tables import DATABASE_FILE, connect_database
from projections.tables.digest import table_digests
from projections.tables.store import TableStore
from tests.cli_runs import engram
from tests.engines import running, settle
from tests.query_subjects import raw_subject

# Each statement tries to change the engine's state or to write outside; {outside} is a
# directory of the test's own (absolute, so nothing can land in the working directory).
ATTACKS = [
    "WITH x AS (DELETE FROM workflows RETURNING *) SELECT count(*) FROM x",
    "WITH x AS (UPDATE checkpoints SET sequence = 999999 RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO checkpoints VALUES ('intruder', 1, NULL) RETURNING *) SELECT * FROM x",
    "DELETE FROM workflows",
    "UPDATE checkpoints SET sequence = 999999",
    "INSERT INTO checkpoints VALUES ('intruder', 1, NULL)",
    "TRUNCATE knowledge",
    "DROP TABLE workflows",
    "ALTER TABLE workflows RENAME TO gone",
    "COMMENT ON TABLE workflows IS 'owned'",
    "CREATE OR REPLACE VIEW task_metrics AS SELECT 1 AS hijacked",
    "CREATE TABLE intruder AS SELECT * FROM workflows",
    "CREATE MACRO intruder() AS 42",
    "CREATE SEQUENCE intruder",
    "CREATE TYPE intruder AS ENUM ('a', 'b')",
    "CREATE INDEX intruder ON workflows (agent_id)",
    "CREATE SECRET intruder (TYPE s3, KEY_ID 'k', SECRET 's')",
    "SELECT 1; DELETE FROM workflows",
    "BEGIN; UPDATE checkpoints SET sequence = 0; COMMIT",
    "SET GLOBAL TimeZone = 'America/New_York'",
    "SET GLOBAL enable_external_access = false",
    "SET GLOBAL lock_configuration = true",
    "PRAGMA threads = 1",
    "SET GLOBAL memory_limit = '64MB'",
    "CALL pragma_version(); DROP TABLE checkpoints",
    "FORCE CHECKPOINT",
    "COPY workflows TO '{outside}/stolen.csv'",
    "COPY (SELECT * FROM knowledge) TO '{outside}/stolen.parquet' (FORMAT parquet)",
    "ATTACH '{outside}/side.duckdb' AS side",
    "ATTACH '{outside}/side.duckdb' AS side; CREATE TABLE side.t AS SELECT * FROM workflows",
    "EXPORT DATABASE '{outside}/dump'",
    "INSTALL httpfs FROM '{outside}'",
    "SELECT * FROM query('SELECT count(*) FROM workflows')",
]

# Each statement tries to read a file of the host or the network; {outside} holds secret files.
READS = [
    "SELECT * FROM read_text('{outside}/secret.txt')",
    "SELECT * FROM read_csv_auto('{outside}/secret.csv')",
    "SELECT * FROM read_csv('{outside}/secret.csv')",
    "SELECT * FROM read_blob('{outside}/secret.txt')",
    "SELECT * FROM glob('{outside}/*')",
    "SELECT * FROM read_parquet('{outside}/secret.parquet')",
    "SELECT * FROM '{outside}/secret.parquet'",
    "SELECT * FROM read_json_auto('{outside}/secret.json')",
    "SELECT * FROM sniff_csv('{outside}/secret.csv')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_csv_auto('https://example.com/engram.csv')",
]

SECRET = "engram-host-secret-7f3a"

_CATALOG = {
    "tables": "SELECT database_name, schema_name, table_name, comment, sql FROM duckdb_tables()",
    "views": "SELECT database_name, view_name, sql FROM duckdb_views() WHERE NOT internal",
    "functions": "SELECT database_name, function_name FROM duckdb_functions() WHERE NOT internal",
    "sequences": "SELECT database_name, sequence_name FROM duckdb_sequences()",
    "types": "SELECT database_name, type_name FROM duckdb_types() WHERE NOT internal",
    "indexes": "SELECT database_name, index_name, sql FROM duckdb_indexes()",
    "databases": "SELECT database_name, path, readonly FROM duckdb_databases()",
    "secrets": "SELECT name FROM duckdb_secrets()",
    "settings": "SELECT name, value FROM duckdb_settings()",
}


def engine_state(cursor: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Everything a statement could change in a DuckDB instance, from a fresh cursor."""
    state: dict[str, Any] = {"rows": table_digests(cursor)}
    for name, sql in _CATALOG.items():
        state[name] = sorted(map(repr, cursor.execute(sql).fetchall()))
    return state


def file_state(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def write_secrets(outside: Path) -> None:
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text(SECRET + "\n")
    (outside / "secret.csv").write_text(f"token\n{SECRET}\n")
    (outside / "secret.json").write_text(json.dumps({"token": SECRET}))
    pq.write_table(pa.table({"token": [SECRET]}), outside / "secret.parquet")


@pytest.fixture
def no_text_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch off the friendly text check: whatever it would refuse reaches the sandbox."""
    monkeypatch.setattr(readers, "ensure_read_only", lambda cursor, sql: None)


# -- over NATS, against a running engine --------------------------------------------------


@dataclass
class Served:
    engine: Engine
    nc: NatsClient
    settings: Settings
    outside: Path
    baseline: dict[str, Any]

    def state(self) -> dict[str, Any]:
        return engine_state(self.engine.set.store.reader())


async def _publish_history(memory: MemoryClient) -> None:
    for i, namespace in enumerate(["alpha", "alpha", "beta", "alpha", "beta"]):
        await memory.store_workflow(
            task_type="deployment",
            workflow_steps=["plan", "ship"],
            success=i % 2 == 0,
            duration=float(i + 1),
            namespace=namespace,
        )
    await memory.store_execution(task_id="t-1", execution_summary="shipped", success=True)
    await memory.log_decision(
        decision_id="d-1", actor="planner", decision="use canary", rationale="safer"
    )
    await memory.add_knowledge(kind="procedure", title="Release", content="build, test, ship")


@contextlib.asynccontextmanager
async def _served_engine(
    server: EmbeddedServer, base: Path, name: str, *, query_sql: bool
) -> AsyncIterator[Served]:
    settings = Settings(
        data_dir=base / "data",
        nats=NatsSettings(url=server.url),
        stream=StreamSettings(name=name),
        query_sql=query_sql,
    )
    outside = base / "outside"
    write_secrets(outside)
    nc = await connect(NatsSettings(), server.url)
    log = EventLog(nc, settings.stream)
    await log.ensure()
    try:
        async with running(settings, nc, settings.data_dir) as engine:
            async with MemoryClient(settings=settings) as memory:
                await _publish_history(memory)
            await settle(engine)
            served = Served(engine, nc, settings, outside, {})
            served.baseline = served.state()
            yield served
    finally:
        for stream in (name, name + "_DLQ"):
            with contextlib.suppress(NotFoundError):
                await log.js.delete_stream(stream)
        await nc.drain()


async def _ask(served: Served, verb: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The engine's raw reply (an error reply included) over NATS request-reply."""
    msg = await served.nc.request(
        raw_subject(verb, payload), json.dumps(payload).encode(), timeout=20
    )
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


@pytest.fixture(scope="class")
async def served(
    nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    """One engine with sql enabled, for a whole class of tests."""
    base = tmp_path_factory.mktemp("sql-over-nats")
    async with _served_engine(nats_server, base, "T_sql_lockdown", query_sql=True) as s:
        yield s


@pytest.mark.slow
class TestOverNats:
    """One engine with sql enabled serves every attack; its state is compared to the state it
    had before the first one (so damage done by any attack fails every later case too)."""

    @pytest.mark.parametrize("attack", ATTACKS)
    async def test_an_attack_changes_nothing(
        self, served: Served, no_text_check: None, attack: str
    ) -> None:
        """Whatever the statement, the engine's tables, catalog and settings stay as they were
        and no file is written outside."""
        await _ask(served, "sql", {"sql": attack.format(outside=served.outside)})
        assert served.state() == served.baseline
        assert sorted(p.name for p in served.outside.iterdir()) == sorted(
            ["secret.txt", "secret.csv", "secret.json", "secret.parquet"]
        )

    @pytest.mark.parametrize("read", READS)
    async def test_sql_cannot_read_files_or_the_network(self, served: Served, read: str) -> None:
        """A statement reading a host file or a URL is refused, saying why; no secret leaks."""
        reply = await _ask(served, "sql", {"sql": read.format(outside=served.outside)})
        assert SECRET not in json.dumps(reply)
        assert reply.get("kind") == "usage", reply
        assert "cannot read or write files, reach the network" in reply["error"]

    async def test_the_issues_reproductions_through_the_cli(
        self, served: Served, tmp_path: Path
    ) -> None:
        """``engram sql --nats-url`` with the issue's data-modifying CTEs: nothing deleted, the
        checkpoint not moved; the ordinary query still answers from the engine's tables."""
        conn = ["--nats-url", served.settings.nats.url or "", "--stream"]
        conn += [served.settings.stream.name, "--data-dir", str(tmp_path / "none")]
        for attack in (
            "WITH x AS (DELETE FROM workflows RETURNING *) SELECT count(*) FROM x",
            "WITH x AS (UPDATE checkpoints SET sequence = 999999 RETURNING *) "
            "SELECT count(*) FROM x",
        ):
            run = await engram("sql", attack, *conn, cwd=tmp_path)
            assert run.code == 2, (run.out, run.err)
            assert served.state() == served.baseline
        counted = await engram(
            "sql", "SELECT count(*) AS n FROM workflows", "--json", *conn, cwd=tmp_path
        )
        assert counted.code == 0, counted.err
        assert counted.json()["rows"] == [{"n": 5}]

    async def test_the_engine_still_projects_afterwards(self, served: Served) -> None:
        """After every attack the engine applies new events as before (run last)."""
        async with MemoryClient(settings=served.settings) as memory:
            await memory.store_workflow(
                task_type="deployment", workflow_steps=["plan"], success=True, duration=1.0
            )
        await settle(served.engine)
        reply = await _ask(served, "sql", {"sql": "SELECT count(*) AS n FROM workflows"})
        assert reply["rows"] == [{"n": 6}]
        status = await served.engine.status()
        assert status["projections"]["tables"]["lag"] == 0


@pytest.mark.slow
async def test_sql_over_nats_is_off_unless_enabled(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    """An engine with default settings refuses sql over NATS, saying how to enable it; its
    other verbs answer; the same directory read with --data-dir answers sql once it is free."""
    async with _served_engine(nats_server, tmp_path, "T_sql_off", query_sql=False) as served:
        reply = await _ask(served, "sql", {"sql": "SELECT count(*) AS n FROM workflows"})
        assert reply.get("kind") == "forbidden", reply
        assert "--enable-sql" in reply["error"] and "ENGRAM_QUERY_SQL=true" in reply["error"]
        with pytest.raises(QueryError, match="off on this engine"):
            await query_remote(served.nc, "sql", {"sql": "SELECT 1"})
        assert (await _ask(served, "checkpoints", {}))["checkpoints"]["tables"] >= 8
        data_dir = served.settings.data_dir
    local = await query_local(data_dir, "sql", {"sql": "SELECT count(*) AS n FROM workflows"})
    assert local["rows"] == [{"n": 5}]


def test_sql_is_enabled_by_setting_or_serve_flag() -> None:
    """ENGRAM_QUERY_SQL=true and ``engram serve --enable-sql`` turn sql on; it is off by default."""
    assert Settings().query_sql is False
    assert Settings.load({"ENGRAM_QUERY_SQL": "true"}).query_sql is True
    assert build_parser().parse_args(["serve", "--enable-sql"]).enable_sql is True
    assert not build_parser().parse_args(["serve"]).enable_sql


# -- with --data-dir, on one's own machine --------------------------------------------------


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed data directory with rows in several tables and a checkpoint."""
    data_dir = tmp_path_factory.mktemp("sql-template") / "data"
    store = TableStore.open(data_dir)
    db = store.reader()
    db.execute(
        "INSERT INTO workflows SELECT range, 'e' || range, 'default', TIMESTAMPTZ '2026-01-01', "
        "NULL, NULL, 'deployment', false, NULL, ['plan'], 'plan', range % 2 = 0, 1.0, NULL, "
        "NULL FROM range(1, 6)"
    )
    db.execute(
        "INSERT INTO knowledge VALUES ('default', 'k-1', 6, 'e6', TIMESTAMPTZ '2026-01-01', "
        "NULL, NULL, 'procedure', 'Release', 'build, test, ship', [], NULL)"
    )
    db.execute("INSERT INTO checkpoints VALUES ('tables', 6, NULL)")
    db.close()
    store.close()
    return data_dir


@pytest.fixture
def data_dir(template_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template for one test (no attack sees another's damage)."""
    target = tmp_path / "data"
    shutil.copytree(template_dir, target)
    return target


@pytest.mark.parametrize("attack", ATTACKS)
async def test_an_attack_with_data_dir_changes_nothing(
    data_dir: Path, tmp_path: Path, no_text_check: None, attack: str
) -> None:
    """Read from a directory, no statement changes the database file or writes a file."""
    outside = tmp_path / "outside"
    write_secrets(outside)
    before, secrets = file_state(data_dir), file_state(outside)
    with contextlib.suppress(UsageError, QueryError):
        await query_local(data_dir, "sql", {"sql": attack.format(outside=outside)})
    assert file_state(data_dir) == before
    assert file_state(outside) == secrets
    connection = connect_database(data_dir / DATABASE_FILE, read_only=True)
    try:
        rows = connection.execute("SELECT projection, sequence FROM checkpoints").fetchall()
        assert rows == [("tables", 6)]
    finally:
        connection.close()


@pytest.mark.parametrize("read", READS)
async def test_sql_with_data_dir_cannot_read_files(
    data_dir: Path, tmp_path: Path, read: str
) -> None:
    """Even on one's own machine, user SQL reads the tables and nothing else."""
    outside = tmp_path / "outside"
    write_secrets(outside)
    with pytest.raises(UsageError, match="cannot read or write files") as refused:
        await query_local(data_dir, "sql", {"sql": read.format(outside=outside)})
    assert SECRET not in str(refused.value)


async def test_engram_sql_data_dir_answers_and_refuses(data_dir: Path, tmp_path: Path) -> None:
    """``engram sql --data-dir`` answers a query, refuses a file read (exit 2, saying why) and
    leaves the database file as it was after the issue's data-modifying CTE."""
    before = file_state(data_dir)
    ok = await engram(
        "sql", "SELECT count(*) AS n FROM workflows", "--json", "--data-dir", data_dir, cwd=tmp_path
    )
    assert ok.code == 0, ok.err
    assert ok.json()["rows"] == [{"n": 5}]
    cte = "WITH x AS (DELETE FROM workflows RETURNING *) SELECT count(*) FROM x"
    changed = await engram("sql", cte, "--data-dir", data_dir, cwd=tmp_path)
    assert changed.code == 2
    read = await engram(
        "sql", "SELECT * FROM read_text('/etc/hostname')", "--data-dir", data_dir, cwd=tmp_path
    )
    assert read.code == 2 and "cannot read or write files" in read.err
    assert file_state(data_dir) == before


# -- bounded -------------------------------------------------------------------------------


LONG = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"


def test_a_long_statement_is_interrupted(template_dir: Path) -> None:
    """A statement running past its time is stopped with a clear error, promptly; meanwhile
    another one is refused at once (one at a time); the rows returned are capped."""
    connection = connect_database(template_dir / DATABASE_FILE, read_only=True)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            long = pool.submit(readers.run_sql, connection.cursor(), LONG, timeout_s=1.0)
            time.sleep(0.3)
            with pytest.raises(QueryError, match="one at a time"):
                readers.run_sql(connection.cursor(), "SELECT 1")
            with pytest.raises(QueryError, match=r"longer than 1 s"):
                long.result()
        assert time.monotonic() - started < 6
        capped = readers.run_sql(connection.cursor(), "SELECT * FROM range(50)", limit=10)
        assert (len(capped["rows"]), capped["truncated"]) == (10, True)
    finally:
        connection.close()
