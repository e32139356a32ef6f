"""Lexical (BM25) memory search: the tokeniser, an incremental per-namespace index, its files."""

from projections.lexical.bm25 import BM25Params, LexicalHit, LexicalIndex, ScoredQuery
from projections.lexical.store import LexicalSet
from projections.lexical.tokens import TOKENISER_VERSION, tokenise

__all__ = [
    "TOKENISER_VERSION",
    "BM25Params",
    "LexicalHit",
    "LexicalIndex",
    "LexicalSet",
    "ScoredQuery",
    "tokenise",
]
