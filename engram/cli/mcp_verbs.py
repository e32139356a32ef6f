"""``engram mcp``: serve engram's memory to an MCP client (a desktop assistant, a coding agent)
over stdio, for one namespace. Needs the ``mcp`` extra."""

from __future__ import annotations

import argparse
from typing import Any

from engine.errors import ConfigurationError
from engine.events.envelope import check_namespace
from engine.settings import Settings
from engram.cli._common import EXIT_OK

__all__ = ["add_mcp_verb", "cmd_mcp"]


def add_mcp_verb(sub: Any, verb: Any) -> None:
    """Register ``mcp`` (``verb`` is main's ``_verb`` factory)."""
    p = verb(
        sub,
        "mcp",
        "serve engram's memory to an MCP client over stdio (tools and resources)",
        output=False,
    )
    p.add_argument(
        "--namespace",
        default="default",
        help="the namespace every tool call reads and writes (default: default); the model "
        "cannot choose another",
    )
    p.add_argument(
        "--consistency",
        choices=["read_your_writes", "eventual"],
        default="read_your_writes",
        help="read_your_writes (default): a read waits, at most the engine's "
        "query_consistency_wait_s, until it reflects this server's last write; eventual: "
        "answers at once as the projections are",
    )
    p.add_argument("--agent-id", dest="agent_id", help="the agent_id of every event written")
    p.set_defaults(handler=cmd_mcp)


async def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    namespace = check_namespace(args.namespace)  # a bad one exits 2 before connecting
    try:
        from engram.mcp.stdio import serve_stdio
    except ImportError as exc:  # the mcp extra is not installed
        raise ConfigurationError(
            f"engram mcp needs the mcp extra (pip install 'engram-jetstream[mcp]'): {exc}"
        ) from None
    await serve_stdio(
        settings, namespace=namespace, consistency=args.consistency, agent_id=args.agent_id
    )
    return EXIT_OK
