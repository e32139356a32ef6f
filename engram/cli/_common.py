"""What every ``engram`` verb shares: connection flags, settings, output, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from engine.errors import (
    ConfigurationError,
    EngramError,
    InvalidEventError,
    StreamNotFoundError,
    UsageError,
)
from engine.settings import Settings

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "add_connection_flags",
    "add_output_flags",
    "emit_json",
    "exit_code_for",
    "settings_from_args",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--nats-url",
        help="NATS server URL (default: ENGRAM_NATS_URL, else the embedded server of --data-dir)",
    )
    group.add_argument("--nats-user", help="NATS user name")
    group.add_argument("--nats-password", help="NATS password")
    group.add_argument("--nats-token", help="NATS auth token")
    group.add_argument("--nats-creds", help="NATS credentials file (JWT + nkey)")
    group.add_argument("--tls-ca", help="CA certificate to verify the server")
    group.add_argument("--tls-cert", help="client certificate (with --tls-key)")
    group.add_argument("--tls-key", help="client private key (with --tls-cert)")
    group.add_argument("--stream", help="JetStream stream name (default ENGRAM)")


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", help="data directory (default: ENGRAM_DATA_DIR, else ./engram-data)"
    )
    parser.add_argument("--log-json", action="store_true", default=None, help="JSON logs")
    parser.add_argument("--log-level", help="debug, info, warning, error (default info)")


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Defaults < ENGRAM_* environment < flags."""

    def flag(name: str) -> Any:
        return getattr(args, name, None)

    return Settings.load(
        environ,
        **{
            "data_dir": flag("data_dir"),
            "log_json": flag("log_json"),
            "log_level": flag("log_level"),
            "nats.url": flag("nats_url"),
            "nats.user": flag("nats_user"),
            "nats.password": flag("nats_password"),
            "nats.token": flag("nats_token"),
            "nats.creds_file": flag("nats_creds"),
            "nats.tls_ca": flag("tls_ca"),
            "nats.tls_cert": flag("tls_cert"),
            "nats.tls_key": flag("tls_key"),
            "stream.name": flag("stream"),
            # serve and stream apply only (the other verbs never change the stream):
            "stream.allow_downgrade": flag("allow_stream_downgrade"),
            "stream.replicas": flag("stream_replicas"),
            "stream.duplicate_window_s": flag("stream_duplicate_window"),
            "stream.max_age_s": flag("stream_max_age"),
            "stream.max_bytes": flag("stream_max_bytes"),
            "stream.max_msg_size": flag("stream_max_msg_size"),
        },
    )


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def exit_code_for(error: BaseException) -> int:
    """Bad usage or bad input: 2; anything else that failed at run time (a missing stream,
    an unreachable server, refused credentials): 1."""
    if isinstance(error, StreamNotFoundError):
        return EXIT_FAILURE
    if isinstance(error, InvalidEventError | ConfigurationError | UsageError):
        return EXIT_USAGE
    if isinstance(error, EngramError):
        return EXIT_FAILURE
    return EXIT_FAILURE
