"""Backups of the log (issue 16, point 5), against real nats-servers: full and incremental
backups, verification, restore (whole and point in time) replaying to the original's state,
engine-signed events verifying after a restore, and interrupted backups never taken for whole.

One module-scoped source stream (a realistic history projected by a real engine, so the stream
also holds engine-signed derived events) serves the tests that only read it; its subjects are
``bk.memory.>`` so that the restored streams (other prefixes) and the conftest's ``memory.>``
streams of other modules never overlap on the shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from consumers.backup import (
    BackupCorruptError,
    BackupGapError,
    RestoreRefusedError,
    load_manifest,
    restore_backup,
    take_backup,
    verify_backup,
)
from consumers.backup.manifest import MANIFEST
from consumers.backup.verify import read_segment
from consumers.replay import replay
from consumers.snapshotting import restore_latest, take_snapshot
from engine.connection import connect
from engine.errors import UsageError
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog, ReadRange
from engine.stream.engine_key import signing_key
from engine.subjects import EventSubjects
from engram.auth import plan_users
from engram.cli.auth_verbs import write_authorization
from engram.cli.main import main
from projections.projection_set import open_projections
from projections.snapshots.directory import DirectorySnapshots
from projections.tables import table_digests
from tests.cli_runs import engram
from tests.engines import running, settle
from tests.histories import realistic_history
from tests.servers import authorized_server, credentials
from tests.states import state_of

SOURCE = "BKSRC"
PREFIX = "bk.memory"
SEGMENT = 24_000  # raw bytes per segment: several segments from a small history


@dataclass(frozen=True)
class Source:
    settings: Settings
    nc: NatsClient
    root: Path

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()


def _settings(url: str, root: Path, name: str, prefix: str) -> Settings:
    return Settings(
        data_dir=root / "data",
        nats=NatsSettings(url=url),
        stream=StreamSettings(
            name=name, subject_prefix=prefix, service_prefix=prefix.replace("memory", "engram")
        ),
    )


@pytest.fixture(scope="module")
async def source(
    nats_server: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Source]:
    """A stream with 600 realistic agent events and what a real engine derived from them
    (signed ``pattern.learned``, ``session.compacted`` ...)."""
    root = tmp_path_factory.mktemp("backup-source")
    settings = _settings(nats_server.url, root, SOURCE, PREFIX)
    nc = await connect(NatsSettings(), nats_server.url)
    log = EventLog(nc, settings.stream)
    await log.ensure()
    await log.append_many(realistic_history(0, 600))
    async with running(settings, nc, root / "engine") as engine:
        await settle(engine)
    # An operator's snapshot kept beside the backups (engram snapshot --to DIR): its
    # snapshot.created is in the stream before any backup is taken.
    await take_snapshot(nc, settings, DirectorySnapshots(root / "snapshots"))
    yield Source(settings, nc, root)
    for name in (SOURCE, SOURCE + "_DLQ"):
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_stream(name)
    await nc.drain()


@pytest.fixture(scope="module")
async def full_backup(source: Source) -> Path:
    """A full backup of the source stream, in several segments."""
    directory = source.root / "backup"
    await take_backup(source.js, source.settings, directory, segment_bytes=SEGMENT)
    return directory


@contextlib.asynccontextmanager
async def _streams(js: JetStreamContext, *names: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for name in names:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)


async def _replayed(
    js: JetStreamContext,
    directory: Path,
    stream: str,
    prefix: str,
    until_seq: int | None = None,
    snapshots: Path | None = None,
) -> dict[str, Any]:
    """Every projection rebuilt from ``stream`` (up to ``until_seq``; from the newest valid
    snapshot in ``snapshots`` and the tail, if given), as comparable state: everything a replay
    must reproduce except the stream timestamps a restore cannot keep
    (``checkpoints.stored_at``, ``dead_letters.stored_at``) and the subjects it moved."""
    settings = Settings(data_dir=directory, stream=StreamSettings(name=stream))
    if snapshots is not None:
        restored = await restore_latest(js, settings, DirectorySnapshots(snapshots), directory)
        assert restored is not None, "the snapshot must be valid for the restored stream"
    projections = open_projections(settings)
    try:
        await replay(
            js,
            stream,
            projections.persistent,
            ReadRange(until_seq=until_seq),
            subjects=EventSubjects(prefix),
        )
        state = state_of(projections)
        reader = projections.store.reader()
        state["tables"] = table_digests(reader, exclude=frozenset({"checkpoints", "dead_letters"}))
        state["checkpoints"] = reader.sql(
            "SELECT projection, sequence FROM checkpoints ORDER BY projection"
        ).fetchall()
        state["dead_letters"] = reader.sql(
            "SELECT projection, sequence, kind FROM dead_letters ORDER BY projection, sequence"
        ).fetchall()
        return state
    finally:
        projections.close()


async def test_full_backup_verifies_and_restores_to_the_same_state(
    source: Source, full_backup: Path, tmp_path: Path
) -> None:
    """A full backup holds every message of the stream (signed derived events included) in
    several checksummed segments and verifies; restored beside the original under another
    subject prefix, it has the same sequences, bodies and headers (less Nats-Expected-Stream),
    its engine key comes from the original's record, and a replay of it equals a replay of the
    original: every table, the learner, sessions, vector and lexical memories, search answers,
    and no derived event taken for a forgery."""
    js = source.js
    info = await js.stream_info(SOURCE)
    manifest = load_manifest(full_backup)
    report = verify_backup(full_backup)
    assert report.ok, report.problems
    assert len(manifest.segments) > 2
    assert manifest.messages == report.messages_checked == info.state.messages
    assert (manifest.first_seq, manifest.last_seq) == (1, info.state.last_seq)
    assert manifest.signed > 0, "the engine derived nothing: the test proves nothing of keys"
    assert manifest.engine_key.fingerprint is not None and not manifest.engine_key.included
    assert not (full_backup / "engine-key.json").exists()

    async with _streams(js, "BKNEW1"):
        restored = await restore_backup(
            source.nc, source.settings, full_backup, stream="BKNEW1", subject_prefix="bk1.memory"
        )
        assert (restored.first_seq, restored.last_seq) == (1, info.state.last_seq)
        assert restored.messages == info.state.messages
        assert "original stream's record" in restored.key
        new = await js.stream_info("BKNEW1")
        assert new.state.messages == info.state.messages
        assert new.config.metadata is not None
        assert new.config.metadata["engram.restore"] == "complete"
        assert new.config.duplicate_window == info.config.duplicate_window
        assert new.config.deny_delete and not new.config.deny_purge
        for seq in (1, info.state.last_seq // 2, info.state.last_seq):
            old, copy = await js.get_msg(SOURCE, seq), await js.get_msg("BKNEW1", seq)
            assert copy.data == old.data
            assert copy.subject == "bk1.memory" + (old.subject or "").removeprefix(PREFIX)
            expected = {k: v for k, v in (old.headers or {}).items() if k != "Nats-Expected-Stream"}
            assert copy.headers == expected

        original = await _replayed(js, tmp_path / "a", SOURCE, PREFIX)
        copy_state = await _replayed(js, tmp_path / "b", "BKNEW1", "bk1.memory")
    assert original["dead_letters"] == [], "the original's derived events must verify"
    assert copy_state == original


async def test_point_in_time_restore_equals_the_original_replayed_to_that_point(
    source: Source, full_backup: Path, tmp_path: Path
) -> None:
    """``--until-seq N`` restores exactly sequences up to N, and a replay of it equals the
    original replayed up to N; ``--until TIME`` cuts by the original's stream timestamps (the
    time of message N restores up to N)."""
    js = source.js
    manifest = load_manifest(full_backup)
    cut = manifest.last_seq * 2 // 3
    async with _streams(js, "BKPIT1", "BKPIT2"):
        restored = await restore_backup(
            source.nc,
            source.settings,
            full_backup,
            stream="BKPIT1",
            subject_prefix="bkp1.memory",
            until_seq=cut,
        )
        assert restored.last_seq == cut
        info = await js.stream_info("BKPIT1")
        assert (info.state.first_seq, info.state.last_seq) == (1, cut)
        original = await _replayed(js, tmp_path / "a", SOURCE, PREFIX, until_seq=cut)
        assert await _replayed(js, tmp_path / "b", "BKPIT1", "bkp1.memory") == original

        entry = next(s for s in manifest.segments if s.first_seq <= cut <= s.last_seq)
        content = read_segment(full_backup, entry)
        at_cut = content.at(content.sequences.index(cut)).stored_ns
        from datetime import UTC, datetime

        moment = datetime.fromtimestamp(at_cut // 1_000_000_000, UTC).replace(
            microsecond=(at_cut % 1_000_000_000) // 1_000
        )
        timed = await restore_backup(
            source.nc,
            source.settings,
            full_backup,
            stream="BKPIT2",
            subject_prefix="bkp2.memory",
            until_time=moment,
        )
        assert timed.last_seq == cut


async def test_restore_into_a_fresh_server_with_the_included_key(
    source: Source, tmp_path: Path
) -> None:
    """Disaster recovery: a backup taken with --include-engine-key (the key in clear, mode
    0600, its checksum in the manifest) restores into a fresh server under the original name
    and subjects, and that server's engines verify the restored derived events with the key
    the restore recorded (no forged dead letter; the same state as the original). Since the
    sequences are the original's, a snapshot of the original kept in a directory restores
    onto the restored stream, and it plus the tail equals the full replay."""
    directory = tmp_path / "with-key"
    await take_backup(source.js, source.settings, directory, include_engine_key=True)
    key_file = directory / "engine-key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_manifest(directory).engine_key.included
    assert verify_backup(directory).ok

    server = EmbeddedServer(tmp_path / "fresh-server")
    url = server.start()
    try:
        nc = await connect(NatsSettings(), url)
        try:
            restored = await restore_backup(nc, source.settings, directory, stream=SOURCE)
            assert "backup key file" in restored.key
            js = nc.jetstream()
            copy_state = await _replayed(js, tmp_path / "b", SOURCE, PREFIX)
            from_snapshot = await _replayed(
                js, tmp_path / "c", SOURCE, PREFIX, snapshots=source.root / "snapshots"
            )
        finally:
            await nc.drain()
    finally:
        server.stop()
    original = await _replayed(source.js, tmp_path / "a", SOURCE, PREFIX)
    assert copy_state == original
    assert from_snapshot == original


async def test_a_corrupt_segment_fails_verify_and_restore_naming_it(
    source: Source, full_backup: Path, tmp_path: Path
) -> None:
    """One byte changed in a segment: verify reports that segment (and only it), the CLI exits
    1 naming it, and restore refuses before creating anything."""
    damaged = tmp_path / "damaged"
    shutil.copytree(full_backup, damaged)
    victim = load_manifest(damaged).segments[1]
    path = damaged / victim.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    report = verify_backup(damaged)
    assert not report.ok
    assert [p.where for p in report.problems] == [victim.file]
    assert "SHA-256" in report.problems[0].problem

    run = await engram("backup", "verify", damaged, cwd=tmp_path)
    assert run.code == 1
    assert victim.file in run.err

    with pytest.raises(BackupCorruptError, match=victim.file):
        await restore_backup(
            source.nc, source.settings, damaged, stream="BKBAD", subject_prefix="bkbad.memory"
        )
    with pytest.raises(NotFoundError):
        await source.js.stream_info("BKBAD")


async def test_restore_refuses_an_existing_stream_and_overlapping_subjects(
    source: Source, full_backup: Path
) -> None:
    """Restoring over the original's name, or onto its subjects on the same server, is refused
    with what to do instead, and creates nothing; an existing stream is replaced only with
    ``replace``."""
    with pytest.raises(RestoreRefusedError, match="--replace"):
        await restore_backup(source.nc, source.settings, full_backup, stream=SOURCE)
    with pytest.raises(RestoreRefusedError, match="--subject-prefix"):
        await restore_backup(source.nc, source.settings, full_backup, stream="BKOVERLAP")
    with pytest.raises(NotFoundError):
        await source.js.stream_info("BKOVERLAP")
    # An existing stream is replaced only when told, and never before every check passed.
    async with _streams(source.js, "BKREP"):
        options: dict[str, Any] = {"stream": "BKREP", "subject_prefix": "bkrep.memory"}
        await restore_backup(source.nc, source.settings, full_backup, until_seq=10, **options)
        with pytest.raises(RestoreRefusedError, match="already exists"):
            await restore_backup(source.nc, source.settings, full_backup, **options)
        again = await restore_backup(
            source.nc, source.settings, full_backup, replace=True, **options
        )
        info = await source.js.stream_info("BKREP")
        assert info.state.last_seq == again.last_seq > 10
        with pytest.raises(RestoreRefusedError, match="BKSRC"):  # refused before deleting
            await restore_backup(
                source.nc, source.settings, full_backup, stream="BKREP", replace=True
            )
        assert (await source.js.stream_info("BKREP")).state.last_seq == again.last_seq


async def test_incremental_backup_holds_exactly_the_new_events_and_reports_gaps(
    nc: NatsClient, nats_url: str, tmp_path: Path
) -> None:
    """An incremental run holds exactly the messages appended since the last run (sequences and
    bodies), chained to it; with nothing new it writes nothing; when messages it never held
    are gone from the stream it refuses loudly, and with --accept-gap records the gap, which
    verify reports and restore carries over as a hole."""
    settings = _settings(nats_url, tmp_path, "BKINC", "bki.memory")
    log = EventLog(nc, settings.stream)
    await log.ensure()
    js = nc.jetstream()
    directory = tmp_path / "backup"
    async with _streams(js, "BKINC", "BKINC2"):
        await log.append_many(realistic_history(0, 300))
        first = await take_backup(js, settings, directory, segment_bytes=SEGMENT)
        assert first.run is not None
        assert (first.run.first_seq, first.run.last_seq) == (1, 300)
        await log.append_many(realistic_history(300, 200))

        second = await take_backup(js, settings, directory, incremental=True)
        run = second.run
        assert run is not None
        assert (run.kind, run.first_seq, run.last_seq, run.messages) == (
            "incremental",
            301,
            500,
            200,
        )
        assert run.previous == first.run.digest()
        held = [m for s in run.segments for m in read_segment(directory, s).messages()]
        assert [m.sequence for m in held] == list(range(301, 501))
        for message in held[::50]:
            stored = await js.get_msg("BKINC", message.sequence)
            assert message.data == stored.data
        assert verify_backup(directory).ok

        nothing = await take_backup(js, settings, directory, incremental=True)
        assert nothing.run is None
        assert len(load_manifest(directory).runs) == 2

        await log.append_many(realistic_history(500, 100))
        await js.purge_stream("BKINC", seq=551)  # compaction took 501..550 before a backup
        with pytest.raises(BackupGapError, match=re.escape("501..550")):
            await take_backup(js, settings, directory, incremental=True)
        assert len(load_manifest(directory).runs) == 2
        third = await take_backup(js, settings, directory, incremental=True, accept_gap=True)
        assert third.run is not None and third.run.gap is not None
        assert (third.run.gap.first_seq, third.run.gap.last_seq) == (501, 550)
        report = verify_backup(directory)
        assert report.ok
        assert any("501..550" in w for w in report.warnings)

        restored = await restore_backup(
            nc, settings, directory, stream="BKINC2", subject_prefix="bki2.memory"
        )
        assert restored.gaps == ((501, 550),)
        info = await js.stream_info("BKINC2")
        assert (info.state.messages, info.state.last_seq) == (550, 600)
        with pytest.raises(NotFoundError):
            await js.get_msg("BKINC2", 520)


async def test_a_message_id_stored_twice_is_restored_twice(
    nc: NatsClient, nats_url: str, tmp_path: Path
) -> None:
    """A Nats-Msg-Id the original stored twice (the repeat came after its duplicate window)
    is restored twice, each at its own sequence: the repeat goes without the header (else the
    restore's quick succession would make JetStream drop it), and the report counts it."""
    settings = _settings(nats_url, tmp_path, "BKDUP", "bkdup.memory")
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="BKDUP", subjects=["bkdup.memory.>"], duplicate_window=0.1)
    )
    async with _streams(js, "BKDUP", "BKDUP2"):
        body = b'{"not": "an event: a backup keeps whatever the stream holds"}'
        first = await js.publish("bkdup.memory.x.y", body, headers={"Nats-Msg-Id": "same"})
        await asyncio.sleep(0.3)
        second = await js.publish("bkdup.memory.x.y", body, headers={"Nats-Msg-Id": "same"})
        assert (first.seq, second.seq, second.duplicate) == (1, 2, None)
        await take_backup(js, settings, tmp_path / "backup")
        report = await restore_backup(
            nc, settings, tmp_path / "backup", stream="BKDUP2", subject_prefix="bkdup2.memory"
        )
        assert (report.messages, report.msg_ids_dropped) == (2, 1)
        restored = [await js.get_msg("BKDUP2", seq) for seq in (1, 2)]
        assert [m.data for m in restored] == [body, body]
        assert restored[0].headers == {"Nats-Msg-Id": "same"}
        info = await js.stream_info("BKDUP2")
        assert info.config.duplicate_window == 0.1


