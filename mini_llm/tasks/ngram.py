"""Count-based character n-gram language models: the statistical era of chapter 1.

Smoothing (Chen & Goodman, 1999):
- ``"none"``: maximum likelihood, P(w | h) = c(hw) / c(h·); unseen n-grams get probability 0.
- ``"add-k"``: P(w | h) = (c(hw) + k) / (c(h·) + k V).
- ``"kneser-ney"``: interpolated Kneser-Ney with one absolute discount D = n1 / (n1 + 2 n2) per order,
  continuation counts for the lower orders, and a uniform distribution over the V symbols at the bottom.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

SMOOTHINGS = ("kneser-ney", "add-k", "none")
UNKNOWN_CHAR = "\uffff"  # stands for every character not seen in training


class NGramLanguageModel:
    """A character n-gram model: P(x_t | x_{t-n+1} ... x_{t-1})."""

    def __init__(self, order: int, smoothing: str = "kneser-ney", add_k: float = 1.0) -> None:
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order!r}")
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
        if smoothing == "add-k" and not add_k > 0:
            raise ValueError(f"add_k must be > 0 for add-k smoothing, got {add_k!r}")
        self.order = order
        self.smoothing = smoothing
        self.add_k = add_k
        self.vocab: frozenset[str] = frozenset()
        # Per order k = 1..n: counts of k-grams, and per (k-1)-char history the total and the number of types.
        self._counts: dict[int, dict[str, int]] = {}
        self._history_total: dict[int, dict[str, int]] = {}
        self._history_types: dict[int, dict[str, int]] = {}
        self._discount: dict[int, float] = {}

    def fit(self, text: str) -> NGramLanguageModel:
        """Count n-grams of every order up to ``order`` in the training text."""
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        if UNKNOWN_CHAR in text:
            raise ValueError(f"text must not contain the reserved character {UNKNOWN_CHAR!r}")
        self.vocab = frozenset(text) | {UNKNOWN_CHAR}
        raw = {k: Counter(text[i : i + k] for i in range(len(text) - k + 1)) for k in range(1, self.order + 1)}
        for k in range(1, self.order + 1):
            if self.smoothing == "kneser-ney" and k < self.order:
                counts = Counter(gram[1:] for gram in raw[k + 1])  # continuation counts N1+(. w)
            else:
                counts = raw[k]
            total: dict[str, int] = defaultdict(int)
            types: dict[str, int] = defaultdict(int)
            for gram, count in counts.items():
                total[gram[:-1]] += count
                types[gram[:-1]] += 1
            self._counts[k], self._history_total[k], self._history_types[k] = dict(counts), dict(total), dict(types)
            self._discount[k] = absolute_discount(counts.values())
        return self

    @property
    def vocab_size(self) -> int:
        """Number of symbols V, the unknown symbol included."""
        return len(self.vocab)

    def prob(self, history: str, char: str) -> float:
        """P(char | the last order-1 characters of history)."""
        self._check_fitted()
        history = self._map_unknown(history[len(history) - self.order + 1 :] if self.order > 1 else "")
        return self._prob(len(history) + 1, history, self._map_unknown(char))

    def log_probs(self, text: str) -> np.ndarray:
        """Natural-log probability of each character of text given the characters before it (within text)."""
        self._check_fitted()
        mapped = self._map_unknown(text)
        n = self.order
        probs = [self._prob(min(t, n - 1) + 1, mapped[max(0, t - n + 1) : t], mapped[t]) for t in range(len(mapped))]
        with np.errstate(divide="ignore"):
            return np.log(np.array(probs, dtype=np.float64))

    def perplexity(self, text: str) -> float:
        """exp of the mean negative log-probability per character (inf if a character has probability 0)."""
        if not text:
            raise ValueError("text must be a non-empty string")
        return float(math.exp(-np.mean(self.log_probs(text))))

    def distribution(self, history: str) -> tuple[list[str], np.ndarray]:
        """All symbols (sorted) and their probabilities after ``history``."""
        symbols = sorted(self.vocab)
        return symbols, np.array([self.prob(history, char) for char in symbols])

    def generate(self, prompt: str, n_chars: int, seed: int = 0) -> str:
        """Sample ``n_chars`` characters after ``prompt`` (never the unknown symbol), reproducibly by seed."""
        if n_chars < 0:
            raise ValueError(f"n_chars must be >= 0, got {n_chars}")
        rng = np.random.default_rng(seed)
        text = prompt
        for _ in range(n_chars):
            symbols, probs = self.distribution(text)
            probs[symbols.index(UNKNOWN_CHAR)] = 0.0
            if probs.sum() == 0:
                raise ValueError(f"no known character can follow {text[-self.order + 1:]!r} under this model")
            text += symbols[rng.choice(len(symbols), p=probs / probs.sum())]
        return text

    def _prob(self, k: int, history: str, char: str) -> float:
        total = self._history_total[k].get(history, 0)
        count = self._counts[k].get(history + char, 0)
        if self.smoothing == "none":
            return count / total if total else 0.0
        if self.smoothing == "add-k":
            return (count + self.add_k) / (total + self.add_k * self.vocab_size)
        lower = 1.0 / self.vocab_size if k == 1 else self._prob(k - 1, history[1:], char)
        if total == 0:
            return lower
        discount = self._discount[k]
        return (max(count - discount, 0.0) + discount * self._history_types[k][history] * lower) / total

    def _map_unknown(self, text: str) -> str:
        return "".join(char if char in self.vocab else UNKNOWN_CHAR for char in text)

    def _check_fitted(self) -> None:
        if not self.vocab:
            raise RuntimeError("call fit(text) before asking for probabilities")


def absolute_discount(counts) -> float:
    """Kneser-Ney discount D = n1 / (n1 + 2 n2) from the numbers of n-grams seen once and twice."""
    frequency = Counter(counts)
    n1, n2 = frequency.get(1, 0), frequency.get(2, 0)
    return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
