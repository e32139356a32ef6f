"""The query sub-commands, derived from the verb catalogue (``engine.verbs.CATALOGUE``).

Each catalogued verb with a ``cli`` name is one sub-command, its help the verb's summary and its
arguments the fields of its request model:

- a field is an option ``--field-name`` (``Cli(flag=...)`` renames it), typed from its
  annotation: ``str``, ``int``, ``float``; a ``Literal`` offers its values as choices; a ``bool``
  is a switch that sets it (``Cli(negate=...)``: one that clears a field defaulting to true); a
  list is an option given once per item (``Cli(repeat=...)`` names it);
- ``Cli(positional=True)``: an argument, named ``Cli.flag`` or the field's name; always required;
- ``Cli(hidden=True)``: not offered (the sub-command sets it itself, see ``HIDDEN``);
- help: the field's description; a field without a default is a required option;
- default: the model's, except ``None`` where the model reads ``None`` as its default (e.g. the
  namespace): ``None`` means "not given", and what is not given is not sent.

A verb with ``cli_via`` (``"metrics --workflows"``) adds its switch to that sub-command, which
then asks it instead. An operator verb's sub-command (status, checkpoints, sql, export) has
``--namespace`` too, which is not part of its request: it asks the engine owning that namespace
(on ``engram.query.<namespace>.<verb>``) instead of the one owning every namespace.

The arguments given, with the parser's defaults, are the request, validated here by the verb's
model before anything is asked (a bad value exits 2 naming the parameter), then asked of the
data directory or the engine (``query_verbs.ask``) and printed by the verb's renderer
(``RENDERERS``), or as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from engine.settings import Settings
from engine.verbs import CATALOGUE, VerbSpec, validate_request
from engine.verbs.fields import Cli
from engram.cli import memory_verbs, query_verbs
from engram.cli._common import EXIT_OK, emit_json

__all__ = [
    "HANDLERS",
    "HIDDEN",
    "RENDERERS",
    "Argument",
    "QueryCommand",
    "add_query_verbs",
    "cmd_query",
    "print_reply",
    "request_arguments",
]

MakeParser = Callable[[Any, str, str], argparse.ArgumentParser]
"""Makes one sub-command with the flags every verb shares (``main._verb``)."""
Renderer = Callable[[dict[str, Any], Any], None]
"""Prints a verb's reply as text; takes the reply and the validated request."""
Handler = Callable[[argparse.Namespace, Settings], Any]


def print_reply(reply: dict[str, Any], _request: Any = None) -> None:
    """A verb without a renderer: a reply holding one list of records as a table of their
    plain columns, anything else as indented JSON."""
    lists = [value for value in reply.values() if isinstance(value, list)]
    if len(lists) == 1 and all(isinstance(row, dict) for row in lists[0]):
        rows: list[dict[str, Any]] = lists[0]
        plain = [k for k, v in rows[0].items() if not isinstance(v, list | dict)] if rows else []
        query_verbs.print_table(rows, plain)
        if reply.get("truncated"):
            print(f"(truncated at {len(rows)} rows)")
    else:
        print(json.dumps(reply, indent=2, default=str, ensure_ascii=False))


RENDERERS: dict[str, Renderer] = {
    "metrics": query_verbs.print_metrics,
    "workflows": query_verbs.print_workflows,
    "sql": query_verbs.print_sql,
    "export": query_verbs.print_export,
    "patterns": memory_verbs.print_patterns,
    "best_workflow": memory_verbs.print_best_workflow,
    "learning": memory_verbs.print_learning,
    "sessions": memory_verbs.print_sessions,
    "search": memory_verbs.print_search,
    "task_context": memory_verbs.print_task_context,
    "assemble_context": memory_verbs.print_context,
}
"""How each verb's reply is printed as text (the others: ``print_reply``)."""

