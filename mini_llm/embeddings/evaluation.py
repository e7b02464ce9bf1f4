"""A small Chinese evaluation set written for this book, and the scores computed on it.

Two CSV files ship in mini_llm/data, every word occurring at least 5 times in People's Daily (Jan 1998):

- ``embedding_analogy_zh.csv``: word pairs in one relation per category (country-capital, province-capital,
  next-month, male-female, antonym). Every two pairs (a, b), (c, d) of a category make the question
  a : b = c : ?, answered by the word nearest to b - a + c (3CosAdd, the inputs left out).
- ``embedding_similarity_zh.csv``: word pairs with a relatedness score from 0 (unrelated) to 10 (same meaning),
  assigned by the book's author; a model is scored by the Spearman correlation of its cosine similarities.

The functions take mini_llm's Word2Vec/GloVe or a gensim Word2Vec/KeyedVectors alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mini_llm.data.corpora import read_package_text
from mini_llm.helpers import check_int

ANALOGY_FILE = "embedding_analogy_zh.csv"
SIMILARITY_FILE = "embedding_similarity_zh.csv"
QUERY_BATCH = 512  # analogy questions scored per matrix product


@dataclass(frozen=True)
class AnalogyQuestion:
    """a : b = c : expected."""

    category: str
    a: str
    b: str
    c: str
    expected: str


@dataclass(frozen=True)
class SimilarityPair:
    """Two words and their relatedness judged by a person, 0-10."""

    word1: str
    word2: str
    score: float


@dataclass
class EvaluationResult:
    """Analogy accuracy and similarity correlation of one model on the book's evaluation set."""

    analogy_accuracy: float  # correct / answered (questions with all four words in the vocabulary)
    analogy_answered: int
    analogy_skipped: int  # questions with a word outside the vocabulary
    similarity_spearman: float  # Spearman rank correlation of cosine similarity with the human scores
    similarity_pairs: int
    similarity_skipped: int
    category_accuracy: dict[str, float] = field(default_factory=dict)  # accuracy per analogy category

    def as_row(self) -> dict[str, Any]:
        """The headline numbers as one table row."""
        return {
            "analogy accuracy": self.analogy_accuracy,
            "analogy answered": self.analogy_answered,
            "similarity Spearman": self.similarity_spearman,
            "similarity pairs": self.similarity_pairs,
        }


def _read_csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_package_text("mini_llm", "data", name))))


def load_analogy_pairs() -> list[tuple[str, str, str]]:
    """The relation pairs of the analogy set as (category, a, b)."""
    return [(row["category"], row["a"], row["b"]) for row in _read_csv(ANALOGY_FILE)]


def load_analogy_questions() -> list[AnalogyQuestion]:
    """Every question a : b = c : d from two different pairs of one category (not those whose answer is an input)."""
    by_category: dict[str, list[tuple[str, str]]] = {}
    for category, a, b in load_analogy_pairs():
        by_category.setdefault(category, []).append((a, b))
    questions = []
    for category, pairs in by_category.items():
        for a, b in pairs:
            for c, d in pairs:
                if (a, b) != (c, d) and d not in (a, b, c):
                    questions.append(AnalogyQuestion(category, a, b, c, d))
    return questions


def load_similarity_pairs() -> list[SimilarityPair]:
    """The similarity pairs with their human scores."""
    return [SimilarityPair(row["word1"], row["word2"], float(row["score"])) for row in _read_csv(SIMILARITY_FILE)]


def evaluation_words() -> set[str]:
    """Every word the evaluation set uses."""
    words = {word for _, a, b in load_analogy_pairs() for word in (a, b)}
    return words | {word for pair in load_similarity_pairs() for word in (pair.word1, pair.word2)}