async def test_an_interrupted_backup_leaves_no_complete_looking_manifest(
    nc: NatsClient, nats_url: str, tmp_path: Path
) -> None:
    """A first backup that fails after its first segment leaves no manifest (verify and
    restore refuse the directory); an incremental one that fails leaves the previous manifest
    as it was (it still verifies, the leftover run is named and ignored), and the next run
    removes the leftover and completes."""
    settings = _settings(nats_url, tmp_path, "BKINT", "bkint.memory")
    log = EventLog(nc, settings.stream)
    await log.ensure()
    js = nc.jetstream()

    class CrashError(Exception):
        pass

    def crash_after_one(entry: object) -> None:
        raise CrashError

    async with _streams(js, "BKINT", "BKINT2"):
        await log.append_many(realistic_history(0, 400))
        fresh = tmp_path / "first"
        with pytest.raises(CrashError):
            await take_backup(
                js, settings, fresh, segment_bytes=SEGMENT, on_segment=crash_after_one
            )
        assert list((fresh / "run-0001").glob("seg-*.parquet")), "it was interrupted midway"
        assert not (fresh / MANIFEST).exists()
        assert not verify_backup(fresh).ok
        with pytest.raises(BackupCorruptError, match="no manifest"):
            await restore_backup(nc, settings, fresh, stream="BKINT2", subject_prefix="x.memory")

        directory = tmp_path / "chain"
        await take_backup(js, settings, directory, segment_bytes=SEGMENT)
        before = (directory / MANIFEST).read_bytes()
        await log.append_many(realistic_history(400, 300))
        with pytest.raises(CrashError):
            await take_backup(
                js,
                settings,
                directory,
                incremental=True,
                segment_bytes=SEGMENT,
                on_segment=crash_after_one,
            )
        assert (directory / MANIFEST).read_bytes() == before
        report = verify_backup(directory)
        assert report.ok
        assert any("run-0002/" in w for w in report.warnings)

        done = await take_backup(js, settings, directory, incremental=True, segment_bytes=SEGMENT)
        assert done.run is not None and (done.run.first_seq, done.run.last_seq) == (401, 700)
        report = verify_backup(directory)
        assert report.ok and not report.warnings
        assert report.messages_checked == 700


