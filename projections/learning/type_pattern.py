"""Task-type patterns for ``extract_pattern``: a regular-expression subset matched in linear time.

A client's pattern never reaches a backtracking engine: Python's ``re`` takes exponential time
on patterns such as ``(((.+)+)+)+X``, and one request would hold the interpreter for minutes.
The pattern is parsed here into a Thompson automaton and run as a lazily built DFA (the way RE2
does it): each character of a task type costs at most one pass over the automaton's states,
whatever the pattern. Supported, with ``re.fullmatch``'s meaning (the whole task type must
match): literals, ``.``, classes ``[a-z_]`` / ``[^0-9]``, ``\\d \\w \\s`` (and ``\\D \\W \\S``),
escaped punctuation, groups ``( )`` / ``(?: )``, ``|``, ``*``, ``+``, ``?`` and ``{m}``,
``{m,}``, ``{m,n}`` (lazy ``*?`` etc. accepted: for a whole match they mean the same), ``^`` at
the very start and ``$`` at the very end. Refused with a UsageError naming the construct:
backreferences, lookarounds, flags, named groups, possessive quantifiers, other anchors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.errors import UsageError

__all__ = [
    "MATCH_BUDGET_S",
    "MAX_PATTERN_CHARS",
    "MAX_REPEAT",
    "MAX_STATES",
    "TaskTypePattern",
]

MAX_PATTERN_CHARS = 256
MAX_REPEAT = 100
"""The largest count in ``{m,n}``."""
MAX_STATES = 2_000
"""Automaton states a pattern may compile to (counted repetitions copy their operand)."""
MAX_GROUP_DEPTH = 32
MATCH_BUDGET_S = 2.0
"""Wall time one ``filter`` may spend before it gives up (a pattern times many task types)."""
_DFA_CACHE = 10_000
"""Cached DFA transitions per pattern; the cache is emptied when full (memory stays bounded)."""

Predicate = Callable[[str], bool]


# --- the parse tree -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Char:
    test: Predicate


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    item: _Node
    least: int
    most: int | None  # None: unbounded


_Node = _Char | _Seq | _Alt | _Repeat

_CLASS_ESCAPES: dict[str, Predicate] = {
    "d": str.isdecimal,
    "D": lambda c: not c.isdecimal(),
    "w": lambda c: c.isalnum() or c == "_",
    "W": lambda c: not (c.isalnum() or c == "_"),
    "s": str.isspace,
    "S": lambda c: not c.isspace(),
}
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}


def _literal(char: str) -> Predicate:
    return char.__eq__


def _any_but_newline(char: str) -> bool:
    return char != "\n"


class _Parser:
    """Recursive descent over the pattern; every refusal names the construct and its offset."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.at = 0
        self.depth = 0

    def refuse(self, what: str) -> UsageError:
        return UsageError(
            f"task_type_pattern: {what} at offset {self.at} of {self.text!r} is not supported "
            "(a safe regular-expression subset: literals, ., [classes], \\d \\w \\s, groups, |, "
            "*, +, ?, {m,n})"
        )

    def peek(self) -> str | None:
        return self.text[self.at] if self.at < len(self.text) else None

    def take(self) -> str:
        char = self.text[self.at]
        self.at += 1
        return char

    def parse(self) -> _Node:
        if self.text.startswith("^"):
            self.at = 1
        end = len(self.text)
        if self.text.endswith("$") and not self.text.endswith("\\$") and end > self.at:
            self.text = self.text[:-1]
        node = self.alternation()
        if self.at != len(self.text):  # only an unbalanced ")" stops the top level early
            raise self.refuse("an unmatched ')'")
        return node

    def alternation(self) -> _Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.take()
            options.append(self.sequence())
        return options[0] if len(options) == 1 else _Alt(tuple(options))

    def sequence(self) -> _Node:
        items: list[_Node] = []
        while (char := self.peek()) is not None and char not in "|)":
            items.append(self.quantified(self.atom()))
        return items[0] if len(items) == 1 else _Seq(tuple(items))

    def atom(self) -> _Node:
        char = self.take()
        if char == "(":
            return self.group()
        if char == "[":
            return _Char(self.char_class())
        if char == ".":
            return _Char(_any_but_newline)
        if char == "\\":
            return _Char(self.escape(in_class=False))
        if char in "*+?{":
            self.at -= 1
            raise self.refuse(f"a quantifier {char!r} with nothing to repeat")
        if char in "^$":
            self.at -= 1
            raise self.refuse(f"the anchor {char!r} inside the pattern (only at its ends)")
        return _Char(_literal(char))

    def group(self) -> _Node:
        if self.peek() == "?":
            if self.text.startswith("?:", self.at):
                self.at += 2
            else:
                self.at -= 1
                raise self.refuse("a group with '(?' (lookaround, flag or named group)")
        self.depth += 1
        if self.depth > MAX_GROUP_DEPTH:
            raise self.refuse(f"groups nested deeper than {MAX_GROUP_DEPTH}")
        inner = self.alternation()
        if self.peek() != ")":
            raise self.refuse("a '(' without its ')'")
        self.take()
        self.depth -= 1
        return inner

    def escape(self, *, in_class: bool) -> Predicate:
        if self.peek() is None:
            raise self.refuse("a trailing backslash")
        char = self.take()
        if char in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[char]
        if char in _CHAR_ESCAPES:
            return _literal(_CHAR_ESCAPES[char])
        if char.isalnum():
            self.at -= 2
            kind = "a backreference" if char.isdigit() and not in_class else f"the escape \\{char}"
            raise self.refuse(kind)
        return _literal(char)

    def char_class(self) -> Predicate:
        negated = self.peek() == "^"
        if negated:
            self.take()
        tests: list[Predicate] = []
        first = True
        while True:
            char = self.peek()
            if char is None:
                raise self.refuse("a '[' without its ']'")
            if char == "]" and not first:
                self.take()
                break
            first = False
            self.take()
            if char == "\\":
                low_test = self.escape(in_class=True)
                low = _single(low_test)
            else:
                low_test, low = _literal(char), char
            if self.peek() == "-" and self.text[self.at + 1 : self.at + 2] not in ("]", ""):
                self.take()
                high = self.take()
                if high == "\\":
                    high = _single(self.escape(in_class=True)) or ""
                if low is None or not high:
                    raise self.refuse("a range with a class escape at one end")
                if ord(high) < ord(low):
                    raise self.refuse(f"the reversed range {low}-{high}")
                tests.append(_range(low, high))
            else:
                tests.append(low_test)
        if negated:  # as in re, a negated class matches a newline too
            return lambda c: not any(t(c) for t in tests)
        return lambda c: any(t(c) for t in tests)

    def quantified(self, item: _Node) -> _Node:
        char = self.peek()
        if char is None or char not in "*+?{":
            return item
        least, most = self.quantifier()
        if self.peek() == "?":  # lazy: the same set of whole matches
            self.take()
        if (char := self.peek()) is not None and char in "*+?{":
            raise self.refuse(f"a second quantifier {char!r} (possessive or repeated)")
        return _Repeat(item, least, most)

    def quantifier(self) -> tuple[int, int | None]:
        char = self.take()
        if char == "*":
            return 0, None
        if char == "+":
            return 1, None
        if char == "?":
            return 0, 1
        close = self.text.find("}", self.at)
        body = self.text[self.at : close] if close >= 0 else ""
        low_text, comma, high_text = body.partition(",")
        valid = (
            close >= 0
            and (_count(low_text) or bool(comma and not low_text))
            and (_count(high_text) or not high_text)
            and bool(low_text or high_text)
        )
        if not valid:
            self.at -= 1
            raise self.refuse("a '{' that is not a count {m}, {m,} or {m,n}")
        self.at = close + 1
        least = int(low_text) if low_text else 0
        most = (int(high_text) if high_text else None) if comma else least
        if max(least, most or 0) > MAX_REPEAT:
            raise self.refuse(f"a count above {MAX_REPEAT}")
        if most is not None and most < least:
            raise self.refuse(f"the count {{{least},{most}}} (min above max)")
        return least, most


