"""What both models share once trained: word vectors, cosine queries, and the word2vec text format.

The text format is the one word2vec.c writes and gensim's ``KeyedVectors.load_word2vec_format(path)`` reads:
a header line ``<vocabulary size> <vector size>``, then one line per word: the word and its numbers,
separated by single spaces, UTF-8.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from mini_llm.helpers import check_int

VectorsT = TypeVar("VectorsT", bound="WordVectors")


class WordVectors:
    """Word vectors with cosine-similarity queries and word2vec-format save/load (the base of Word2Vec and GloVe)."""

    index_to_key: list[str]  # index -> word, most frequent first
    key_to_index: dict[str, int]  # word -> index
    vectors: np.ndarray | None  # (V, D) float32, None before fit

    def _set_vectors(self, words: Sequence[str], vectors: np.ndarray) -> None:
        """Install trained (or loaded) vectors and forget the cached unit vectors."""
        self.index_to_key = list(words)
        self.key_to_index = {word: i for i, word in enumerate(self.index_to_key)}
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (V, D)
        self._unit: np.ndarray | None = None

    def _check_fitted(self) -> np.ndarray:
        vectors = getattr(self, "vectors", None)
        if vectors is None:
            raise ValueError(f"this {type(self).__name__} has no vectors yet: call fit(sentences) or load(path) first")
        return vectors

    @property
    def unit_vectors(self) -> np.ndarray:
        """The vectors scaled to length 1 (rows of zeros stay zero), computed once."""
        vectors = self._check_fitted()
        if getattr(self, "_unit", None) is None:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (V, 1)
            self._unit = vectors / np.maximum(norms, np.finfo(np.float32).tiny)
        return self._unit

    def __len__(self) -> int:
        return len(getattr(self, "index_to_key", []))

    def __contains__(self, word: object) -> bool:
        return word in getattr(self, "key_to_index", {})

    def index_of(self, word: str, argument: str = "word") -> int:
        """The row of word; ValueError naming the argument and the word when it is not in the vocabulary."""
        self._check_fitted()
        index = self.key_to_index.get(word)
        if index is None:
            raise ValueError(
                f"{argument}={word!r} is not in the vocabulary ({len(self)} words; too rare for min_count, or unseen)"
            )
        return index

    def __getitem__(self, word: str) -> np.ndarray:
        """The vector of word, (D,)."""
        return self._check_fitted()[self.index_of(word)]

    def similarity(self, word1: str, word2: str) -> float:
        """Cosine similarity of two words."""
        unit = self.unit_vectors
        return float(unit[self.index_of(word1, "word1")] @ unit[self.index_of(word2, "word2")])

    def nearest(self, query: np.ndarray, topn: int, exclude: Sequence[int] = ()) -> list[tuple[str, float]]:
        """The topn words of largest cosine similarity to a query vector, leaving out the rows in exclude."""
        topn = check_int("topn", topn, 1, type_error=TypeError)
        unit = self.unit_vectors
        query = np.asarray(query, dtype=np.float32)
        if query.shape != (unit.shape[1],):
            raise ValueError(f"query must have shape ({unit.shape[1]},), got {query.shape}")
        scores = unit @ (query / max(float(np.linalg.norm(query)), np.finfo(np.float32).tiny))  # (V,)
        scores[list(exclude)] = -np.inf
        k = min(topn, len(scores) - len(set(exclude)))
        if k <= 0:
            return []
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.index_to_key[i], float(scores[i])) for i in best]

    def most_similar(self, word: str, topn: int = 10) -> list[tuple[str, float]]:
        """The topn nearest words to word by cosine similarity, as (word, similarity), the word itself left out."""
        index = self.index_of(word)
        return self.nearest(self.unit_vectors[index], topn, exclude=[index])

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the topn words nearest to b - a + c (unit vectors, 3CosAdd), inputs left out."""
        unit = self.unit_vectors
        ia, ib, ic = self.index_of(a, "a"), self.index_of(b, "b"), self.index_of(c, "c")
        return self.nearest(unit[ib] - unit[ia] + unit[ic], topn, exclude=[ia, ib, ic])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vectors in word2vec text format (readable by gensim's KeyedVectors.load_word2vec_format)."""
        vectors = self._check_fitted()
        for word in self.index_to_key:
            if not word or any(ch.isspace() for ch in word):
                raise ValueError(f"the word2vec text format cannot store the word {word!r} (empty or with whitespace)")
        path = Path(path)
        with path.open("w", encoding="utf-8") as f:
            f.write(f"{vectors.shape[0]} {vectors.shape[1]}\n")
            for word, row in zip(self.index_to_key, vectors, strict=True):
                f.write(word + " " + " ".join(f"{x:.9g}" for x in row.tolist()) + "\n")  # 9 digits: float32 exactly
        return path

    @classmethod
    def load(cls: type[VectorsT], path: str | os.PathLike[str]) -> VectorsT:
        """Read vectors in word2vec text format into a new model (with default settings; it can be queried)."""
        path = Path(path)
        with path.open(encoding="utf-8") as f:
            header = f.readline().split()
            if len(header) != 2 or not all(part.isdigit() for part in header):
                raise ValueError(f"{path} is not in word2vec text format: the first line must be '<words> <size>'")
            n_words, size = int(header[0]), int(header[1])
            words: list[str] = []
            vectors = np.empty((n_words, size), dtype=np.float32)  # (V, D)
            for line_number, line in enumerate(f, start=2):
                parts = line.rstrip("\n").split(" ")
                if len(parts) != size + 1:
                    raise ValueError(f"{path}, line {line_number}: expected a word and {size} numbers")
                if len(words) == n_words:
                    raise ValueError(f"{path} has more than the {n_words} words its header announces")
                vectors[len(words)] = np.array(parts[1:], dtype=np.float32)
                words.append(parts[0])
        if len(words) != n_words:
            raise ValueError(f"{path} has {len(words)} words, but its header announces {n_words}")
        model = cls()
        model._set_vectors(words, vectors)
        return model
