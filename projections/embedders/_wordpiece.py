"""BERT's uncased WordPiece tokenizer in pure Python, id for id as Hugging Face ``tokenizers``.

It reproduces what ``tokenizer.json`` of all-MiniLM-L6-v2 declares (BertNormalizer with
clean_text, handle_chinese_chars, lowercase and accent stripping; BertPreTokenizer; WordPiece with
``##`` continuations and at most 100 characters a word; ``[CLS] A [SEP]``), so that the numpy
MiniLM sees the same ids as sentence-transformers. The five special tokens are matched in the raw
text first, as the fast tokenizer does with its added tokens. The Unicode predicates follow the
Rust crate, not Python's ``str`` methods where the two differ (``isspace`` also counts U+001C to
U+001F, which Rust's ``char::is_whitespace`` does not).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path

__all__ = ["WordPieceTokenizer"]

# Unicode White_Space (what Rust's char::is_whitespace tests).
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Controls, format characters and private use; unassigned code points (Cn) are kept, as there.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(token) for token in _SPECIAL) + ")")
_MAX_WORD_CHARS = 100


@functools.lru_cache(maxsize=4096)
def _char_class(char: str) -> int:
    """0 keep, 1 drop (control, NUL, U+FFFD), 2 whitespace, 3 CJK (padded), 4 punctuation."""
    if char in "\t\n\r":
        return 2
    # Dropping comes first, as in the Rust crate: U+000B, U+000C and U+0085 are controls there.
    if char in "\x00\ufffd" or unicodedata.category(char) in _DROPPED_CATEGORIES:
        return 1
    if char in _WHITESPACE:
        return 2
    code = ord(char)
    if any(low <= code <= high for low, high in _CJK_RANGES):
        return 3
    if (code < 128 and not char.isalnum() and char.isprintable() and char != " ") or (
        unicodedata.category(char).startswith("P")
    ):
        return 4
    return 0


def _normalise(text: str) -> str:
    """BertNormalizer: clean, pad CJK characters with spaces, strip accents, lower-case."""
    out: list[str] = []
    for char in text:
        kind = _char_class(char)
        if kind == 1:
            continue
        if kind == 2:
            out.append(" ")
        elif kind == 3:
            out.append(f" {char} ")
        else:
            out.append(char)
    decomposed = unicodedata.normalize("NFD", "".join(out))
    # Per character, as Rust's char::to_lowercase: no final-sigma rule.
    return "".join(c.lower() for c in decomposed if unicodedata.category(c) != "Mn")


def _pre_tokenise(text: str) -> list[str]:
    """BertPreTokenizer: split on whitespace, then isolate every punctuation character."""
    words: list[str] = []
    for chunk in text.split():
        start = 0
        for i, char in enumerate(chunk):
            if _char_class(char) == 4:
                if start < i:
                    words.append(chunk[start:i])
                words.append(char)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


class WordPieceTokenizer:
    """Text to the ids all-MiniLM-L6-v2 was trained on, ``[CLS] ... [SEP]``, truncated."""

    def __init__(self, vocab: Mapping[str, int], *, max_length: int = 256) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        missing = [token for token in _SPECIAL if token not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        self._vocab = dict(vocab)
        self.max_length = max_length
        self.unk_id = self._vocab["[UNK]"]
        self.cls_id = self._vocab["[CLS]"]
        self.sep_id = self._vocab["[SEP]"]
        self._word_ids = functools.lru_cache(maxsize=1 << 15)(self._word_pieces)

    @classmethod
    def from_vocab_file(cls, path: Path, *, max_length: int = 256) -> WordPieceTokenizer:
        """Read a BERT ``vocab.txt`` (one token a line; the line number is its id)."""
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls({token: i for i, token in enumerate(lines)}, max_length=max_length)

    def _word_pieces(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first WordPiece; a word with an unknown piece is ``[UNK]``."""
        if len(word) > _MAX_WORD_CHARS:
            return (self.unk_id,)
        pieces: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self._vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return (self.unk_id,)
            pieces.append(found)
            start = end
        return tuple(pieces)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` with ``[CLS]`` and ``[SEP]``, at most ``max_length`` of them."""
        ids = [self.cls_id]
        budget = self.max_length - 1
        for part in _SPECIAL_SPLIT.split(text):
            if not part:
                continue
            if part in self._vocab and part in _SPECIAL:
                ids.append(self._vocab[part])
            else:
                for word in _pre_tokenise(_normalise(part)):
                    ids.extend(self._word_ids(word))
            if len(ids) >= budget:
                break
        del ids[budget:]
        ids.append(self.sep_id)
        return ids
