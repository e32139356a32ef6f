"""The pure half of bench/bench_recall.py on tiny synthetic data: evidence parsing, recall@k,
reciprocal rank, the BM25 baseline and reading a LoCoMo-shaped conversation (no LoCoMo data)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the module from its file.
    path = Path(__file__).resolve().parent.parent / "bench" / "recall_metrics.py"
    spec = importlib.util.spec_from_file_location("recall_metrics", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("recall_metrics", module)
    spec.loader.exec_module(module)
    return module


rm = _load()


def test_evidence_split_on_semicolons_and_commas_unknown_ids_dropped() -> None:
    """Each evidence entry may hold several ids separated by ';' or ','; ids that point at no
    turn are dropped and counted, repeats kept once, order kept; empty pieces are not ids."""
    known = {"D1:1", "D1:2", "D2:5"}
    found, dropped = rm.parse_evidence(["D1:2; D2:5", "D1:1,D1:2", "D", "D:1:9", "D1:1, "], known)
    assert found == ("D1:2", "D2:5", "D1:1")
    assert dropped == 2


def test_recall_at_k_counts_evidence_in_the_first_k_once() -> None:
    """recall@k is the fraction of distinct evidence ids among the first k results; a repeated
    result counts once; no evidence gives 0."""
    ranked = ["a", "x", "b", "a", "y", "c"]
    assert rm.recall_at(ranked, ("a", "b", "c", "d"), 2) == 0.25
    assert rm.recall_at(ranked, ("a", "b", "c", "d"), 3) == 0.5
    assert rm.recall_at(ranked, ("a", "b", "c", "d"), 10) == 0.75
    assert rm.recall_at(ranked, (), 10) == 0.0
    assert rm.recall_at([], ("a",), 10) == 0.0


def test_reciprocal_rank_is_of_the_first_evidence_hit() -> None:
    """1/rank of the first evidence id (1-based); 0 when none is ranked."""
    assert rm.reciprocal_rank(["x", "b", "a"], ("a", "b")) == 0.5
    assert rm.reciprocal_rank(["a"], ("a",)) == 1.0
    assert rm.reciprocal_rank(["x", "y"], ("a",)) == 0.0


def test_score_averages_over_questions_and_by_category() -> None:
    """Scores are means over questions; recall@10 is also kept per category."""
    q1 = rm.Question("q1", 1, ("a", "b"))
    q2 = rm.Question("q2", 4, ("c",))
    scores = rm.score([(q1, ["a", "x", "y", "z", "w", "b"]), (q2, ["x", "y", "c"])])
    assert scores.questions == 2
    assert scores.recall_5 == pytest.approx((0.5 + 1.0) / 2)
    assert scores.recall_10 == pytest.approx(1.0)
    assert scores.mrr == pytest.approx((1.0 + 1 / 3) / 2)
    assert scores.by_category == {1: 1.0, 4: 1.0}
    assert rm.score([]).recall_10 == 0.0


def test_bm25_tokens_are_lowercased_alphanumeric_runs() -> None:
    """Tokens are lower-cased runs of letters and digits; punctuation separates them."""
    assert rm.bm25_tokens("Caroline: I went to the LGBTQ+ group, 7-May-2023!") == [
        "caroline", "i", "went", "to", "the", "lgbtq", "group", "7", "may", "2023",
    ]  # fmt: skip


def test_bm25_scores_match_the_okapi_formula_by_hand() -> None:
    """The score of a document is the Okapi sum with k1 1.5, b 0.75 and idf
    ln(1 + (N - df + 0.5) / (df + 0.5)), computed here by hand on three documents."""
    docs = ["cat sat", "cat cat dog", "bird"]
    index = rm.Bm25(docs)
    avgdl = (2 + 3 + 1) / 3
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    idf_dog = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))

    def term(tf: int, length: int, idf: float) -> float:
        return idf * tf * 2.5 / (tf + 1.5 * (1 - 0.75 + 0.75 * length / avgdl))

    found = index.scores("cat dog")
    assert found[0] == pytest.approx(term(1, 2, idf_cat))
    assert found[1] == pytest.approx(term(2, 3, idf_cat) + term(1, 3, idf_dog))
    assert 2 not in found  # shares no token: never scored, never ranked
    assert index.rank("cat dog", 10) == [1, 0]


def test_bm25_prefers_rare_terms_and_short_documents_and_breaks_ties_by_order() -> None:
    """A rare term outweighs a common one; with the same term counts the shorter document wins;
    equal scores keep the documents' order; top_k truncates."""
    docs = [
        "we talked about the weather today",
        "the pottery class was fun",
        "the weather was nice and the pottery class was long and tiring today",
        "the pottery class was fun",
    ]
    index = rm.Bm25(docs)
    assert index.rank("pottery", 10) == [1, 3, 2]
    assert index.rank("weather the", 1) == [0]
    assert index.rank("nothing matches", 10) == []


def _raw_conversation() -> dict[str, object]:
    return {
        "speaker_a": "Ann",
        "speaker_b": "Bob",
        "session_2_date_time": "3:05 pm on 9 June, 2023",
        "session_2": [{"speaker": "Bob", "dia_id": "D2:1", "text": "I adopted a cat."}],
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ann", "dia_id": "D1:1", "text": "Hi Bob!"},
            {"speaker": "Bob", "dia_id": "D1:2", "text": "I start pottery.", "blip_caption": "x"},
        ],
        "session_1_summary": "not a session",
        "qa": [
            {"question": "What pet?", "answer": "a cat", "evidence": ["D2:1"], "category": 4},
            {"question": "When?", "answer": "May", "evidence": ["D1:2; D9:9"], "category": 2},
            {"question": "No answer", "answer": "", "evidence": ["D1:1"], "category": 5},
            {"question": "Lost", "answer": "", "evidence": [], "category": 3},
        ],
    }


def test_conversation_turns_in_session_order_with_speaker_prefixed_text() -> None:
    """Turns come session by session in numeric order, each stored as '<speaker>: <text>' at its
    session's time plus its position; other keys (summaries) are not sessions."""
    conversation = rm.conversation_of("c1", _raw_conversation())
    assert [t.dia_id for t in conversation.turns] == ["D1:1", "D1:2", "D2:1"]
    assert conversation.turns[1].memory_text == "Bob: I start pottery."
    assert conversation.turns[1].occurred_at.isoformat() == "2023-05-08T13:56:01+00:00"
    assert conversation.turns[2].occurred_at.isoformat() == "2023-06-09T15:05:00+00:00"


def test_conversation_questions_of_categories_one_to_four_with_evidence() -> None:
    """Category 5 is left out; a question whose evidence points nowhere is skipped and counted;
    dangling ids are dropped from the rest and counted."""
    conversation = rm.conversation_of("c1", _raw_conversation())
    assert [(q.text, q.category, q.evidence) for q in conversation.questions] == [
        ("What pet?", 4, ("D2:1",)),
        ("When?", 2, ("D1:2",)),
    ]
    assert conversation.skipped == 1
    assert conversation.dangling == 1