def _count(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _single(test: Predicate) -> str | None:
    """The character a literal predicate tests for (None for a class escape like \\d)."""
    owner = getattr(test, "__self__", None)
    return owner if isinstance(owner, str) else None


def _range(low: str, high: str) -> Predicate:
    return lambda c: low <= c <= high


# --- the automaton --------------------------------------------------------------------------


class _Program:
    """A Thompson NFA: ``tests[i]`` (None for a split) consumes one character to ``nexts[i]``."""

    def __init__(self) -> None:
        self.tests: list[Predicate | None] = []
        self.nexts: list[list[int]] = []
        self.accept = self.add(None, [])

    def add(self, test: Predicate | None, nexts: list[int]) -> int:
        if len(self.tests) >= MAX_STATES:
            raise UsageError(
                f"task_type_pattern is too large: over {MAX_STATES} states (lower its counts)"
            )
        self.tests.append(test)
        self.nexts.append(nexts)
        return len(self.tests) - 1

    def build(self, node: _Node, then: int) -> int:
        """The state that matches ``node`` and continues at ``then``."""
        if isinstance(node, _Char):
            return self.add(node.test, [then])
        if isinstance(node, _Seq):
            for item in reversed(node.items):
                then = self.build(item, then)
            return then
        if isinstance(node, _Alt):
            return self.add(None, [self.build(option, then) for option in node.options])
        if node.most is None:
            loop = self.add(None, [])
            self.nexts[loop] = [self.build(node.item, loop), then]
            start = loop
        else:
            start = then
            for _ in range(node.most - node.least):
                start = self.add(None, [self.build(node.item, start), then])
        for _ in range(node.least):
            start = self.build(node.item, start)
        return start


class TaskTypePattern:
    """A compiled task-type pattern: ``fullmatch`` takes time linear in the task type's length.

    Raises UsageError (from ``__init__``) for an empty, over-long or unsupported pattern.
    """

    def __init__(self, pattern: str) -> None:
        if not pattern:
            raise UsageError("task_type_pattern is empty")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise UsageError(
                f"task_type_pattern has {len(pattern)} characters; at most {MAX_PATTERN_CHARS}"
            )
        self.pattern = pattern
        self._program = _Program()
        self._start = self._closure([self._program.build(_Parser(pattern).parse(), 0)])
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        """The states reachable without consuming a character (splits followed)."""
        seen: set[int] = set()
        stack = list(states)
        tests, nexts = self._program.tests, self._program.nexts
        found: set[int] = set()
        while stack:
            state = stack.pop()
            if state in seen:
                continue
            seen.add(state)
            if tests[state] is None and state != self._program.accept:
                stack.extend(nexts[state])
            else:
                found.add(state)
        return frozenset(found)

    def _step(self, states: frozenset[int], char: str) -> frozenset[int]:
        key = (states, char)
        cached = self._steps.get(key)
        if cached is not None:
            return cached
        tests, nexts = self._program.tests, self._program.nexts
        moved = [nexts[s][0] for s in states if (t := tests[s]) is not None and t(char)]
        after = self._closure(moved)
        if len(self._steps) >= _DFA_CACHE:
            self._steps.clear()
        self._steps[key] = after
        return after

    def fullmatch(self, text: str) -> bool:
        """True when the whole of ``text`` matches (``re.fullmatch`` semantics)."""
        states = self._start
        for char in text:
            states = self._step(states, char)
            if not states:
                return False
        return self._program.accept in states

    def filter(self, texts: Iterable[str], budget_s: float = MATCH_BUDGET_S) -> list[str]:
        """The ``texts`` that match, in order; raises UsageError after ``budget_s`` of work."""
        deadline = time.monotonic() + budget_s
        matched = []
        for text in texts:
            if time.monotonic() > deadline:
                raise UsageError(
                    f"task_type_pattern {self.pattern!r} took over {budget_s:g} s to match: "
                    "simplify it"
                )
            if self.fullmatch(text):
                matched.append(text)
        return matched