HIDDEN: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    # The table shows no summaries: asked for with --json only.
    "sessions": lambda args: {"summary": bool(args.json)},
}
"""Values a sub-command sets itself for fields it does not offer (``Cli(hidden=True)``)."""


def _local_export(payload: dict[str, Any]) -> dict[str, Any]:
    # Read from --data-dir the directory is a path here; an engine gets the name as given.
    return {**payload, "to": os.path.abspath(payload["to"])}


LOCAL: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"export": _local_export}
"""The request as a data directory read here gets it, where it differs from the engine's."""

HANDLERS: dict[str, Handler] = {"status": query_verbs.cmd_status}
"""Verbs whose sub-command does more than ask and print (status adds the stream's state)."""


_RESERVED = {"handler", "query_command"}
"""Set on every derived sub-command's parsed arguments (``set_defaults``)."""


@dataclass(frozen=True, slots=True)
class Argument:
    """One request field offered on the command line: where argparse puts it."""

    field: str
    dest: str


@dataclass(frozen=True, slots=True)
class QueryCommand:
    """What a derived sub-command's parsed arguments mean."""

    spec: VerbSpec
    """The verb it asks."""
    arguments: tuple[Argument, ...]
    switches: tuple[tuple[str, VerbSpec], ...] = ()
    """(dest, verb): asked instead when that switch is given (``metrics --workflows``)."""

    def request(self, args: argparse.Namespace) -> tuple[VerbSpec, dict[str, Any]]:
        """The verb to ask and its request: every argument given or defaulted, by field name
        (``None``, "not given", is left out: the model supplies its default)."""
        spec = next((via for dest, via in self.switches if getattr(args, dest)), self.spec)
        fields = spec.request.model_fields
        payload = {
            a.field: getattr(args, a.dest)
            for a in self.arguments
            if a.field in fields and getattr(args, a.dest) is not None
        }
        return spec, payload


def _cli(info: FieldInfo) -> Cli:
    return next((item for item in info.metadata if isinstance(item, Cli)), Cli())


def _bare(annotation: Any) -> Any:
    """The annotation without ``Annotated`` and without ``| None``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"{annotation} has no command-line spelling")
        return _bare(members[0])
    return annotation


def _typed(annotation: Any, where: str) -> dict[str, Any]:
    """argparse's ``type`` and ``choices`` for one value of ``annotation``."""
    if get_origin(annotation) is Literal:
        choices = list(get_args(annotation))
        kind = type(choices[0])
        return {"choices": choices} if kind is str else {"choices": choices, "type": kind}
    if annotation is str:
        return {}
    if annotation in (int, float):
        return {"type": annotation}
    raise TypeError(f"{where}: {annotation} has no command-line spelling")


def _default(name: str, info: FieldInfo) -> Any:
    """The parser's default: the model's; for ``--namespace`` None where the model reads None as
    its default (the option has always defaulted to None, the engine's "default"), while the
    other choices (``--mode``, ``--target``) show the default they mean."""
    if info.is_required() or info.default_factory is not None or info.default is None:
        return None
    if name != "namespace":
        return info.default
    annotation: Any = (
        Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    )
    try:
        if TypeAdapter(annotation).validate_python(None) == info.default:
            return None
    except ValidationError:
        pass
    return info.default


