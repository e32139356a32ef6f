"""A PromQL-shaped check without Prometheus: the metric names an expression reads, its functions,
and whether its brackets balance. Not a parser (promtool is one); enough to catch a renamed
metric, a misspelt function or a lost bracket in deploy/prometheus and deploy/grafana."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FUNCTIONS", "Shape", "grafana_to_promql", "shape"]

AGGREGATORS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio".split()
)
FUNCTIONS = AGGREGATORS | frozenset(
    "abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min "
    "count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor "
    "histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev "
    "histogram_stdvar histogram_sum holt_winters hour idelta increase irate label_join "
    "label_replace last_over_time ln log10 log2 max_over_time min_over_time minute month "
    "predict_linear present_over_time quantile_over_time rate resets round scalar sgn sort "
    "sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time time timestamp vector year "
    "sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh deg rad pi".split()
)
"""PromQL's functions and aggregation operators (Prometheus 2.x and 3.x)."""
_LABEL_LIST_KEYWORDS = frozenset("by without on ignoring group_left group_right".split())
_KEYWORDS = _LABEL_LIST_KEYWORDS | frozenset("and or unless bool offset atan2 inf nan".split())
_PAIRS = {"(": ")", "[": "]", "{": "}"}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w:]))
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<bracket>[()\[\]{}])
  | (?P<operator>==|!=|=~|!~|>=|<=|[-+*/%^<>=,@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Shape:
    """What one expression reads and calls, and what is wrong with its form (empty: nothing)."""

    metrics: frozenset[str]
    functions: frozenset[str]
    problems: tuple[str, ...]


def grafana_to_promql(expr: str) -> str:
    """A Grafana target with its variables replaced by something PromQL accepts."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", "x", expr)


def _tokens(expr: str) -> tuple[list[tuple[str, str]], list[str]]:
    tokens: list[tuple[str, str]] = []
    problems: list[str] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            problems.append(f"unexpected {expr[position : position + 10]!r} at {position}")
            break
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens, problems


def _balanced(tokens: list[tuple[str, str]]) -> list[str]:
    stack: list[str] = []
    for kind, text in tokens:
        if kind != "bracket":
            continue
        if text in _PAIRS:
            stack.append(text)
        elif not stack or _PAIRS[stack.pop()] != text:
            return [f"unbalanced {text!r}"]
    return [f"unclosed {stack[-1]!r}"] if stack else []


def _skip_group(tokens: list[tuple[str, str]], start: int) -> int:
    """The index after the bracket group opening at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        kind, text = tokens[index]
        if kind == "bracket" and text in _PAIRS:
            depth += 1
        elif kind == "bracket":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(tokens)


def shape(expr: str) -> Shape:
    """The metric names ``expr`` reads (identifiers that are neither functions, keywords, label
    names nor inside label matchers or ranges), the functions it calls, and its problems:
    unknown functions, unbalanced brackets, characters PromQL does not have."""
    tokens, problems = _tokens(expr)
    problems += _balanced(tokens)
    metrics: set[str] = set()
    functions: set[str] = set()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "bracket" and text in "{[":
            index = _skip_group(tokens, index)  # label matchers, ranges and subqueries
            continue
        if kind == "ident" and text in _LABEL_LIST_KEYWORDS and following == ("bracket", "("):
            index = _skip_group(tokens, index + 1)  # by (le, verb), on (instance), ...
            continue
        if kind == "ident" and text.lower() not in _KEYWORDS:
            aggregating = following[0] == "ident" and following[1] in ("by", "without")
            if following == ("bracket", "(") or aggregating:  # f(...), sum by (l) (...)
                functions.add(text)
                if text not in FUNCTIONS:
                    problems.append(f"unknown function {text}")
            else:
                metrics.add(text)
        index += 1
    return Shape(frozenset(metrics), frozenset(functions), tuple(problems))