async def test_cli_backup_verify_restore(source: Source, tmp_path: Path) -> None:
    """The three verbs end to end as a user runs them: `engram backup --to`, `engram backup
    verify`, `engram restore --until-seq` (JSON outputs); a full backup is refused into a
    directory that already holds one."""
    url = str(source.settings.nats.url)
    directory = tmp_path / "cli-backup"
    run = await engram(
        "backup", "--to", directory, "--nats-url", url, "--stream", SOURCE, "--json", cwd=tmp_path
    )
    assert run.code == 0, run.err
    taken = run.json()
    assert taken["run"]["kind"] == "full" and taken["messages"] > 600

    with pytest.raises(UsageError, match="--incremental"):  # exit 2 on the command line
        await take_backup(source.js, source.settings, directory)

    checked = await engram("backup", "verify", directory, "--json", cwd=tmp_path)
    assert checked.code == 0 and checked.json()["ok"]

    async with _streams(source.js, "BKCLI"):
        restored = await engram(
            "restore",
            "--from",
            directory,
            "--stream",
            "BKCLI",
            "--subject-prefix",
            "bkcli.memory",
            "--until-seq",
            "100",
            "--nats-url",
            url,
            "--json",
            cwd=tmp_path,
        )
        assert restored.code == 0, restored.err
        assert restored.json()["last_seq"] == 100
        info = await source.js.stream_info("BKCLI")
        assert info.state.last_seq == 100