def request_arguments(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    offered: tuple[Argument, ...] = (),
) -> tuple[Argument, ...]:
    """Add an argument to ``parser`` for each field of ``model`` not ``offered`` already (see
    the module's docstring); raises TypeError for a field it cannot spell."""
    taken = {action.dest for action in parser._actions} | _RESERVED
    skip = {a.field for a in offered}
    arguments: list[Argument] = []
    for name, info in model.model_fields.items():
        cli = _cli(info)
        if cli.hidden or name in skip:
            continue
        where = f"{model.__name__}.{name}"
        bare = _bare(info.annotation)
        options: dict[str, Any] = {"help": info.description}
        if cli.positional:
            dest = cli.flag or name
            names = [dest]
            options.update(_typed(bare, where))
        else:
            flag = cli.flag or cli.repeat or cli.negate or "--" + name.replace("_", "-")
            names = [flag]
            dest = name if cli.negate else flag.lstrip("-").replace("-", "_")
            options["dest"] = dest
            if bare is bool:
                if cli.negate:
                    if info.default is not True:
                        raise TypeError(f"{where}: Cli(negate=...) needs a default of true")
                    options.update(action="store_false", help=f"do not {info.description}")
                elif info.default is False:
                    options["action"] = "store_true"
                else:
                    raise TypeError(f"{where}: a switch needs a default of false (or negate)")
            elif get_origin(bare) is list:
                if not cli.repeat:
                    raise TypeError(f"{where}: a list needs Cli(repeat=...)")
                options.update(action="append", **_typed(_bare(get_args(bare)[0]), where))
            else:
                options.update(_typed(bare, where), default=_default(name, info))
                if info.is_required():
                    options["required"] = True
        if dest in taken:
            raise TypeError(f"{where}: {dest} is taken by another argument of the command")
        taken.add(dest)
        parser.add_argument(*names, **options)
        arguments.append(Argument(name, dest))
    return tuple(arguments)


def add_query_verbs(sub: Any, make_parser: MakeParser) -> None:
    """One sub-command per catalogued verb with a ``cli`` name, in the catalogue's order."""
    via: dict[str, list[VerbSpec]] = {}
    for spec in CATALOGUE.values():
        if spec.cli is None:
            if spec.cli_via is None:
                raise TypeError(f"query verb {spec.name} has neither cli nor cli_via")
            via.setdefault(spec.cli_via.split()[0], []).append(spec)
    for spec in CATALOGUE.values():
        if spec.cli is None:
            continue
        parser = make_parser(sub, spec.cli, spec.summary)
        arguments = request_arguments(parser, spec.request)
        switches: list[tuple[str, VerbSpec]] = []
        for other in via.pop(spec.cli, []):
            assert other.cli_via is not None
            switch = other.cli_via.split()[1]
            dest = switch.lstrip("-").replace("-", "_")
            parser.add_argument(switch, action="store_true", dest=dest, help=other.summary)
            arguments += request_arguments(parser, other.request, arguments)
            switches.append((dest, other))
        if spec.scope == "operator":
            parser.add_argument(
                "--namespace",
                help="ask the engine owning this namespace (default: the one owning every "
                "namespace)",
            )
        command = QueryCommand(spec, arguments, tuple(switches))
        parser.set_defaults(handler=HANDLERS.get(spec.name, cmd_query), query_command=command)
    if via:
        raise TypeError(f"cli_via names no sub-command: {sorted(via)}")


async def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    """A derived sub-command: validate the request, ask it, print the reply."""
    command: QueryCommand = args.query_command
    spec, payload = command.request(args)
    payload.update(HIDDEN.get(spec.name, _nothing)(args))
    request = validate_request(spec.request, payload)  # UsageError (exit 2) before any network
    namespace = getattr(args, "namespace", None) if spec.scope == "operator" else None
    local = LOCAL.get(spec.name)
    if local is None:
        reply = await query_verbs.ask(settings, spec.name, payload, namespace=namespace)
    else:
        reply = await query_verbs.ask(
            settings, spec.name, local(payload), remote_payload=payload, namespace=namespace
        )
    if args.json:
        emit_json(reply)
    else:
        consistency = reply.pop("consistency", None)
        RENDERERS.get(spec.name, print_reply)(reply, request)
        if isinstance(consistency, dict) and consistency.get("stale"):
            print(
                f"stale: this answer reflects stream sequence {consistency.get('sequence')}, "
                f"not yet {request.min_sequence} (the engine's wait bound passed)",
                file=sys.stderr,
            )
    return EXIT_OK


def _nothing(_args: argparse.Namespace) -> dict[str, Any]:
    return {}
