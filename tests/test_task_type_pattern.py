"""extract_pattern's task-type patterns: re.fullmatch's answers in linear time, or a clear refusal.

Patterns are drawn from the supported subset and compared with Python's ``re`` on the same
texts; the patterns that make ``re`` backtrack for minutes answer at once; what the subset does
not support (backreferences, lookarounds, flags) is refused naming the construct.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import UsageError
from projections.learning import LearnerConfig, LearnerState
from projections.learning import queries as q
from projections.learning.type_pattern import MAX_PATTERN_CHARS, TaskTypePattern
from projections.task_types import KeywordTaskTypeClassifier

ALPHABET = "ab_1.-"
TEXTS = st.text(alphabet=ALPHABET, max_size=6)
"""Short: the reference, Python's re, backtracks exponentially on some drawn patterns."""


def _atoms() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["a", "b", "_", "1", "\\.", ".", "\\d", "\\w", "\\W", "\\s"]),
        st.sampled_from(["[ab]", "[^a]", "[a-b_]", "[0-9.]", "[-a]", "[a-]", "[]a]", "[^]b]"]),
    )


def _patterns() -> st.SearchStrategy[str]:
    quantifiers = st.sampled_from(["", "", "*", "+", "?", "*?", "{2}", "{1,3}", "{0,}", "{,2}"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        group = st.tuples(st.sampled_from(["(", "(?:"]), inner).map(lambda t: f"{t[0]}{t[1]})")
        piece = st.tuples(st.one_of(_atoms(), group), quantifiers).map("".join)
        seq = st.lists(piece, min_size=1, max_size=3).map("".join)
        return st.one_of(seq, st.tuples(seq, seq).map("|".join))

    return st.recursive(_atoms(), extend, max_leaves=6)


PATTERNS = _patterns()


@settings(max_examples=400, deadline=None)
@given(pattern=PATTERNS, texts=st.lists(TEXTS, min_size=1, max_size=8))
def test_the_subset_answers_as_re_fullmatch(pattern: str, texts: list[str]) -> None:
    """On every pattern of the subset and every text, fullmatch agrees with re.fullmatch."""
    compiled, reference = TaskTypePattern(pattern), re.compile(pattern)
    for text in texts:
        assert compiled.fullmatch(text) == (reference.fullmatch(text) is not None), (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (".*authentication.*", "user_authentication_v2", True),  # the documented example
        (".*authentication.*", "deployment", False),
        ("^deploy.*$", "deployment", True),
        ("deploy", "deployment", False),  # the whole task type must match
        ("code_(generation|review)", "code_review", True),
        ("[a-z_]+", "code_generation", True),
        ("[a-z_]+", "code-generation", False),
        ("a{2,3}", "aaaa", False),
    ],
)
def test_known_answers(pattern: str, text: str, expected: bool) -> None:
    """Typical task-type patterns match whole task types, as re.fullmatch does."""
    assert TaskTypePattern(pattern).fullmatch(text) is expected


@pytest.mark.parametrize(
    "pattern",
    ["(((.+)+)+)+X", "((((.+)+)+)+)+X", "(a|a)*X", "(.*.*.*.*.*.*.*.*)*X", "(a?){30}a{30}"],
)
def test_catastrophic_patterns_answer_at_once(pattern: str) -> None:
    """Patterns that make a backtracking engine take exponential time answer in milliseconds
    over 1,000 task types of the longest allowed length (128 characters)."""
    texts = ["a" * 120 + f"{i:08d}" for i in range(1_000)]
    started = time.perf_counter()
    assert TaskTypePattern(pattern).filter(texts) == []
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        ("(a)\\1", "backreference"),
        ("(?P<a>x)(?P=a)", "(?"),
        ("(?=a)a", "(?"),
        ("(?i)deploy", "(?"),
        ("a*+", "possessive"),
        ("a**", "second quantifier"),
        ("\\bdeploy", "\\b"),
        ("de^ploy", "anchor"),
        ("(deploy", "without its ')'"),
        ("deploy)", "unmatched ')'"),
        ("[deploy", "without its ']'"),
        ("*deploy", "nothing to repeat"),
        ("a{2", "count"),
        ("a{1000}", "above 100"),
        ("(a{100}){100}", "too large"),
        ("", "empty"),
        ("a" * (MAX_PATTERN_CHARS + 1), f"at most {MAX_PATTERN_CHARS}"),
    ],
)
def test_unsupported_patterns_are_refused_naming_why(pattern: str, named: str) -> None:
    """What the subset does not support is a UsageError that names the construct."""
    with pytest.raises(UsageError) as refused:
        TaskTypePattern(pattern)
    assert named in str(refused.value)


def test_pooling_refuses_a_non_positive_min_samples() -> None:
    """min_samples below 1 is a UsageError (it used to divide 0 by 0 in an empty namespace)."""
    with pytest.raises(UsageError, match="min_samples"):
        q.extract_pattern(_empty(), "empty", ".*", "success", min_samples=-5)
    assert q.extract_pattern(_empty(), "empty", ".*", "success", min_samples=1) is None


def _empty() -> LearnerState:
    return LearnerState(LearnerConfig(), KeywordTaskTypeClassifier())
