"""Multinomial naive Bayes over character n-grams: the non-neural baseline of the review-sentiment task."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from mini_llm.helpers import check_int, check_number

_WHITESPACE = re.compile(r"\s\s+")


def char_ngrams(text: str, n_min: int, n_max: int) -> list[str]:
    """The character n-grams of text for n_min <= n <= n_max, runs of white space read as one space."""
    text = _WHITESPACE.sub(" ", text)
    return [text[i : i + n] for n in range(n_min, n_max + 1) for i in range(len(text) - n + 1)]


def check_labelled_texts(texts: Sequence[str], labels: Sequence[int]) -> tuple[list[str], list[int]]:
    """The texts and integer labels as lists; ValueError if empty, of different lengths or not all str."""
    texts, labels = list(texts), [int(label) for label in labels]
    if not texts:
        raise ValueError("texts must not be empty")
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels must have the same length, got {len(texts)} and {len(labels)}")
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("texts must all be str")
    return texts, labels

class CharNGramNaiveBayes:
    """Multinomial naive Bayes on character n-gram counts with add-alpha (Laplace) smoothing."""

    def __init__(self, n_min: int = 1, n_max: int = 2, alpha: float = 1.0) -> None:
        check_int("n_min", n_min, 1, kinds=int)
        check_int("n_max", n_max, n_min, kinds=int, allowed=f"an integer >= n_min = {n_min}")
        check_number("alpha", alpha, 0.0, math.inf, low_open=True, high_open=True, allowed="a finite number > 0")
        self.n_min, self.n_max, self.alpha = n_min, n_max, float(alpha)
        self.vocabulary: dict[str, int] = {}  # n-gram -> column of feature_log_prob
        self.classes: np.ndarray | None = None  # (C,) the sorted labels seen in training
        self.class_log_prior: np.ndarray | None = None  # (C,) log P(c)
        self.feature_log_prob: np.ndarray | None = None  # (C, F) log P(n-gram | c)

    def fit(
        self, texts: Sequence[str], labels: Sequence[int], class_weights: Sequence[float] | None = None
    ) -> CharNGramNaiveBayes:
        """Count n-grams per class in texts and estimate the smoothed probabilities; returns self.

        ``class_weights`` (one per class, in sorted label order) multiplies each class's n-gram and document
        counts, as if every text of class c were repeated w_c times (re-weighting; None: all 1).
        """
        texts, labels = check_labelled_texts(texts, labels)
        self.classes = np.array(sorted(set(labels)))
        if len(self.classes) < 2:
            raise ValueError(f"labels must hold at least two classes, got {self.classes.tolist()}")
        weights = np.ones(len(self.classes)) if class_weights is None else np.asarray(class_weights, dtype=float)
        if weights.shape != self.classes.shape or not np.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError(
                f"class_weights must hold {len(self.classes)} finite numbers > 0 (one per class), "
                f"got {np.asarray(class_weights).tolist()}"
            )
        row_of = {label: row for row, label in enumerate(self.classes.tolist())}
        per_class = [Counter() for _ in self.classes]
        for text, label in zip(texts, labels, strict=True):
            per_class[row_of[label]].update(char_ngrams(text, self.n_min, self.n_max))
        self.vocabulary = {gram: column for column, gram in enumerate(sorted(set().union(*per_class)))}
        counts = np.zeros((len(self.classes), len(self.vocabulary)))  # (C, F)
        for row, counter in enumerate(per_class):
            counts[row, [self.vocabulary[gram] for gram in counter]] = list(counter.values())
        counts *= weights[:, None]  # (C, F)
        smoothed = counts + self.alpha
        self.feature_log_prob = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
        documents = np.array([sum(label == c for label in labels) for c in self.classes.tolist()], dtype=float)
        documents *= weights  # (C,)
        self.class_log_prior = np.log(documents) - np.log(documents.sum())
        return self

    def joint_log_likelihood(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C): log P(c) + sum of log P(n-gram | c) over the text's known n-grams (unseen ones are skipped)."""
        if self.feature_log_prob is None:
            raise ValueError("the model is not fitted: call fit(texts, labels) first")
        scores = np.empty((len(texts), len(self.classes)))  # (N, C)
        for i, text in enumerate(texts):
            columns = [self.vocabulary[g] for g in char_ngrams(text, self.n_min, self.n_max) if g in self.vocabulary]
            scores[i] = self.class_log_prior + self.feature_log_prob[:, columns].sum(axis=1)
        return scores

    def predict_log_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) log posterior probabilities of the classes."""
        scores = self.joint_log_likelihood(texts)
        return scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) the most probable label of every text."""
        return self.classes[self.joint_log_likelihood(texts).argmax(axis=1)]
