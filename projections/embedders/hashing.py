"""The default embedder: signed feature hashing of words, word pairs and character n-grams.

Dependency-free (numpy only), deterministic across processes and machines, and lexical: texts that
share words and word pieces come out close, paraphrases with other words do not (use ``minilm``).

Features, each family hashed into the same ``dimension`` buckets with a seed of its own:

1. word unigrams and 2. word bigrams, from the NFKC-normalised, case-folded ``\\w+`` tokens;
3. character n-grams (3 to 5 bytes of UTF-8) of each word padded with a space on both sides, so
   ``" dep"`` and ``"loy "`` carry the word boundary, and no n-gram spans two words.

Each distinct feature of a text weighs ``1 + ln(count)`` (sublinear tf); its bucket is
``hash mod dimension`` and its sign the top bit of the hash, so collisions cancel on average
instead of piling up. Each family is L2-normalised, the families are summed with fixed weights and
the result normalised again. Hashes are 64-bit: blake2b for words, a polynomial rolling hash with
a splitmix64 finaliser for n-grams (vectorised over the whole batch), never Python's salted
``hash()``. The scheme is frozen: changing it needs a new embedder name, or old and new vectors
would be mixed in one index.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from projections.embedders.base import Embedder, FloatMatrix

__all__ = ["DEFAULT_DIMENSION", "HashingEmbedder"]

DEFAULT_DIMENSION = 384

_TOKEN = re.compile(r"\w+")
_U64 = npt.NDArray[np.uint64]
_I64 = npt.NDArray[np.int64]

# Seeds keep the three families (and each n-gram length) in different hash spaces.
_SEED_UNIGRAM = 0x9E3779B97F4A7C15
_SEED_BIGRAM = 0xC2B2AE3D27D4EB4F
_SEED_CHAR = 0x165667B19E3779F9
_POLY = 0x100000001B3  # the 64-bit FNV prime, as the rolling-hash base
_FAMILY_WEIGHTS = (1.0, 0.5, 1.0)  # unigrams, bigrams, character n-grams
_SPACE = 0x20


def _mix(values: _U64) -> _U64:
    """splitmix64 finaliser: spreads every input bit over the whole 64-bit output."""
    h = values ^ (values >> np.uint64(30))
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@functools.lru_cache(maxsize=1 << 16)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


class HashingEmbedder(Embedder):
    """Feature-hashing embedder; see the module docstring for the exact scheme."""

    def __init__(
        self,
        dimension: int = DEFAULT_DIMENSION,
        *,
        ngram_range: tuple[int, int] = (3, 5),
        batch_size: int = 256,
    ) -> None:
        low, high = ngram_range
        if dimension < 2:
            raise ValueError(f"dimension must be at least 2, got {dimension}")
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must satisfy 1 <= low <= high, got {ngram_range}")
        self._dimension = dimension
        self._ngram_range = (low, high)
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return "hashing"

    @property
    def dimension(self) -> int:
        return self._dimension

    def _embed_batch(self, texts: Sequence[str]) -> FloatMatrix:
        docs = [_tokens(text) for text in texts]
        families = (
            self._word_features(docs, bigrams=False),
            self._word_features(docs, bigrams=True),
            self._char_features(docs),
        )
        out = np.zeros((len(docs), self._dimension), dtype=np.float64)
        for weight, (doc_ids, hashes) in zip(_FAMILY_WEIGHTS, families, strict=True):
            block = self._accumulate(doc_ids, hashes, len(docs))
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            np.divide(block, norms, out=block, where=norms > 0)
            out += weight * block
        return out.astype(np.float32)

    @staticmethod
    def _word_features(docs: list[list[str]], *, bigrams: bool) -> tuple[_I64, _U64]:
        doc_ids: list[int] = []
        hashes: list[int] = []
        for doc_id, words in enumerate(docs):
            word_hashes = [_word_hash(word) for word in words]
            if bigrams:
                # 2**61 - 1 is prime; the mix below decorrelates the pair from its parts.
                word_hashes = [
                    (a * 0x1FFFFFFFFFFFFFFF + b) & 0xFFFFFFFFFFFFFFFF
                    for a, b in itertools.pairwise(word_hashes)
                ]
            doc_ids.extend([doc_id] * len(word_hashes))
            hashes.extend(word_hashes)
        seed = np.uint64(_SEED_BIGRAM if bigrams else _SEED_UNIGRAM)
        return np.array(doc_ids, dtype=np.int64), _mix(np.array(hashes, dtype=np.uint64) ^ seed)

    def _char_features(self, docs: list[list[str]]) -> tuple[_I64, _U64]:
        encoded = [
            (" " + " ".join(words) + " ").encode("utf-8") if words else b"" for words in docs
        ]
        buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        owner = np.repeat(np.arange(len(docs), dtype=np.int64), [len(e) for e in encoded])
        # spaces_before[k] = number of spaces in buf[:k], to find n-grams with a space inside.
        spaces_before = np.concatenate(([0], np.cumsum(buf == _SPACE)))
        all_ids: list[_I64] = []
        all_hashes: list[_U64] = []
        low, high = self._ngram_range
        for n in range(low, high + 1):
            count = buf.size - n + 1
            if count <= 0:
                continue
            rolling = np.zeros(count, dtype=np.uint64)
            for j in range(n):
                rolling = rolling * np.uint64(_POLY) + buf[j : j + count].astype(np.uint64)
            starts = np.arange(count)
            keep = owner[:count] == owner[n - 1 : n - 1 + count]
            if n > 2:
                inner = spaces_before[starts + n - 1] - spaces_before[starts + 1]
                keep &= inner == 0
            all_ids.append(owner[:count][keep])
            all_hashes.append(_mix(rolling[keep] ^ np.uint64(_SEED_CHAR + n)))
        if not all_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
        return np.concatenate(all_ids), np.concatenate(all_hashes)

    def _accumulate(self, doc_ids: _I64, hashes: _U64, n_docs: int) -> npt.NDArray[np.float64]:
        """Sum signed, sublinear-tf weights of each document's distinct features into buckets."""
        dim = self._dimension
        if hashes.size == 0:
            return np.zeros((n_docs, dim), dtype=np.float64)
        order = np.lexsort((hashes, doc_ids))
        docs_sorted, hashes_sorted = doc_ids[order], hashes[order]
        first = np.ones(hashes_sorted.size, dtype=bool)
        first[1:] = (docs_sorted[1:] != docs_sorted[:-1]) | (
            hashes_sorted[1:] != hashes_sorted[:-1]
        )
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, hashes_sorted.size))
        unique_docs, unique_hashes = docs_sorted[starts], hashes_sorted[starts]
        buckets = (unique_hashes % np.uint64(dim)).astype(np.int64)
        signs = np.where(unique_hashes >> np.uint64(63), -1.0, 1.0)
        weights = signs * (1.0 + np.log(counts))
        flat = np.bincount(unique_docs * dim + buckets, weights=weights, minlength=n_docs * dim)
        return np.asarray(flat, dtype=np.float64).reshape(n_docs, dim)