def vectors_of(model: Any) -> tuple[list[str], dict[str, int], np.ndarray]:
    """(index_to_key, key_to_index, unit vectors (V, D)) of a mini_llm model or a gensim Word2Vec/KeyedVectors."""
    keyed = getattr(model, "wv", model)  # gensim's Word2Vec keeps its vectors in .wv
    vectors = getattr(keyed, "vectors", None)
    if vectors is None or not hasattr(keyed, "index_to_key") or not hasattr(keyed, "key_to_index"):
        raise TypeError(
            f"model must be a fitted mini_llm Word2Vec/GloVe or a gensim Word2Vec/KeyedVectors, got {type(model)!r}"
        )
    vectors = np.asarray(vectors, dtype=np.float32)  # (V, D)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return list(keyed.index_to_key), dict(keyed.key_to_index), unit


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of values, ties getting their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (the Pearson correlation of the ranks, ties averaged)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"spearman needs two sequences of the same length >= 2, got {len(x)} and {len(y)}")
    rx, ry = rank(np.asarray(x)), rank(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def answer_analogies(model: Any, questions: Sequence[AnalogyQuestion]) -> list[str | None]:
    """The model's 3CosAdd answer to each question, None where a word is outside its vocabulary."""
    words, index, unit = vectors_of(model)
    answers: list[str | None] = [None] * len(questions)
    known = [k for k, q in enumerate(questions) if all(w in index for w in (q.a, q.b, q.c, q.expected))]
    for start in range(0, len(known), QUERY_BATCH):
        batch = known[start : start + QUERY_BATCH]
        ids = np.array([[index[questions[k].a], index[questions[k].b], index[questions[k].c]] for k in batch])  # (n, 3)
        queries = unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]]  # (n, D)
        scores = queries @ unit.T  # (n, V)
        scores[np.arange(len(batch))[:, None], ids] = -np.inf  # the inputs are never the answer
        for k, best in zip(batch, scores.argmax(axis=1), strict=True):
            answers[k] = words[best]
    return answers


def evaluate(
    model: Any,
    questions: Sequence[AnalogyQuestion] | None = None,
    pairs: Sequence[SimilarityPair] | None = None,
) -> EvaluationResult:
    """Score a model on the book's analogy questions (accuracy) and similarity pairs (Spearman)."""
    questions = load_analogy_questions() if questions is None else list(questions)
    pairs = load_similarity_pairs() if pairs is None else list(pairs)
    answers = answer_analogies(model, questions)
    answered = [(q, answer) for q, answer in zip(questions, answers, strict=True) if answer is not None]
    correct = [answer == q.expected for q, answer in answered]
    category_accuracy: dict[str, float] = {}
    for category in dict.fromkeys(q.category for q in questions):
        hits = [ok for (q, _), ok in zip(answered, correct, strict=True) if q.category == category]
        category_accuracy[category] = float(np.mean(hits)) if hits else float("nan")

    _, index, unit = vectors_of(model)
    known = [p for p in pairs if p.word1 in index and p.word2 in index]
    cosines = [float(unit[index[p.word1]] @ unit[index[p.word2]]) for p in known]
    return EvaluationResult(
        analogy_accuracy=float(np.mean(correct)) if correct else float("nan"),
        analogy_answered=len(answered),
        analogy_skipped=len(questions) - len(answered),
        similarity_spearman=spearman(cosines, [p.score for p in known]) if len(known) >= 2 else float("nan"),
        similarity_pairs=len(known),
        similarity_skipped=len(pairs) - len(known),
        category_accuracy=category_accuracy,
    )


def top_neighbours(model: Any, words: Sequence[str], topn: int = 10) -> list[list[str]]:
    """The topn nearest words (cosine) of each word, the word itself left out."""
    all_words, index, unit = vectors_of(model)
    missing = [w for w in words if w not in index]
    if missing:
        raise ValueError(f"words contains {len(missing)} words outside the model's vocabulary, e.g. {missing[0]!r}")
    neighbours = []
    for start in range(0, len(words), QUERY_BATCH):
        ids = np.array([index[w] for w in words[start : start + QUERY_BATCH]])  # (n,)
        scores = unit[ids] @ unit.T  # (n, V)
        scores[np.arange(len(ids)), ids] = -np.inf
        best = np.argpartition(-scores, topn - 1, axis=1)[:, :topn]  # (n, topn), unordered
        order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
        neighbours += [[all_words[i] for i in row] for row in np.take_along_axis(best, order, axis=1)]
    return neighbours


def neighbour_overlap(model_a: Any, model_b: Any, words: Sequence[str] | None = None, topn: int = 10) -> float:
    """Mean fraction of shared words in the topn neighbours of the two models, over words (by default the
    1000 most frequent words of model_a that model_b knows)."""
    check_int("topn", topn, 1, kinds=int)
    words_a, _, _ = vectors_of(model_a)
    _, index_b, _ = vectors_of(model_b)
    if words is None:
        words = [w for w in words_a if w in index_b][:1000]
    words = list(words)
    if not words:
        raise ValueError("words is empty: the two models share no word to compare")
    pairs = zip(top_neighbours(model_a, words, topn), top_neighbours(model_b, words, topn), strict=True)
    return float(np.mean([len(set(a) & set(b)) / topn for a, b in pairs]))