async def test_operator_backs_up_and_engine_user_restores_on_a_secured_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a broker configured by `engram auth`, the `operator` user takes a backup (it may read
    the stream and the key's fingerprint) and the `engine` user restores it (it may create a
    stream and write the key bucket); with credentials the restored stream's key record holds
    the fingerprint only, never the key, exactly as engines record ENGRAM_ENGINE_KEY."""
    out = tmp_path / "auth"
    write_authorization(out, plan_users(["alpha"]))
    with authorized_server(out, tmp_path / "server") as url:

        def environ(user: str) -> dict[str, str]:
            return {
                **credentials(out, user),
                "ENGRAM_NATS__URL": url,
                "ENGRAM_ENGINE_KEY": "an engine key of at least thirty-two characters",
            }

        engine_settings = Settings.load(environ("engine"))
        client = await connect(engine_settings.nats, url)
        try:
            log = EventLog(client, engine_settings.stream)
            await log.ensure()
            await log.append_many(realistic_history(0, 50))
            key = await signing_key(client.jetstream(), engine_settings)  # records its print

            async def cli(user: str, *argv: str | Path) -> int:
                with monkeypatch.context() as patched:
                    for name, value in environ(user).items():
                        patched.setenv(name, value)
                    patched.setattr("engram.cli.main.configure_logging", lambda **_: None)
                    return await asyncio.to_thread(main, [str(a) for a in argv])

            directory = tmp_path / "backup"
            assert await cli("operator", "backup", "--to", directory) == 0
            manifest = load_manifest(directory)
            assert manifest.messages == 50
            assert manifest.engine_key.fingerprint == key.fingerprint
            code = await cli(
                "engine", "restore", "--from", directory, "--stream", "SECURED",
                "--subject-prefix", "secured.memory",
            )  # fmt: skip
            assert code == 0
            js = client.jetstream()
            assert (await js.stream_info("SECURED")).state.messages == 50
            record = await (await js.key_value("ENGRAM_ENGINE")).get("signing.SECURED")
            assert json.loads(record.value or b"") == {
                "scheme": "v1",
                "fingerprint": key.fingerprint,
            }
        finally:
            await client.close()
