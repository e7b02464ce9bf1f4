"""Okapi BM25 ranking of documents for a query (Robertson et al., 1994), with Chinese character tokens.

For a query q with terms t (repeated terms count once per occurrence) and a document d,

    score(q, d) = Σ_t idf(t) · f(t, d) · (k1 + 1) / (f(t, d) + k1 · (1 - b + b · |d| / avgdl))

where f(t, d) is how often t occurs in d, |d| the number of tokens of d, avgdl the mean of |d| over the corpus,
k1 >= 0 how fast repeated occurrences saturate and b in [0, 1] how strongly long documents are penalised.
With N documents of which n(t) contain t, the idf is

    "lucene":    idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))   (always > 0; Lucene, Elasticsearch)
    "robertson": idf(t) = ln((N - n(t) + 0.5) / (n(t) + 0.5))       (the original; < 0 when n(t) > N / 2)

Chinese has no spaces between words, so the default tokens are overlapping character bigrams ("人民日报" ->
"人民", "民日", "日报"); single characters and any callable ``str -> list[str]`` work too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from mini_llm.helpers import check_int, check_number

IDF_VARIANTS = ("lucene", "robertson")
TOKENIZERS = ("char", "bigram")


def char_tokens(text: str) -> list[str]:
    """The characters of text, whitespace left out: "人民 日报" -> ["人", "民", "日", "报"]."""
    return [ch for ch in text if not ch.isspace()]


def char_bigrams(text: str) -> list[str]:
    """Overlapping character pairs within each whitespace-free run; a run of one character is kept as it is."""
    tokens: list[str] = []
    for run in text.split():
        if len(run) == 1:
            tokens.append(run)
        tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


def char_ngram_set(text: str, n: int) -> set[str]:
    """Every distinct character n-gram of text (whitespace included): char_ngram_set("人民日报", 2) -> {"人民", ...}."""
    check_int("n", n, 1, kinds=int)
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def _resolve_tokenizer(tokenizer: str | Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    if callable(tokenizer):
        return tokenizer
    if tokenizer == "char":
        return char_tokens
    if tokenizer == "bigram":
        return char_bigrams
    raise ValueError(f"tokenizer must be one of {TOKENIZERS} or a callable str -> list[str], got {tokenizer!r}")


class BM25:
    """Okapi BM25 over a fixed list of documents: ``fit`` them, then ``score`` or ``top_k`` a query."""

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        tokenizer: str | Callable[[str], list[str]] = "bigram",
        idf: str = "lucene",
    ) -> None:
        check_number("k1", k1, 0.0, math.inf, high_open=True, allowed="a finite number >= 0")
        check_number("b", b, 0.0, 1.0, allowed="a number in [0, 1]")
        if idf not in IDF_VARIANTS:
            raise ValueError(f"idf must be one of {IDF_VARIANTS}, got {idf!r}")
        self.k1 = float(k1)
        self.b = float(b)
        self.idf_variant = idf
        self.tokenize = _resolve_tokenizer(tokenizer)
        self.n_documents = 0
        self.doc_lengths = np.zeros(0)  # (N,) tokens per document
        self.avgdl = 0.0
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # term -> (document ids (n,), counts (n,))
        self.idf: dict[str, float] = {}

    def fit(self, documents: Sequence[str]) -> BM25:
        """Count the terms of every document and compute the idf of each; returns self."""
        if isinstance(documents, str) or not isinstance(documents, Sequence) or len(documents) == 0:
            raise ValueError(f"documents must be a non-empty list of strings, got {type(documents).__name__}")
        bad = next((i for i, doc in enumerate(documents) if not isinstance(doc, str)), None)
        if bad is not None:
            raise ValueError(f"documents must hold strings, got {type(documents[bad]).__name__} at index {bad}")
        doc_ids: dict[str, list[int]] = {}
        counts: dict[str, list[int]] = {}
        lengths = np.zeros(len(documents))  # (N,)
        for i, doc in enumerate(documents):
            terms = Counter(self.tokenize(doc))
            lengths[i] = sum(terms.values())
            for term, count in terms.items():
                doc_ids.setdefault(term, []).append(i)
                counts.setdefault(term, []).append(count)
        if lengths.sum() == 0:
            raise ValueError("documents must hold at least one token between them, got only empty documents")
        N = len(documents)
        self.n_documents = N
        self.doc_lengths = lengths
        self.avgdl = float(lengths.mean())
        self.postings = {t: (np.array(doc_ids[t]), np.array(counts[t], dtype=np.float64)) for t in doc_ids}
        self.idf = {t: self._idf(N, len(ids)) for t, ids in doc_ids.items()}
        return self

    def _idf(self, N: int, n: int) -> float:
        ratio = (N - n + 0.5) / (n + 0.5)
        return math.log1p(ratio) if self.idf_variant == "lucene" else math.log(ratio)

    def score(self, query: str) -> np.ndarray:
        """BM25 score of every document for query: (N,) float64, 0 where no query term occurs."""
        if self.n_documents == 0:
            raise ValueError("BM25 has no documents: call fit(documents) before score or top_k")
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}")
        scores = np.zeros(self.n_documents)  # (N,)
        norm = self.k1 * (1.0 - self.b + self.b * self.doc_lengths / self.avgdl)  # (N,)
        for term, repeats in Counter(self.tokenize(query)).items():
            if term not in self.postings:
                continue
            ids, tf = self.postings[term]  # (n,), (n,)
            scores[ids] += repeats * self.idf[term] * tf * (self.k1 + 1.0) / (tf + norm[ids])  # (n,)
        return scores

    def top_k(self, query: str, k: int) -> list[tuple[int, float]]:
        """The k best (document index, score) pairs, best first; equal scores keep corpus order."""
        check_int("k", k, 1)
        scores = self.score(query)  # (N,)
        order = np.argsort(-scores, kind="stable")[:k]  # (min(k, N),)
        return [(int(i), float(scores[i])) for i in order]
