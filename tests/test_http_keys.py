"""API keys of the HTTP gateway: made by ``engram http keys add`` and shown once, kept only as
SHA-256 digests in a 0600 file replaced atomically, compared in constant time, re-read when the
file changes, and refused (fail closed) when the file is unusable."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import stat
import threading
from pathlib import Path

import pytest

from engine.errors import ConfigurationError, UsageError
from engram.cli.main import main
from engram.http.keys import ApiKey, KeyFile, KeyRing

pytest.importorskip("fastapi")


@pytest.fixture(autouse=True)
def _logging_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() would point structlog at this test's captured stderr, closed after it
    monkeypatch.setattr("engram.cli.main.configure_logging", lambda **_: None)


def _cli(*argv: str) -> int:
    return main(["http", *argv])


def test_keys_add_prints_the_key_once_and_the_file_keeps_only_its_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``engram http keys add`` prints a new egk_<id>_<secret> key (256-bit secret) on stdout;
    the file (mode 0600) holds its SHA-256, never the key or its secret, and no temporary file
    is left beside it; ``keys list`` shows names, ids, namespaces and roles, never a digest;
    ``keys revoke`` removes it."""
    path = tmp_path / "keys.json"
    assert (
        _cli(
            "keys",
            "add",
            "planner",
            "--namespace",
            "alpha",
            "--namespace",
            "beta",
            "--keys",
            str(path),
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    match = re.fullmatch(r"egk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})", token)
    assert match is not None
    secret = match[2]
    assert len(secret) * 6 >= 256
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and secret not in text
    stored = json.loads(text)["keys"]
    assert stored == [
        {
            "name": "planner",
            "id": match[1],
            "sha256": hashlib.sha256(token.encode()).hexdigest(),
            "namespaces": ["alpha", "beta"],
            "operator": False,
            "created_at": stored[0]["created_at"],
        }
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "keys.json.lock"]

    assert _cli("keys", "add", "ops", "--operator", "--keys", str(path), "--json") == 0
    made = json.loads(capsys.readouterr().out)
    assert made["operator"] is True and made["namespaces"] == [] and made["key"].startswith("egk_")
    assert made["key"] != token

    assert _cli("keys", "list", "--keys", str(path)) == 0
    listing = capsys.readouterr().out
    assert "planner" in listing and "alpha,beta" in listing and "operator" in listing
    assert token not in listing and stored[0]["sha256"] not in listing
    assert _cli("keys", "list", "--keys", str(path), "--json") == 0
    assert all("sha256" not in entry for entry in json.loads(capsys.readouterr().out))

    assert _cli("keys", "revoke", "planner", "--keys", str(path)) == 0
    assert [r.name for r in KeyFile(path).records()] == ["ops"]


def test_keys_add_refuses_what_would_be_unsafe_or_ambiguous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A taken name, a key with no namespace that is not an operator's, a namespace that is
    not one subject token (alpha.beta, *, >), a bad name, and revoking a missing key: exit 2,
    the file unchanged."""
    path = tmp_path / "keys.json"
    assert _cli("keys", "add", "a", "--namespace", "alpha", "--keys", str(path)) == 0
    before = path.read_bytes()
    for argv in (
        ("keys", "add", "a", "--namespace", "alpha"),
        ("keys", "add", "b"),
        ("keys", "add", "b", "--namespace", "alpha.beta"),
        ("keys", "add", "b", "--namespace", "*"),
        ("keys", "add", "b", "--namespace", ">"),
        ("keys", "add", "b c", "--namespace", "alpha"),
        ("keys", "revoke", "nobody"),
    ):
        assert _cli(*argv, "--keys", str(path)) == 2, argv
    assert path.read_bytes() == before
    capsys.readouterr()


def test_concurrent_adds_lose_no_key(tmp_path: Path) -> None:
    """Sixteen keys added from sixteen threads at once: all sixteen are in the file (each
    change is made under a lock and replaces the file atomically)."""
    path = tmp_path / "keys.json"
    made: dict[str, str] = {}

    def add(n: int) -> None:
        made[f"k{n}"] = KeyFile(path).add(f"k{n}", ["alpha"])[1]

    threads = [threading.Thread(target=add, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ring = KeyRing(path)
    assert sorted(r.name for r in KeyFile(path).records()) == sorted(made)
    assert all(
        ring.verify(token) == ApiKey(name, ("alpha",), False) for name, token in made.items()
    )


def test_every_check_compares_digests_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A right key, a wrong secret for a known id, an unknown id and a malformed token are
    each decided by one hmac.compare_digest of two SHA-256 digests (an unknown id against a
    dummy digest), never by ==, so the time a refusal takes does not tell a known id from an
    unknown one."""
    path = tmp_path / "keys.json"
    _, token = KeyFile(path).add("a", ["alpha"])
    ring = KeyRing(path)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("engram.http.keys.hmac.compare_digest", spy)
    wrong_secret = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    unknown_id = "egk_ffffffffffff_" + token.rsplit("_", 1)[1]
    cases = [(token, True), (wrong_secret, False), (unknown_id, False), ("garbage", False)]
    for candidate, accepted in cases:
        calls.clear()
        assert (ring.verify(candidate) is not None) is accepted, candidate
        assert len(calls) == 1
        given, expected = calls[0]
        assert given == hashlib.sha256(candidate.encode()).hexdigest()
        assert len(expected) == 64


def test_the_ring_rereads_the_file_and_fails_closed(tmp_path: Path) -> None:
    """A key added or revoked after the ring was read is seen at the next check; a file that
    becomes malformed refuses every key (and works again once repaired); a missing file or one
    others may write is refused at the start (ConfigurationError)."""
    path = tmp_path / "keys.json"
    with pytest.raises(ConfigurationError, match="does not exist"):
        KeyRing(path)
    keys = KeyFile(path)
    _, first = keys.add("first", ["alpha"])
    ring = KeyRing(path)
    _, second = keys.add("second", ["beta"])
    assert ring.verify(second) == ApiKey("second", ("beta",), False)
    keys.revoke("first")
    assert ring.verify(first) is None
    good = path.read_bytes()
    path.write_text("{ not json")
    assert ring.verify(second) is None
    path.write_bytes(good)
    os.utime(path, ns=(1, 1))  # a new stamp even within the same clock tick
    assert ring.verify(second) is not None
    path.chmod(0o622)
    with pytest.raises(ConfigurationError, match="writable by others"):
        KeyRing(path)
    with pytest.raises(UsageError):
        keys.add("x", [])
