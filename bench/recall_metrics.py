"""The pure half of bench_recall: LoCoMo conversations as turns and questions, evidence parsing,
recall@k, reciprocal rank, and the plain Okapi BM25 baseline (standard library only)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "CATEGORIES",
    "Bm25",
    "Conversation",
    "Question",
    "Scores",
    "Turn",
    "bm25_tokens",
    "conversation_of",
    "parse_evidence",
    "recall_at",
    "reciprocal_rank",
    "score",
]

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
"""The categories measured; 5 (adversarial) has no evidence to find."""

_SESSION = re.compile(r"session_(\d+)")
_EVIDENCE_SPLIT = re.compile(r"[;,]")
_TOKEN = re.compile(r"[a-z0-9]+")
_SESSION_TIME = "%I:%M %p on %d %B, %Y"


@dataclass(frozen=True, slots=True)
class Turn:
    """One dialogue turn; ``occurred_at`` is its session's time plus its position in seconds."""

    dia_id: str
    speaker: str
    text: str
    occurred_at: datetime

    @property
    def memory_text(self) -> str:
        """What is stored and searched: ``"<speaker>: <text>"`` (the data README's measure)."""
        return f"{self.speaker}: {self.text}"


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    category: int
    evidence: tuple[str, ...]
    """The dia_ids of the turns holding the answer, each pointing at a turn, no repeats."""


@dataclass(frozen=True, slots=True)
class Conversation:
    name: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]
    skipped: int = 0
    """Questions of the measured categories left out because no evidence id points at a turn."""
    dangling: int = 0
    """Evidence ids that point nowhere (malformed or unknown), dropped from their question."""


def _session_start(raw: Mapping[str, Any], number: int) -> datetime:
    """The session's date and time, or a day per session from 2023-01-01 when it is missing or
    unreadable (it only orders the events; nothing is measured on it)."""
    stamp = raw.get(f"session_{number}_date_time")
    if isinstance(stamp, str):
        try:
            return datetime.strptime(stamp.strip(), _SESSION_TIME).replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=number)


def parse_evidence(evidence: Iterable[str], known: Collection[str]) -> tuple[tuple[str, ...], int]:
    """Evidence ids split on ``;`` and ``,`` and stripped, in order without repeats, keeping only
    those in ``known``; returns them and how many pieces were dropped (empty pieces are not
    counted: ``"D1:2, "`` is one id)."""
    found: dict[str, None] = {}
    dropped = 0
    for entry in evidence:
        for piece in _EVIDENCE_SPLIT.split(entry):
            dia_id = piece.strip()
            if not dia_id:
                continue
            if dia_id in known:
                found[dia_id] = None
            else:
                dropped += 1
    return tuple(found), dropped


def conversation_of(name: str, raw: Mapping[str, Any]) -> Conversation:
    """One LoCoMo conversation (the JSON object of one file) as turns in session order and the
    questions of categories 1-4 that have at least one evidence turn."""
    sessions = sorted(
        (int(m.group(1)), key)
        for key in raw
        if (m := _SESSION.fullmatch(key)) and isinstance(raw[key], list)
    )
    turns: list[Turn] = []
    for number, key in sessions:
        start = _session_start(raw, number)
        for position, turn in enumerate(raw[key]):
            turns.append(
                Turn(
                    str(turn["dia_id"]),
                    str(turn["speaker"]),
                    str(turn["text"]),
                    start + timedelta(seconds=position),
                )
            )
    known = {t.dia_id for t in turns}
    questions: list[Question] = []
    skipped = dangling = 0
    for qa in raw.get("qa", ()):
        category = int(qa.get("category", 0))
        if category not in CATEGORIES:
            continue
        evidence, dropped = parse_evidence(qa.get("evidence", ()), known)
        dangling += dropped
        if not evidence:
            skipped += 1
            continue
        questions.append(Question(str(qa["question"]), category, evidence))
    return Conversation(name, tuple(turns), tuple(questions), skipped, dangling)


def recall_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Fraction of ``relevant`` found in the first ``k`` of ``ranked`` (0.0 when nothing is
    relevant). Repeats in ``ranked`` count once."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank of the first relevant id in ``ranked`` (1-based), 0.0 when none is there."""
    for rank, item in enumerate(ranked, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


@dataclass(frozen=True, slots=True)
class Scores:
    """Means over questions; ``by_category`` holds recall@10 per category."""

    questions: int
    recall_5: float
    recall_10: float
    mrr: float
    by_category: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "recall@5": round(self.recall_5, 4),
            "recall@10": round(self.recall_10, 4),
            "mrr": round(self.mrr, 4),
            "recall@10_by_category": {
                CATEGORIES[c]: round(v, 4) for c, v in sorted(self.by_category.items())
            },
        }


def score(results: Iterable[tuple[Question, Sequence[str]]]) -> Scores:
    """Mean recall@5, recall@10 and reciprocal rank over (question, ranked dia_ids) pairs; all
    zero for no questions."""
    r5: list[float] = []
    r10: list[float] = []
    rr: list[float] = []
    per_category: dict[int, list[float]] = {}
    for question, ranked in results:
        r5.append(recall_at(ranked, question.evidence, 5))
        r10.append(recall_at(ranked, question.evidence, 10))
        rr.append(reciprocal_rank(ranked, question.evidence))
        per_category.setdefault(question.category, []).append(r10[-1])

    def mean(values: Sequence[float]) -> float:
        return math.fsum(values) / len(values) if values else 0.0

    return Scores(
        len(r10),
        mean(r5),
        mean(r10),
        mean(rr),
        {c: mean(v) for c, v in sorted(per_category.items())},
    )


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased runs of ASCII letters and digits (the baseline's tokenisation)."""
    return _TOKEN.findall(text.lower())


class Bm25:
    """Plain Okapi BM25 over a fixed list of documents (no stemming, no stop words).

    score(q, d) = sum over the query's tokens t (repeats included) of
    idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    with idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)) (never negative).
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._tf = [Counter(bm25_tokens(d)) for d in documents]
        self._length = [sum(tf.values()) for tf in self._tf]
        count = len(documents)
        self._avgdl = (sum(self._length) / count) if count else 0.0
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        self._idf = {t: math.log(1.0 + (count - n + 0.5) / (n + 0.5)) for t, n in df.items()}
        self._postings: dict[str, list[int]] = {}
        for index, tf in enumerate(self._tf):
            for t in tf:
                self._postings.setdefault(t, []).append(index)

    def scores(self, query: str) -> dict[int, float]:
        """Score of every document sharing at least one token with ``query``, by index."""
        found: dict[int, float] = {}
        for t in bm25_tokens(query):
            idf = self._idf.get(t)
            if idf is None:
                continue
            for index in self._postings[t]:
                tf = self._tf[index][t]
                norm = self.k1 * (1.0 - self.b + self.b * self._length[index] / self._avgdl)
                found[index] = found.get(index, 0.0) + idf * tf * (self.k1 + 1.0) / (tf + norm)
        return found

    def rank(self, query: str, top_k: int) -> list[int]:
        """Indexes of the ``top_k`` best documents, best first; ties keep document order.
        Documents without any query token are never returned."""
        found = self.scores(query)
        return sorted(found, key=lambda i: (-found[i], i))[:top_k]
