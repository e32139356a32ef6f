"""The import contract: every layer imports only the layers below it, and the projections are
independent of each other but for the edges written down here.

Read from the source (every ``import`` and ``from ... import``, those inside functions too), so
an upward import fails the build whether or not the module is imported by a test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS: dict[str, frozenset[str]] = {
    "engine": frozenset({"engine"}),
    "projections": frozenset({"engine", "projections"}),
    "consumers": frozenset({"engine", "projections", "consumers"}),
    "engram": frozenset({"engine", "projections", "consumers", "engram"}),
}
"""What each top-level package may import of the project (lowest layer first)."""

PROJECTION_EDGES: dict[str, frozenset[str]] = {
    "vectors": frozenset({"embedders", "lexical"}),  # it embeds, and fuses with the words
    "sessions": frozenset({"learning"}),  # a summary names the patterns its workflows feed
    "snapshots": frozenset({"tables", "learning", "sessions"}),  # packs each one's files
    # Context draws on every store: recent events, similar memories, the best workflow.
    "context": frozenset({"vectors", "learning", "embedders"}),
}
"""The only imports allowed between the sub-packages of ``projections`` (the others are
independent: tables, learning, lexical, embedders). Modules at the top of
``projections`` (records, base, identity, ...) are shared by all; ``projection_set`` composes."""


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``module`` imports (absolute names), with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                source = node.module or ""
            else:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            yield source, node.lineno
            # ``from projections import learning`` imports the sub-package projections.learning.
            for alias in node.names:
                yield f"{source}.{alias.name}", node.lineno


def _check(package: str, module: str, path: Path) -> list[str]:
    """The imports of one module that break the contract, each with its place."""
    found: list[str] = []
    allowed = LAYERS[package]
    for imported, line in _imports(module, path):
        where = f"{path.name}:{line} ({module})"
        top = imported.split(".")[0]
        if top in LAYERS and top not in allowed:
            found.append(f"{where} imports {imported} (upward)")
        elif package == "projections" and top == "projections":
            found.extend(_sideways(module, imported, where))
    return found


COMPOSERS = frozenset({"projections", "projections.projection_set"})
"""Modules of projections that may import every sub-package (the package itself re-exports,
the projection set composes). Every other top-level module is shared by the sub-packages and
imports none of them."""


def _sideways(module: str, imported: str, where: str) -> list[str]:
    mine, theirs = module.split("."), imported.split(".")
    if module in COMPOSERS or len(theirs) < 2:
        return []  # a composer, or the package itself
    target = theirs[1]
    if not (ROOT / "projections" / target).is_dir():
        return []  # a shared top-level module
    source = mine[1]
    if not (ROOT / "projections" / source).is_dir():
        return [f"{where} imports {imported} (a shared module may not import a sub-package)"]
    if target == source:
        return []
    if target in PROJECTION_EDGES.get(source, frozenset()):
        return []
    return [f"{where} imports {imported} (projections.{source} may not import {target})"]


def test_no_layer_imports_a_layer_above_it_or_a_sibling_projection() -> None:
    """engine imports none of the others, projections only engine, consumers engine and
    projections, engram all; sub-packages of projections import each other only along
    PROJECTION_EDGES."""
    found: list[str] = []
    for package in LAYERS:
        modules = list(_modules(package))
        assert len(modules) >= 5, f"{package}: {len(modules)} modules found (moved?)"
        found.extend(v for module, path in modules for v in _check(package, module, path))
    assert found == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("engine.planted", "from consumers.runner import ProjectionRunner\n", "upward"),
        ("engine.planted", "def f():\n    import engram.cli.main\n", "upward"),
        ("projections.planted", "from consumers import replay\n", "upward"),
        ("consumers.planted", "from engram.app import Engine\n", "upward"),
        ("projections.tables.planted", "from projections.learning import state\n", "may not"),
        ("projections.tables.planted", "from ..learning import state\n", "may not"),
        ("engine.stream.planted", "from ...consumers import runner\n", "upward"),
        ("projections.tables.planted", "from projections import learning\n", "may not"),
        ("projections.tables.planted", "from .. import learning\n", "may not"),
        ("projections.planted", "from projections.vectors import index\n", "shared module"),
        (
            "projections.planted",
            "import typing\nif typing.TYPE_CHECKING:\n    import consumers\n",
            "upward",
        ),
    ],
)
def test_the_contract_catches_a_planted_violation(
    module: str, source: str, expected: str, tmp_path: Path
) -> None:
    """The check fails on an upward import (also one inside a function, or relative) and on a
    sideways import between projections."""
    path = tmp_path / "planted.py"
    path.write_text(source)
    found = _check(module.split(".")[0], module, path)
    assert found and all(expected in v for v in found), found


def test_allowed_imports_pass(tmp_path: Path) -> None:
    """A projection importing the kernel, a shared module and an allowed sibling is fine."""
    path = tmp_path / "planted.py"
    path.write_text(
        "from engine.events import Event\n"
        "from projections.records import SequencedEvent\n"
        "from projections.embedders import get_embedder\n"
        "from . import index\n"
    )
    assert _check("projections", "projections.vectors.planted", path) == []
