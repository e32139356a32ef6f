"""The filter of an item search: which values match (pure; LangGraph's ``SearchOp.filter``).

A filter maps top-level fields of the value to a condition:

- a plain value: the field equals it (JSON equality: ``1`` equals ``1.0``, ``true`` is not
  ``1``, objects and lists compare by content);
- an object of operators (every key starting with ``$``): each must hold: ``$eq``, ``$ne``,
  ``$gt``, ``$gte``, ``$lt``, ``$lte``;
- an object without operators: the field is an object matching it, recursively (its fields
  that the condition does not name are free);
- a list: the field is a list of that length whose items match one by one.

A missing field is ``null``: it equals only ``null``, and ``$ne`` anything else holds (as in
LangGraph's InMemoryStore). The ordering operators compare numbers with numbers and texts with
texts (code point order); any other pair, a missing field included, does not match (LangGraph's
InMemoryStore would raise on it; its Postgres store compares the texts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_FILTER_DEPTH", "OPERATORS", "check_filter", "matches"]

OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
MAX_FILTER_DEPTH = 16
"""How deep a filter's objects and lists may nest."""


def _is_operators(condition: Mapping[str, Any]) -> bool:
    return any(isinstance(k, str) and k.startswith("$") for k in condition)


def check_filter(filter: Mapping[str, Any]) -> Mapping[str, Any]:
    """``filter`` when every operator is known and nothing nests deeper than
    ``MAX_FILTER_DEPTH``; ValueError naming the place (``filter.score.$gt``) otherwise."""
    _check(filter, "filter", 0)
    return filter


def _check(condition: Any, where: str, depth: int) -> None:
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"{where} nests deeper than {MAX_FILTER_DEPTH} levels")
    if isinstance(condition, Mapping):
        if _is_operators(condition):
            for key, operand in condition.items():
                if key not in OPERATORS:
                    raise ValueError(
                        f"{where}.{key} is not an operator a filter knows "
                        f"({', '.join(sorted(OPERATORS))}); a condition is either operators "
                        "or fields, not both"
                    )
                _check(operand, f"{where}.{key}", depth + 1)
            return
        for key, inner in condition.items():
            _check(inner, f"{where}.{key}", depth + 1)
    elif isinstance(condition, list):
        for i, inner in enumerate(condition):
            _check(inner, f"{where}[{i}]", depth + 1)


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """True when ``value`` meets every condition of ``filter`` (None or empty: always)."""
    if not filter:
        return True
    return all(_meets(value.get(field), condition) for field, condition in filter.items())


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers; numbers compare by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) or _number(b):
        return _number(a) and _number(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _ordered(a: Any, b: Any) -> bool:
    return (_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))


def _apply(value: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return _equal(value, operand)
    if operator == "$ne":
        return not _equal(value, operand)
    if not _ordered(value, operand):
        return False
    if operator == "$gt":
        return bool(value > operand)
    if operator == "$gte":
        return bool(value >= operand)
    if operator == "$lt":
        return bool(value < operand)
    if operator == "$lte":
        return bool(value <= operand)
    raise ValueError(f"unknown filter operator {operator!r}")


def _meets(value: Any, condition: Any) -> bool:
    if isinstance(condition, Mapping):
        if _is_operators(condition):
            return all(_apply(value, op, operand) for op, operand in condition.items())
        if not isinstance(value, dict):
            return False
        return all(_meets(value.get(k), inner) for k, inner in condition.items())
    if isinstance(condition, list):
        return (
            isinstance(value, list)
            and len(value) == len(condition)
            and all(_meets(v, c) for v, c in zip(value, condition, strict=True))
        )
    return _equal(value, condition)
