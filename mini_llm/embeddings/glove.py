"""GloVe (Pennington et al. 2014): weighted least squares on log co-occurrence counts, AdaGrad, Numba kernels."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mini_llm.embeddings.cooccurrence import Cooccurrence, count_cooccurrences
from mini_llm.embeddings.glove_kernels import glove_adagrad_epoch, glove_weight
from mini_llm.embeddings.keyed_vectors import WordVectors
from mini_llm.embeddings.vocab import build_vocabulary, check_sentences, encode_corpus
from mini_llm.helpers import check_int, check_number, check_seed, threads


@dataclass
class GloVeReport:
    """What one fit did: nonzero counts, seconds for counting and for training, and J after each epoch."""

    nonzero: int  # nonzero entries X_ij > 0
    count_seconds: float  # building the co-occurrence matrix (vocabulary and encoding included)
    train_seconds: float  # the AdaGrad epochs
    losses: list[float] = field(default_factory=list)  # J / nonzero per epoch (measured during the epoch)


class GloVe(WordVectors):
    """GloVe word vectors: the word vector is w + w̃ (the sum of word and context vectors), as in the paper."""

    def __init__(
        self,
        vector_size: int = 100,  # D, the dimension of the word vectors
        window: int = 10,  # context words on each side, weighted 1/distance (the paper's 10)
        min_count: int = 5,  # words rarer than this are dropped before counting
        x_max: float = 100.0,  # counts above x_max get weight 1 (the paper's 100)
        alpha: float = 0.75,  # exponent of the weighting function (the paper's 3/4)
        learning_rate: float = 0.05,  # AdaGrad's initial step (glove.c's default)
        epochs: int = 25,  # passes over the nonzero counts
        workers: int = 3,  # hogwild threads (at most NUMBA_NUM_THREADS); 1 makes a seeded run exactly repeatable
        seed: int = 1,  # seeds the initial parameters and the order of the entries
    ) -> None:
        self.vector_size = check_int("vector_size", vector_size, 1, type_error=TypeError)
        self.window = check_int("window", window, 1, type_error=TypeError)
        self.min_count = check_int("min_count", min_count, 1, type_error=TypeError)
        self.x_max = check_number("x_max", x_max, 0.0, low_open=True, type_error=TypeError)
        self.alpha = check_number("alpha", alpha, 0.0, low_open=True, type_error=TypeError)
        self.learning_rate = check_number("learning_rate", learning_rate, 0.0, low_open=True, type_error=TypeError)
        self.epochs = check_int("epochs", epochs, 1, type_error=TypeError)
        self.workers = check_int("workers", workers, 1, type_error=TypeError)
        self.seed = check_seed(seed)
        self.vectors = None
        self.cooccurrence: Cooccurrence | None = None
        self.counts: np.ndarray | None = None  # (V,) word counts in the training corpus
        self.report: GloVeReport | None = None

    def fit(self, sentences: Iterable[Sequence[str]]) -> GloVe:
        """Count co-occurrences in sentences (lists of words) and fit the vectors; returns self."""
        start = time.perf_counter()
        sentences = check_sentences(sentences)
        vocab = build_vocabulary(sentences, self.min_count)
        corpus, offsets = encode_corpus(sentences, vocab)  # (N,) int32, (S + 1,) int64
        with threads(self.workers, libraries=("numba",)) as pools:
            n_threads = pools.numba
            counts = count_cooccurrences(corpus, offsets, self.window, len(vocab), n_threads)
            if len(counts) == 0:
                raise ValueError(
                    f"sentences have no two vocabulary words in one sentence (min_count={self.min_count}): "
                    "nothing co-occurs, so GloVe has nothing to fit"
                )
            count_seconds = time.perf_counter() - start

            start = time.perf_counter()
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(len(counts))  # shuffled once, as glove.c's shuffle step
            rows, cols = counts.rows[order], counts.cols[order]  # (nnz,), (nnz,)
            log_x = np.log(counts.values[order]).astype(np.float32)  # (nnz,)
            f_x = glove_weight(counts.values[order], self.x_max, self.alpha).astype(np.float32)  # (nnz,)
            n_words, size = len(vocab), self.vector_size

            def init(*shape: int) -> np.ndarray:
                return ((rng.random(shape, dtype=np.float32) - 0.5) / size).astype(np.float32)

            w, w_ctx, b, b_ctx = init(n_words, size), init(n_words, size), init(n_words), init(n_words)
            g2 = [np.ones_like(p) for p in (w, w_ctx, b, b_ctx)]  # AdaGrad's sums of squared gradients
            losses = []
            for _ in range(self.epochs):
                loss = glove_adagrad_epoch(
                    w, w_ctx, b, b_ctx, *g2, rows, cols, log_x, f_x, self.learning_rate, n_threads
                )
                if not np.isfinite(loss):
                    raise ValueError(f"GloVe diverged (loss {loss}); lower learning_rate={self.learning_rate}")
                losses.append(loss / len(counts))
            train_seconds = time.perf_counter() - start

        self._set_vectors(vocab.words, w + w_ctx)
        self.word_vectors, self.context_vectors = w, w_ctx
        self.biases, self.context_biases = b, b_ctx
        self.cooccurrence = counts
        self.counts = vocab.counts
        self.report = GloVeReport(
            nonzero=len(counts), count_seconds=count_seconds, train_seconds=train_seconds, losses=losses
        )
        return self
