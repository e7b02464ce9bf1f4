"""Windowed co-occurrence counts for GloVe: X_ij = Σ 1/d over the times word j occurs d <= window words from word i.

The window is symmetric (both directions are counted, so X is symmetric) and runs over the in-vocabulary words
of one sentence, as GloVe's cooccur.c does. The counts are kept sparse: one (row, col, value) triple per nonzero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange


@dataclass(frozen=True)
class Cooccurrence:
    """A sparse co-occurrence matrix: entries sorted by row, then column."""

    rows: np.ndarray  # (nnz,) int32, word i
    cols: np.ndarray  # (nnz,) int32, context word j
    values: np.ndarray  # (nnz,) float64, X_ij
    n_words: int  # V, the matrix is (V, V)

    def __len__(self) -> int:
        return len(self.values)

    def to_dense(self) -> np.ndarray:
        """The full (V, V) matrix (small vocabularies only)."""
        dense = np.zeros((self.n_words, self.n_words), dtype=np.float64)
        dense[self.rows, self.cols] = self.values
        return dense


@njit(cache=True)
def pair_counts_per_row(corpus: np.ndarray, offsets: np.ndarray, window: int, n_words: int) -> np.ndarray:
    """How many (word, neighbour) pairs each word heads, before merging repeated pairs: (V,) int64."""
    per_row = np.zeros(n_words, dtype=np.int64)
    for s in range(offsets.shape[0] - 1):
        start, stop = offsets[s], offsets[s + 1]
        for p in range(start, stop):
            per_row[corpus[p]] += min(p - start, window) + min(stop - 1 - p, window)
    return per_row


@njit(cache=True)
def scatter_pairs(
    corpus: np.ndarray, offsets: np.ndarray, window: int, row_start: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every (word, neighbour, 1/d) pair, grouped by word: (cols (P,) int32, weights (P,) float32)."""
    n_pairs = row_start[-1]
    cols = np.empty(n_pairs, dtype=np.int32)
    weights = np.empty(n_pairs, dtype=np.float32)
    fill = row_start[:-1].copy()
    for s in range(offsets.shape[0] - 1):
        start, stop = offsets[s], offsets[s + 1]
        for p in range(start, stop):
            i = corpus[p]
            for q in range(p + 1, min(stop, p + window + 1)):
                j = corpus[q]
                weight = np.float32(1.0 / (q - p))
                cols[fill[i]], weights[fill[i]] = j, weight
                fill[i] += 1
                cols[fill[j]], weights[fill[j]] = i, weight
                fill[j] += 1
    return cols, weights


@njit(parallel=True, cache=True)
def merge_rows(
    row_start: np.ndarray, cols: np.ndarray, weights: np.ndarray, out_start: np.ndarray,
    out_cols: np.ndarray, out_values: np.ndarray, n_chunks: int, write: bool,
) -> np.ndarray:  # fmt: skip
    """Sum the pairs of each row by column (float64): unique columns per row, and (if write) the merged entries.

    Rows are dealt to n_chunks threads in turn (row r to chunk r % n_chunks), since frequent words come first.
    """
    n_words = row_start.shape[0] - 1
    n_unique = np.zeros(n_words, dtype=np.int64)
    for chunk in prange(n_chunks):
        dense = np.zeros(n_words, dtype=np.float64)  # (V,) this row's sums
        touched = np.empty(n_words, dtype=np.int32)  # columns seen in this row
        for r in range(chunk, n_words, n_chunks):
            n = 0
            for e in range(row_start[r], row_start[r + 1]):
                c = cols[e]
                if dense[c] == 0.0:
                    touched[n] = c
                    n += 1
                dense[c] += weights[e]
            seen = np.sort(touched[:n])
            n_unique[r] = n
            for k in range(n):
                c = seen[k]
                if write:
                    out_cols[out_start[r] + k] = c
                    out_values[out_start[r] + k] = dense[c]
                dense[c] = 0.0
    return n_unique


def count_cooccurrences(
    corpus: np.ndarray, offsets: np.ndarray, window: int, n_words: int, workers: int = 1
) -> Cooccurrence:
    """The 1/distance-weighted co-occurrence counts of an encoded corpus (see encode_corpus)."""
    per_row = pair_counts_per_row(corpus, offsets, window, n_words)
    row_start = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(per_row, out=row_start[1:])
    cols, weights = scatter_pairs(corpus, offsets, window, row_start)
    empty_cols, empty_values = np.empty(0, dtype=np.int32), np.empty(0, dtype=np.float64)
    n_unique = merge_rows(row_start, cols, weights, row_start, empty_cols, empty_values, workers, False)
    out_start = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(n_unique, out=out_start[1:])
    out_cols = np.empty(out_start[-1], dtype=np.int32)
    out_values = np.empty(out_start[-1], dtype=np.float64)
    merge_rows(row_start, cols, weights, out_start, out_cols, out_values, workers, True)
    rows = np.repeat(np.arange(n_words, dtype=np.int32), n_unique)
    return Cooccurrence(rows=rows, cols=out_cols, values=out_values, n_words=n_words)
