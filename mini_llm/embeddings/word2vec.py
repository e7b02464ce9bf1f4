"""Word2Vec: skip-gram with negative sampling (Mikolov et al. 2013) on Numba kernels, with gensim's argument names."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mini_llm.embeddings.keyed_vectors import WordVectors
from mini_llm.embeddings.sgns import sgns_epoch
from mini_llm.embeddings.vocab import (
    alias_table,
    build_vocabulary,
    check_sentences,
    encode_corpus,
    keep_thresholds,
    noise_distribution,
    split_long_sentences,
)
from mini_llm.helpers import check_int, check_number, check_seed, threads

MAX_SENTENCE_WORDS = 10_000  # longer sentences are trained in pieces (gensim's MAX_WORDS_IN_BATCH)


@dataclass
class TrainingReport:
    """What one fit did: words seen and kept, and the seconds spent (vocabulary building excluded)."""

    raw_words: int  # in-vocabulary words over all epochs, before subsampling
    effective_words: int  # words kept by subsampling over all epochs (gensim's "effective words")
    seconds: float  # training time, epochs only

    @property
    def effective_words_per_second(self) -> float:
        """Throughput as gensim reports it: effective words / training seconds."""
        return self.effective_words / self.seconds if self.seconds > 0 else float("inf")


class Word2Vec(WordVectors):
    """Skip-gram word2vec with negative sampling, subsampling and a linearly decaying learning rate.

    Training is hogwild (lock-free) over sentences on `workers` Numba threads; with workers=1 a seed gives
    bit-identical vectors. The defaults are gensim's (except sg: this class is skip-gram only).
    """

    def __init__(
        self,
        vector_size: int = 100,  # D, the dimension of the word vectors
        window: int = 5,  # largest distance between center and context word (shrunk at random per word)
        negative: int = 5,  # noise words per (context, center) pair, drawn from unigram^0.75
        min_count: int = 5,  # words rarer than this are dropped before training
        sample: float = 1e-3,  # subsampling threshold for frequent words (0 = off)
        alpha: float = 0.025,  # initial learning rate
        min_alpha: float = 0.0001,  # final learning rate (linear decay over all epochs)
        epochs: int = 5,  # passes over the corpus
        workers: int = 3,  # hogwild threads (at most NUMBA_NUM_THREADS); 1 makes a seeded run exactly repeatable
        seed: int = 1,  # seeds the initial vectors and every sentence's random numbers
    ) -> None:
        self.vector_size = check_int("vector_size", vector_size, 1, type_error=TypeError)
        self.window = check_int("window", window, 1, type_error=TypeError)
        self.negative = check_int("negative", negative, 1, type_error=TypeError)
        self.min_count = check_int("min_count", min_count, 1, type_error=TypeError)
        self.sample = check_number("sample", sample, 0.0, 1.0, type_error=TypeError)
        self.alpha = check_number("alpha", alpha, 0.0, low_open=True, type_error=TypeError)
        self.min_alpha = check_number("min_alpha", min_alpha, 0.0, self.alpha, type_error=TypeError)
        self.epochs = check_int("epochs", epochs, 1, type_error=TypeError)
        self.workers = check_int("workers", workers, 1, type_error=TypeError)
        self.seed = check_seed(seed)
        self.vectors = None
        self.output_vectors: np.ndarray | None = None  # (V, D) syn1neg, the vectors of predicted words
        self.counts: np.ndarray | None = None  # (V,) word counts in the training corpus
        self.report: TrainingReport | None = None

    def fit(self, sentences: Iterable[Sequence[str]]) -> Word2Vec:
        """Build the vocabulary from sentences (lists of words) and train the vectors; returns self."""
        sentences = check_sentences(sentences)
        vocab = build_vocabulary(sentences, self.min_count)
        corpus, offsets = encode_corpus(sentences, vocab)  # (N,) int32, (S + 1,) int64
        offsets = split_long_sentences(offsets, MAX_SENTENCE_WORDS)  # empty sentences dropped too
        keep = keep_thresholds(vocab.counts, self.sample)  # (V,)
        noise_thresholds, noise_alias = alias_table(noise_distribution(vocab.counts))  # (V,), (V,)

        rng = np.random.default_rng(self.seed)
        n_words, size = len(vocab), self.vector_size
        syn0 = ((rng.random((n_words, size), dtype=np.float32) - 0.5) / size).astype(np.float32)  # (V, D)
        syn1neg = np.zeros((n_words, size), dtype=np.float32)  # (V, D)

        effective = 0
        start = time.perf_counter()
        with threads(self.workers, libraries=("numba",)) as pools:
            n_threads = pools.numba
            for epoch in range(self.epochs):
                effective += sgns_epoch(
                    syn0, syn1neg, corpus, offsets, keep, noise_thresholds, noise_alias,
                    self.window, self.negative, self.alpha, self.min_alpha, epoch, self.epochs, self.seed,
                    n_threads,
                )  # fmt: skip
        seconds = time.perf_counter() - start

        self._set_vectors(vocab.words, syn0)
        self.output_vectors = syn1neg
        self.counts = vocab.counts
        self.report = TrainingReport(
            raw_words=len(corpus) * self.epochs, effective_words=int(effective), seconds=seconds
        )
        return self
