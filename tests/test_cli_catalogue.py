"""The ``engram`` query sub-commands, derived from the verb catalogue (engine.verbs): the same
sub-commands, flags, payloads and output as the hand-written ones they replaced, and every
catalogued verb reachable with every parameter it accepts."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import pytest
import structlog
from pydantic.fields import FieldInfo

from engine.errors import EngramError
from engine.verbs import CATALOGUE, VerbSpec, validate_request
from engine.verbs.fields import Cli
from engram.cli import query_verbs
from engram.cli._common import exit_code_for, settings_from_args
from engram.cli.main import build_parser
from tests.cli_runs import engram


class Arg(NamedTuple):
    """One argparse argument, as a user meets it."""

    flags: tuple[str, ...]
    dest: str
    action: str
    default: Any
    choices: tuple[Any, ...] | None
    required: bool
    type: str | None


def sub_commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def args_of(parser: argparse.ArgumentParser) -> list[Arg]:
    return [
        Arg(
            tuple(a.option_strings),
            a.dest,
            type(a).__name__.strip("_").removesuffix("Action"),
            a.default,
            tuple(a.choices) if a.choices else None,
            a.required,
            getattr(a.type, "__name__", None),
        )
        for a in parser._actions
    ]


# -- the parser as it was (captured from the hand-written sub-commands before the catalogue) --

COMMON_ARGS = [
    Arg(("-h", "--help"), "help", "Help", "==SUPPRESS==", None, False, None),
    Arg(("--data-dir",), "data_dir", "Store", None, None, False, None),
    Arg(("--log-json",), "log_json", "StoreTrue", None, None, False, None),
    Arg(("--log-level",), "log_level", "Store", None, None, False, None),
    Arg(("--nats-url",), "nats_url", "Store", None, None, False, None),
    Arg(("--nats-user",), "nats_user", "Store", None, None, False, None),
    Arg(("--nats-password",), "nats_password", "Store", None, None, False, None),
    Arg(("--nats-token",), "nats_token", "Store", None, None, False, None),
    Arg(("--nats-creds",), "nats_creds", "Store", None, None, False, None),
    Arg(("--tls-ca",), "tls_ca", "Store", None, None, False, None),
    Arg(("--tls-cert",), "tls_cert", "Store", None, None, False, None),
    Arg(("--tls-key",), "tls_key", "Store", None, None, False, None),
    Arg(("--stream",), "stream", "Store", None, None, False, None),
    Arg(("--json",), "json", "StoreTrue", False, None, False, None),
]
OLD_ARGS: dict[str, list[Arg]] = {
    "search": [
        Arg((), "text", "Store", None, None, True, None),
        Arg(("--top-k",), "top_k", "Store", 5, None, False, "int"),
        Arg(("--threshold",), "threshold", "Store", 0.0, None, False, "float"),
        Arg(("--success-only",), "success_only", "StoreTrue", False, None, False, None),
        Arg(
            ("--collection",),
            "collection",
            "Append",
            None,
            ("tasks", "decisions", "knowledge"),
            False,
            None,
        ),
        Arg(("--task-type",), "task_type", "Store", None, None, False, None),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
        Arg(("--mode",), "mode", "Store", "hybrid", ("hybrid", "vector", "lexical"), False, None),
        Arg(("--no-group",), "group_duplicates", "StoreFalse", True, None, False, None),
    ],
    "patterns": [
        Arg(("--task-type",), "task_type", "Store", None, None, False, None),
        Arg(("--min-success-rate",), "min_success_rate", "Store", 0.7, None, False, "float"),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
    ],
    "best-workflow": [
        Arg(("--task-type",), "task_type", "Store", None, None, True, None),
        Arg(
            ("--target",),
            "target",
            "Store",
            "success_rate",
            ("success_rate", "duration", "cost"),
            False,
            None,
        ),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
    ],
    "context": [
        Arg((), "text", "Store", None, None, True, None),
        Arg(("--max-tokens",), "max_tokens", "Store", 1000, None, False, "int"),
        Arg(
            ("--tier",), "tier", "Append", None, ("operational", "working", "longterm"), False, None
        ),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
    ],
    "task-context": [
        Arg((), "text", "Store", None, None, True, None),
        Arg(("--top-k",), "top_k", "Store", 5, None, False, "int"),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
    ],
    "sessions": [
        Arg(("--session",), "session", "Store", None, None, False, None),
        Arg(("--limit",), "limit", "Store", 50, None, False, "int"),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
    ],
    "learning": [
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
    ],
    "metrics": [
        Arg(("--task-type",), "task_type", "Store", None, None, False, None),
        Arg(("--namespace",), "namespace", "Store", None, None, False, None),
        Arg(("--workflows",), "workflows", "StoreTrue", False, None, False, None),
    ],
    "sql": [
        Arg((), "query", "Store", None, None, True, None),
        Arg(("--limit",), "limit", "Store", 10000, None, False, "int"),
    ],
    "export": [
        Arg(("--to",), "to", "Store", None, None, True, None),
    ],
    "status": [],
}

ADDED: dict[str, set[str]] = {
    # request fields the hand-written sub-commands did not offer
    "search": {"--duplicate-similarity"},
    "task-context": {"--task-type", "--mode"},
    # an operator verb asked of the engine owning one namespace (wire contract v2)
    "status": {"--namespace"},
    "sql": {"--namespace"},
    "export": {"--namespace"},
}
"""Options a sub-command gained from its request model (nothing else may change)."""
EVERY_VERB = {"--after-seq"}
"""Options every query sub-command gained (read your writes: ``min_sequence``)."""


def test_existing_sub_commands_keep_their_arguments() -> None:
    """Every query sub-command the hand-written parser had is still there with the same
    arguments: option strings, dest, action, default, choices, required and type, the common
    flags first and positionals in the same order; options it gained are only the request
    fields it did not offer before."""
    commands = sub_commands()
    for name, old in OLD_ARGS.items():
        now = args_of(commands[name])
        assert now[: len(COMMON_ARGS)] == COMMON_ARGS, name
        mine = now[len(COMMON_ARGS) :]
        by_dest = {arg.dest: arg for arg in mine}
        for arg in old:
            assert by_dest.get(arg.dest) == arg, (name, arg)
        assert [a.dest for a in mine if not a.flags] == [a.dest for a in old if not a.flags]
        gained = {a.flags[0] for a in mine if a.dest not in {o.dest for o in old}}
        assert gained >= EVERY_VERB, (name, gained)
        assert gained - EVERY_VERB <= ADDED.get(name, set()), (name, gained)


# -- what each sub-command asks and prints (captured from the hand-written handlers) ----------


WF = {
    "pattern_id": "p1",
    "namespace": "a",
    "task_type": "code",
    "workflow_steps": ["plan", "code"],
    "executions": 4,
    "successes": 3,
    "success_rate": 0.75,
    "avg_duration": 12.25,
    "avg_cost": 0.5,
    "confidence": 0.6,
    "is_best": True,
}
TM = {
    "task_type": "code",
    "namespace": "a",
    "total_executions": 4,
    "successful_executions": 3,
    "success_rate": 0.75,
    "avg_duration": 12.25,
    "avg_cost": None,
}
REPLIES: dict[str, dict[str, Any]] = {
    "search": {
        "hits": [
            {
                "id": "e1",
                "collection": "tasks",
                "namespace": "a",
                "similarity_score": 0.91234,
                "text": "write a parser for the configuration language " * 2,
                "success": True,
                "occurred_at": "2026-01-01T00:00:00Z",
                "sequence": 3,
                "duplicates": 2,
            },
            {
                "id": "e2",
                "collection": "knowledge",
                "namespace": "a",
                "similarity_score": 0.5,
                "text": "parsers",
                "success": None,
                "occurred_at": "2026-01-01T00:00:00Z",
                "sequence": 4,
                "duplicates": 0,
            },
        ]
    },
    "patterns": {
        "patterns": [
            WF,
            {
                **WF,
                "pattern_id": "p2",
                "workflow_steps": ["code"],
                "is_best": False,
                "avg_cost": None,
            },
        ]
    },
    "best_workflow": {"workflow": WF},
    "assemble_context": {
        "task_description": "do x",
        "max_tokens": 50,
        "total_tokens": 12,
        "token_counter": "heuristic",
        "chunks": [
            {
                "tier": "working",
                "source": "search",
                "event_id": "e1",
                "text": "a chunk",
                "relevance": 0.8,
                "tokens": 3,
            },
            {
                "tier": "longterm",
                "source": "patterns",
                "event_id": None,
                "text": "plan -> code",
                "relevance": 0.5,
                "tokens": 4,
            },
        ],
    },
    "task_context": {
        "task_description": "do x",
        "task_type": "code",
        "similar_tasks": [],
        "patterns": [],
        "recommendations": ["use plan -> code", "avoid y"],
    },
    "learning": {
        "namespace": "a",
        "overall_success_rate": 0.75,
        "total_workflows_executed": 4,
        "learned_task_types": ["code"],
        "patterns_learned": 2,
        "metrics_by_task_type": {"code": TM},
    },
    "sessions": {
        "sessions": [
            {
                "session_id": "s1",
                "reason": "ended",
                "summary": "sum",
                "metrics": {
                    "num_memories": 5,
                    "original_size_bytes": 1000,
                    "compressed_size_bytes": 250,
                    "compression_ratio": 4.0,
                    "num_patterns_extracted": 1,
                    "compaction_duration_ms": 2.5,
                },
            }
        ],
        "overview": {"sessions": 1},
    },
    "metrics": {"metrics": [TM]},
    "workflows": {
        "workflows": [
            {
                "namespace": "a",
                "task_type": "code",
                "workflow_steps": ["plan", "code"],
                "executions": 4,
                "success_rate": 0.75,
                "avg_duration": 12.25,
                "avg_cost": 0.5,
            }
        ]
    },
    "sql": {
        "columns": ["n", "name"],
        "rows": [{"n": 1, "name": "x"}, {"n": 2, "name": None}],
        "truncated": True,
        "note": "lower limit",
    },
    "export": {
        "format": "parquet",
        "compression": "zstd",
        "sequence": 7,
        "tables": {
            "workflows": {"rows": 6, "path": "workflows.parquet"},
            "sessions": {"rows": 0, "path": "sessions.parquet"},
        },
        "location": "/somewhere/out",
    },
}
EMPTY: dict[str, dict[str, Any]] = {
    "search": {"hits": []},
    "patterns": {"patterns": []},
    "best_workflow": {"workflow": None},
    "sessions": {"sessions": [], "overview": {}},
    "metrics": {"metrics": []},
    "sql": {"columns": ["n"], "rows": [], "truncated": False},
}


class Case(NamedTuple):
    argv: list[str]
    verb: str
    payload: dict[str, Any]
    remote: dict[str, Any] | None
    out: tuple[str, ...] | None
    """Printed for REPLIES (None: the reply as one JSON line)."""
    empty_out: tuple[str, ...] | None
    """Printed for EMPTY (None: not tried)."""


CASES = [
    Case(
        ["search", "hello"],
        "search",
        {
            "text": "hello",
            "top_k": 5,
            "similarity_threshold": 0.0,
            "success_only": False,
            "namespace": "default",
            "collections": None,
            "task_type": None,
            "mode": "hybrid",
            "group_duplicates": True,
        },
        None,
        (
            "similarity_score  collection  success  duplicates  text               "
            "                                         ",
            "0.912             tasks       True     2           write a parser for "
            "the configuration language write a par...",
            "0.500             knowledge            0           parsers            "
            "                                         ",
        ),
        ("(no rows)",),
    ),
    Case(
        ["search", "hello", "--json"],
        "search",
        {
            "text": "hello",
            "top_k": 5,
            "similarity_threshold": 0.0,
            "success_only": False,
            "namespace": "default",
            "collections": None,
            "task_type": None,
            "mode": "hybrid",
            "group_duplicates": True,
        },
        None,
        None,
        None,
    ),
    Case(
        [
            "search",
            "hello",
            "--top-k",
            "3",
            "--threshold",
            "0.2",
            "--success-only",
            "--collection",
            "tasks",
            "--collection",
            "knowledge",
            "--task-type",
            "t",
            "--namespace",
            "ns",
            "--mode",
            "lexical",
            "--no-group",
        ],
        "search",
        {
            "text": "hello",
            "top_k": 3,
            "similarity_threshold": 0.2,
            "success_only": True,
            "namespace": "ns",
            "collections": ["tasks", "knowledge"],
            "task_type": "t",
            "mode": "lexical",
            "group_duplicates": False,
        },
        None,
        (
            "similarity_score  collection  success  duplicates  text               "
            "                                         ",
            "0.912             tasks       True     2           write a parser for "
            "the configuration language write a par...",
            "0.500             knowledge            0           parsers            "
            "                                         ",
        ),
        ("(no rows)",),
    ),
    Case(
        ["patterns"],
        "patterns",
        {"task_type": None, "namespace": "default", "min_success_rate": 0.7},
        None,
        (
            "task_type  workflow      executions  success_rate  avg_duration  confidence  is_best",
            "code       plan -> code  4           0.750         12.250        0.600       True   ",
            "code       code          4           0.750         12.250        0.600       False  ",
        ),
        ("(no rows)",),
    ),
    Case(
        [
            "patterns",
            "--task-type",
            "code",
            "--min-success-rate",
            "0.5",
            "--namespace",
            "a",
            "--json",
        ],
        "patterns",
        {"task_type": "code", "namespace": "a", "min_success_rate": 0.5},
        None,
        None,
        None,
    ),
    Case(
        ["best-workflow", "--task-type", "code"],
        "best_workflow",
        {"task_type": "code", "optimization_target": "success_rate", "namespace": "default"},
        None,
        ("plan -> code: 75% of 4 runs succeeded, 12.2 s on average",),
        ("no workflow for code has enough runs yet",),
    ),
    Case(
        ["best-workflow", "--task-type", "code", "--target", "cost", "--namespace", "a", "--json"],
        "best_workflow",
        {"task_type": "code", "optimization_target": "cost", "namespace": "a"},
        None,
        None,
        None,
    ),
    Case(
        ["context", "do x"],
        "assemble_context",
        {
            "task_description": "do x",
            "max_tokens": 1000,
            "tiers": ["operational", "working", "longterm"],
            "namespace": "default",
        },
        None,
        (
            "12/50 tokens (heuristic)",
            "[working/search 0.80 e1] a chunk",
            "[longterm/patterns 0.50 patterns] plan -> code",
        ),
        None,
    ),
    Case(
        [
            "context",
            "do x",
            "--max-tokens",
            "50",
            "--tier",
            "working",
            "--tier",
            "longterm",
            "--namespace",
            "a",
            "--json",
        ],
        "assemble_context",
        {
            "task_description": "do x",
            "max_tokens": 50,
            "tiers": ["working", "longterm"],
            "namespace": "a",
        },
        None,
        None,
        None,
    ),
    Case(
        ["task-context", "do x"],
        "task_context",
        {"task_description": "do x", "top_k": 5, "namespace": "default"},
        None,
        (
            "task type: code",
            "- use plan -> code",
            "- avoid y",
        ),
        None,
    ),
    Case(
        ["task-context", "do x", "--top-k", "2", "--namespace", "a", "--json"],
        "task_context",
        {"task_description": "do x", "top_k": 2, "namespace": "a"},
        None,
        None,
        None,
    ),
    Case(
        ["sessions"],
        "sessions",
        {"namespace": "default", "session": None, "limit": 50, "summary": False},
        None,
        (
            "session_id  reason  num_memories  original_size_bytes  compressed_size"
            "_bytes  compression_ratio  num_patterns_extracted  compaction_duration"
            "_ms",
            "s1          ended   5             1000                 250            "
            "        4.000              1                       2.500              "
            "   ",
        ),
        ("(no rows)",),
    ),
    Case(
        ["sessions", "--session", "s1", "--limit", "3", "--namespace", "a", "--json"],
        "sessions",
        {"namespace": "a", "session": "s1", "limit": 3, "summary": True},
        None,
        None,
        None,
    ),
    Case(
        ["learning"],
        "learning",
        {"namespace": "default"},
        None,
        (
            "overall success rate: 75.0% over 4 workflows; 2 patterns learned",
            "task_type  total_executions  success_rate  avg_duration  avg_cost",
            "code       4                 0.750         12.250                ",
        ),
        None,
    ),
    Case(
        ["learning", "--namespace", "a", "--json"],
        "learning",
        {"namespace": "a"},
        None,
        None,
        None,
    ),
    Case(
        ["metrics"],
        "metrics",
        {"namespace": None, "task_type": None},
        None,
        (
            "namespace  task_type  total_executions  successful_executions  success"
            "_rate  avg_duration  avg_cost",
            "a          code       4                 3                      0.750  "
            "       12.250                ",
        ),
        ("(no rows)",),
    ),
    Case(
        ["metrics", "--workflows", "--namespace", "a", "--task-type", "code"],
        "workflows",
        {"namespace": "a", "task_type": "code"},
        None,
        (
            "namespace  task_type  workflow_steps    executions  success_rate  avg_"
            "duration  avg_cost",
            "a          code       ['plan', 'code']  4           0.750         12.2"
            "50        0.500   ",
        ),
        None,
    ),
    Case(
        ["metrics", "--json", "--namespace", "a"],
        "metrics",
        {"namespace": "a", "task_type": None},
        None,
        None,
        None,
    ),
    Case(
        ["sql", "SELECT 1"],
        "sql",
        {"sql": "SELECT 1", "limit": 10000},
        None,
        (
            "n  name",
            "1  x   ",
            "2      ",
            "(truncated at 2 rows; lower limit)",
        ),
        ("(no rows)",),
    ),
    Case(
        ["sql", "SELECT 1", "--limit", "5", "--json"],
        "sql",
        {"sql": "SELECT 1", "limit": 5},
        None,
        None,
        None,
    ),
    Case(
        ["export", "--to", "out"],
        "export",
        {"to": "<abspath>"},
        {"to": "out"},
        (
            "exported at sequence 7 to /somewhere/out:",
            "         workflows: 6 rows",
            "          sessions: 0 rows",
        ),
        None,
    ),
    Case(
        ["export", "--to", "out", "--json"],
        "export",
        {"to": "<abspath>"},
        {"to": "out"},
        None,
        None,
    ),
]


class Asked(NamedTuple):
    verb: str
    payload: dict[str, Any]
    remote: dict[str, Any] | None


class Ran(NamedTuple):
    code: int
    out: str
    err: str
    asked: list[Asked]


async def run(
    monkeypatch: pytest.MonkeyPatch,
    replies: dict[str, dict[str, Any]],
    *argv: str,
) -> Ran:
    """``engram ARGV`` in-process as ``main`` runs it, with ``ask`` answering from
    ``replies`` (so nothing is asked of a data directory or NATS) and recording what it was
    asked."""
    asked: list[Asked] = []

    async def fake_ask(
        _settings: Any,
        verb: str,
        payload: dict[str, Any],
        remote_payload: dict[str, Any] | None = None,
        *,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        asked.append(Asked(verb, payload, remote_payload))
        return replies[verb]

    from engram.cli import memory_verbs

    monkeypatch.setattr(query_verbs, "ask", fake_ask)
    if hasattr(memory_verbs, "ask"):
        monkeypatch.setattr(memory_verbs, "ask", fake_ask)
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        structlog.testing.capture_logs(),
    ):
        try:
            args = build_parser().parse_args(list(argv))
            settings = settings_from_args(args, environ={})
            outcome = args.handler(args, settings)
            code = outcome if isinstance(outcome, int) else await outcome
        except EngramError as exc:
            print(f"engram: {exc}", file=sys.stderr)
            code = exit_code_for(exc)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return Ran(code, out.getvalue(), err.getvalue(), asked)


def _printed(lines: tuple[str, ...]) -> str:
    return "".join(line + "\n" for line in lines)


def _same_request(verb: str, sent: dict[str, Any], expected: dict[str, Any]) -> None:
    model = CATALOGUE[verb].request
    assert validate_request(model, sent) == validate_request(model, expected), (sent, expected)


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c.argv) for c in CASES])
async def test_sub_commands_ask_and_print_as_before(
    case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each sub-command asks the same verb with a request the engine reads the same way as
    the hand-written handler's, and prints the same text (or the reply as JSON with --json),
    for a reply with rows and for an empty one."""
    monkeypatch.chdir(tmp_path)
    argv = [*case.argv, "--data-dir", str(tmp_path / "none")]
    ran = await run(monkeypatch, REPLIES, *argv)
    assert (ran.code, ran.err) == (0, "")
    [asked] = ran.asked
    assert asked.verb == case.verb
    expected = case.payload
    if case.verb == "export":  # a path here when read locally, the name as given for an engine
        expected = {"to": str(tmp_path / "out")}
    _same_request(case.verb, asked.payload, expected)
    if case.remote is None:
        assert asked.remote is None
    else:
        assert asked.remote is not None
        _same_request(case.verb, asked.remote, case.remote)
    if case.out is None:
        assert json.loads(ran.out) == REPLIES[case.verb]
        assert ran.out.count("\n") == 1
    else:
        assert ran.out == _printed(case.out)
    if case.empty_out is not None:
        empty = await run(monkeypatch, EMPTY, *argv)
        assert (empty.code, empty.out) == (0, _printed(case.empty_out))


