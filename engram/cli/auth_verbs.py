"""``engram auth --tenants alpha,beta --out DIR``: a nats-server authorization block for engram's
tenants and one credentials file per user (see engram/auth.py for who may do what)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.settings import Settings, StreamSettings
from engram.auth import (
    NatsUser,
    credentials_env,
    new_credentials,
    plan_users,
    render_authorization,
)
from engram.cli._common import EXIT_OK, emit_json

__all__ = ["add_auth_verb", "cmd_auth", "write_authorization"]

CONFIG_NAME = "authorization.conf"
CREDENTIALS_DIR = "credentials"


def add_auth_verb(sub: Any, verb: Any) -> None:
    """Register ``auth`` (``verb`` is main's ``_verb`` factory)."""
    p = verb(
        sub,
        "auth",
        "write a nats-server authorization block and credentials for engram's tenants",
        nats=False,
    )
    p.add_argument(
        "--tenants",
        required=True,
        help="the tenants (namespaces), comma-separated: one agent-<tenant> user each",
    )
    p.add_argument("--out", required=True, help=f"directory for {CONFIG_NAME} and credentials/")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing files (every user gets a new password)",
    )
    p.add_argument("--stream", help="the stream's name (default: ENGRAM_STREAM__NAME, else ENGRAM)")
    p.add_argument(
        "--url",
        help="also write ENGRAM_NATS__URL=URL into each credentials file",
    )
    p.add_argument(
        "--sets",
        default="",
        metavar="A,B;C,D",
        help="the namespace sets of engines that split the tenants (serve --namespaces), "
        "separated by ';': the operator may also use their snapshot buckets "
        "(<stream>_SNAPSHOTS_<set key>; without this, only the bucket of every namespace)",
    )
    p.set_defaults(handler=cmd_auth)


def _tenants(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _sets(text: str) -> list[list[str]]:
    return [names for part in text.split(";") if (names := _tenants(part))]


def _write_secret(path: Path, text: str) -> None:
    """``text`` into ``path`` readable by its owner only (0600 from the first byte)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # an existing file (--force) keeps its mode otherwise
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


def _stream_lines(stream: StreamSettings) -> dict[str, str]:
    """The ENGRAM_STREAM__* a client needs for the subjects its permissions name (only those
    that are not the defaults)."""
    default = StreamSettings()
    return {
        f"ENGRAM_STREAM__{field.upper()}": getattr(stream, field)
        for field in ("name", "subject_prefix", "service_prefix")
        if getattr(stream, field) != getattr(default, field)
    }


def write_authorization(
    out: Path,
    users: tuple[NatsUser, ...],
    *,
    force: bool = False,
    url: str | None = None,
    stream: StreamSettings | None = None,
) -> list[Path]:
    """Write ``out/authorization.conf`` and ``out/credentials/<user>.env`` (0600, in a 0700
    directory) for ``users`` with fresh passwords; returns the paths written. Refuses (UsageError,
    nothing written) when any of them exists, unless ``force``."""
    config = out / CONFIG_NAME
    secrets_dir = out / CREDENTIALS_DIR
    files = [secrets_dir / f"{user.name}.env" for user in users]
    existing = [p for p in (config, *files) if p.exists()]
    if existing and not force:
        raise UsageError(
            f"{', '.join(str(p) for p in existing)} already exist: engram auth writes new "
            "passwords for every user; use --force to replace them (every client then needs "
            "its new credentials file)"
        )
    credentials = new_credentials(users)
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    for user, path in zip(users, files, strict=True):
        text = credentials_env(
            user,
            credentials[user.name],
            url=url,
            settings=_stream_lines(stream or StreamSettings()),
        )
        _write_secret(path, text)
    temporary = config.with_name(config.name + ".tmp")
    temporary.write_text(
        render_authorization(users, {name: c.stored for name, c in credentials.items()})
    )
    temporary.replace(config)
    return [config, *files]


def cmd_auth(args: argparse.Namespace, settings: Settings) -> int:
    stream = settings.stream
    users = plan_users(
        _tenants(args.tenants),
        stream=stream.name,
        event_prefix=stream.subject_prefix,
        service_prefix=stream.service_prefix,
        sets=_sets(args.sets),
    )
    out = Path(args.out)
    written = write_authorization(out, users, force=args.force, url=args.url, stream=stream)
    if args.json:
        emit_json(
            {
                "authorization": str(written[0]),
                "credentials": {u.name: str(p) for u, p in zip(users, written[1:], strict=True)},
                "inbox_prefixes": {u.name: u.inbox_prefix for u in users},
            }
        )
        return EXIT_OK
    print(f"wrote {written[0]} (users {', '.join(u.name for u in users)}; bcrypt hashes)")
    for user, path in zip(users, written[1:], strict=True):
        print(f"wrote {path} (0600): {user.about}")
    print(
        "\nInclude it from nats-server.conf with a path relative to that file (nats-server joins "
        "even an absolute one to the file's directory), e.g. with the file beside it:\n"
        f'  include "{CONFIG_NAME}"\n'
        "then start the server, or reload it (nats-server --signal reload). Each client loads "
        "its credentials into its environment before it runs:\n"
        f"  set -a; . {out / CREDENTIALS_DIR}/agent-<tenant>.env; set +a\n"
        "engine and operator also need ENGRAM_ENGINE_KEY, the same key on every engine and "
        "operator command of the stream."
    )
    return EXIT_OK