# -- every catalogued verb, every parameter ---------------------------------------------------


def _cli(info: FieldInfo) -> Cli:
    return next((m for m in info.metadata if isinstance(m, Cli)), Cli())


def _bare(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        [annotation] = [a for a in get_args(annotation) if a is not type(None)]
        return _bare(annotation)
    return annotation


def _given(name: str, info: FieldInfo) -> tuple[list[str], Any]:
    """The command-line words that give field ``name`` a value other than its default, and
    that value, spelled as the catalogue says (``--field-name`` unless Cli says otherwise)."""
    cli = _cli(info)
    bare = _bare(info.annotation)
    flag = cli.flag or cli.repeat or cli.negate or "--" + name.replace("_", "-")
    if bare is bool:
        return [flag], not info.default
    if get_origin(bare) is list:
        item = _bare(get_args(bare)[0])
        values = list(get_args(item))[-2:] if get_origin(item) is Literal else ["a", "b"]
        return [word for v in values for word in (flag, str(v))], values
    if get_origin(bare) is Literal:
        value: Any = next(c for c in reversed(get_args(bare)) if c != info.default)
    else:
        value = {int: 2, float: 0.25, str: f"x-{name}"}[bare]
    return ([str(value)] if cli.positional else [flag, str(value)]), value


VERBS = [spec for spec in CATALOGUE.values() if spec.name != "status"]


@pytest.mark.parametrize("spec", VERBS, ids=[spec.name for spec in VERBS])
async def test_every_verb_takes_every_parameter_from_the_command_line(
    spec: VerbSpec, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each catalogued verb is asked by its sub-command (``cli``, or ``cli_via``'s switch),
    and each request field not hidden is an argument spelled as the catalogue says, whose
    value reaches the request unchanged; hidden fields are not sent (unless the sub-command
    sets them itself)."""
    monkeypatch.chdir(tmp_path)
    words = (spec.cli or str(spec.cli_via)).split()
    expected: dict[str, Any] = {}
    for name, info in spec.request.model_fields.items():
        if _cli(info).hidden:
            continue
        given, value = _given(name, info)
        words += given
        expected[name] = value
    ran = await run(monkeypatch, {spec.name: {"answer": 1}}, *words, "--json")
    assert (ran.code, ran.err, ran.out) == (0, "", '{"answer": 1}\n')
    [asked] = ran.asked
    assert asked.verb == spec.name
    sent = asked.remote if asked.remote is not None else asked.payload
    hidden = {n for n, i in spec.request.model_fields.items() if _cli(i).hidden}
    assert {k: v for k, v in sent.items() if k not in hidden} == expected
    assert set(sent) & hidden <= {"summary"}  # sessions --json asks for the summaries
    validate_request(spec.request, sent)


def test_every_verb_has_its_sub_command() -> None:
    """The sub-commands of the query verbs are exactly the catalogue's ``cli`` names, each
    with the verb's summary as its help; a ``cli_via`` verb is a switch of the named one;
    status keeps its own handler (it adds the stream's state to the engine's reply)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    derived = {
        name for name, p in sub.choices.items() if p.get_default("query_command") is not None
    }
    assert derived == {spec.cli for spec in CATALOGUE.values() if spec.cli}
    for spec in CATALOGUE.values():
        if spec.cli:
            assert helps[spec.cli] == spec.summary
        else:
            assert spec.cli_via is not None
            command, switch = spec.cli_via.split()
            assert switch in sub.choices[command]._option_string_actions
    assert sub.choices["status"].get_default("handler") is query_verbs.cmd_status


@pytest.mark.parametrize(
    "argv",
    [
        ["sessions", "--session-id", "s"],
        ["sessions", "--summary"],
        ["search", "x", "--vector", "1"],
    ],
    ids=["session-id", "summary", "vector"],
)
async def test_hidden_fields_are_not_offered(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fields marked Cli(hidden=True) are no options: argparse refuses them (exit 2)."""
    ran = await run(monkeypatch, {}, *argv)
    assert ran.code == 2
    assert "unrecognized arguments" in ran.err
    assert ran.asked == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "x", "--top-k", "0"], "top_k must be between 1 and 1000, got 0"),
        (["task-context", "x", "--top-k", "1001"], "top_k must be between 1 and 1000, got 1001"),
        (["context", "x", "--max-tokens", "0"], "max_tokens must be at least 1, got 0"),
        (
            ["patterns", "--min-success-rate", "1.5"],
            "min_success_rate must be between 0 and 1, got 1.5",
        ),
        (["sql", "SELECT 1", "--limit", "20000"], "limit must be between 1 and 10000, got 20000"),
        (
            ["best-workflow", "--task-type", "t" * 300],
            "task_type has 300 characters; at most 256 are accepted",
        ),
        (["extract-pattern", ".*", "--min-samples", "0"], "min_samples must be at least 1, got 0"),
        (["sessions", "--limit", "0"], "limit must be at least 1, got 0"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
async def test_a_bad_value_exits_2_naming_the_parameter_before_asking(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the verb's request model refuses exits 2 with one line naming the parameter,
    and nothing is asked of a data directory or an engine."""
    ran = await run(monkeypatch, {}, *argv)
    assert (ran.code, ran.out, ran.err) == (2, "", f"engram: {message}\n")
    assert ran.asked == []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["search", "x", "--top-k", "many"], "--top-k: invalid int value: 'many'"),
        (["search", "x", "--mode", "fuzzy"], "--mode: invalid choice: 'fuzzy'"),
        (["context", "x", "--tier", "all"], "--tier: invalid choice: 'all'"),
        (["best-workflow"], "the following arguments are required: --task-type"),
        (["export"], "the following arguments are required: --to"),
        (["sql"], "the following arguments are required: query"),
    ],
)
async def test_argparse_refuses_what_it_can_read_as_before(
    argv: list[str], needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What argparse can tell (a number, a choice, a required argument) is refused by it, exit
    2 naming the option, as the hand-written parser did."""
    ran = await run(monkeypatch, {}, *argv)
    assert ran.code == 2
    assert needle in ran.err
    assert ran.asked == []


async def test_bad_value_is_refused_before_any_network(tmp_path: Path) -> None:
    """The real console script: ``engram search x --top-k 0`` against a server that is down
    exits 2 naming top_k (not 1 for the unreachable server: it never tried to connect)."""
    result = await engram(
        "search",
        "x",
        "--top-k",
        "0",
        "--nats-url",
        "nats://127.0.0.1:1",
        "--data-dir",
        tmp_path / "d",
        cwd=tmp_path,
    )
    assert (result.code, result.out) == (2, "")
    assert result.err == "engram: top_k must be between 1 and 1000, got 0\n"


# -- verbs without a renderer of their own -----------------------------------------------------


async def test_verbs_without_a_renderer_print_a_table_or_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply that is one list of records prints as a table of its plain columns; any other
    reply as indented JSON; --json prints the reply on one line as for every verb."""
    learned = {
        "pattern_id": "p1",
        "pattern_type": "workflow",
        "namespace": "a",
        "task_type": "code",
        "version": 2,
        "success_rate": 0.75,
        "confidence": 0.5,
        "sample_size": 4,
        "workflow_steps": ["plan", "code"],
    }
    replies = {
        "task_metrics": {"metrics": [TM]},
        "list_patterns": {"patterns": [learned]},
        "search_patterns": {"patterns": []},
        "checkpoints": {"checkpoints": {"tables": 7}},
        "extract_pattern": {"pattern": None},
    }
    table = await run(monkeypatch, replies, "task-metrics")
    assert table.out == _printed(
        (
            "task_type  namespace  total_executions  successful_executions  success_rate  "
            "avg_duration  avg_cost",
            "code       a          4                 3                      0.750         "
            "12.250                ",
        )
    )
    patterns = await run(monkeypatch, replies, "list-patterns")
    header = patterns.out.splitlines()[0].split()
    assert header == [
        "pattern_id",
        "pattern_type",
        "namespace",
        "task_type",
        "version",
        "success_rate",
        "confidence",
        "sample_size",
    ]  # workflow_steps is a list: not a column
    assert (await run(monkeypatch, replies, "search-patterns")).out == "(no rows)\n"
    checkpoints = await run(monkeypatch, replies, "checkpoints")
    assert checkpoints.out == '{\n  "checkpoints": {\n    "tables": 7\n  }\n}\n'
    extracted = await run(monkeypatch, replies, "extract-pattern", ".*auth.*")
    assert extracted.out == '{\n  "pattern": null\n}\n'
    assert extracted.asked[0].payload == {
        "task_type_pattern": ".*auth.*",
        "min_samples": 5,
        "pattern_type": "success",
    }
    one_line = await run(monkeypatch, replies, "task-metrics", "--json")
    assert one_line.out == json.dumps(replies["task_metrics"]) + "\n"
