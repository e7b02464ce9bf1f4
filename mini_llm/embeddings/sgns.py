"""Numba kernels of skip-gram with negative sampling (SGNS): one update, and one hogwild epoch over sentences.

For a (context, center) pair the input vector is v = syn0[context] and the predicted words are the center word
(label 1) and `negative` noise words (label 0), each with an output vector u = syn1neg[word]. One SGD step on
L = -log σ(u_center·v) - Σ_k log σ(-u_k·v) with learning rate alpha is, for every predicted word with label y,
g = alpha (y - σ(u·v)); u += g v; and, after all of them, v += Σ g u (with u before its own update), as in
word2vec.c and gensim.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# fastmath without 'nnan'/'ninf': reductions vectorise, and exp(-x) may still overflow to inf safely.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
LCG_MULTIPLIER = 25214903917  # java.util.Random's 48-bit LCG, as in word2vec.c and gensim
LCG_INCREMENT = 11
LCG_MASK = (1 << 48) - 1
UINT32_MASK = (1 << 32) - 1


@njit(cache=True, inline="always")
def lcg_next(state: int) -> int:
    """The next state of the 48-bit linear congruential generator."""
    return (state * LCG_MULTIPLIER + LCG_INCREMENT) & LCG_MASK


@njit(cache=True, inline="always")
def lcg_uint32(state: int) -> int:
    """A uniform 32-bit integer from the generator's high bits."""
    return (state >> 16) & UINT32_MASK


@njit(cache=True)
def seed_state(seed: int, epoch: int, sentence: int) -> int:
    """A generator state for one sentence in one epoch: runs do not depend on which thread takes the sentence."""
    state = seed * 6364136223846793005 + epoch * 1442695040888963407 + sentence * 2862933555777941757 + 1
    state ^= state >> 29
    return lcg_next(state & LCG_MASK)


@njit(cache=True, inline="always")
def draw_alias(thresholds: np.ndarray, alias: np.ndarray, r_bin: int, r_keep: int) -> int:
    """One draw from an alias table given two uniform 32-bit integers."""
    i = (r_bin * thresholds.shape[0]) >> 32
    return i if r_keep < thresholds[i] else alias[i]


@njit(cache=True)
def draw_noise(thresholds: np.ndarray, alias: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n draws from the noise table with the kernels' generator (to test its distribution)."""
    out = np.empty(n, dtype=np.int64)
    state = seed_state(seed, 0, 0)
    for k in range(n):
        r_bin = lcg_uint32(state)
        state = lcg_next(state)
        r_keep = lcg_uint32(state)
        state = lcg_next(state)
        out[k] = draw_alias(thresholds, alias, r_bin, r_keep)
    return out


@njit(fastmath=FASTMATH, cache=True, inline="always")
def predict_word(l1: np.ndarray, l2: np.ndarray, label: np.float32, alpha: np.float32, work: np.ndarray) -> None:
    """One predicted word: work += g * l2 and l2 += g * l1 with g = alpha * (label - σ(l1·l2))."""
    size = l1.shape[0]
    dot = np.float32(0.0)
    for d in range(size):
        dot += l1[d] * l2[d]
    g = alpha * (label - np.float32(1.0) / (np.float32(1.0) + np.exp(-dot)))
    for d in range(size):
        work[d] += g * l2[d]
        l2[d] += g * l1[d]


@njit(fastmath=FASTMATH, cache=True)
def sgns_pair_update(
    syn0: np.ndarray, syn1neg: np.ndarray, context: int, center: int, negatives: np.ndarray, alpha: float
) -> None:
    """One SGNS step for a (context, center) pair with the given noise words (the epoch kernel's arithmetic)."""
    l1 = syn0[context]  # (D,)
    work = np.zeros_like(l1)
    a = np.float32(alpha)
    predict_word(l1, syn1neg[center], np.float32(1.0), a, work)
    for k in range(negatives.shape[0]):
        if negatives[k] != center:
            predict_word(l1, syn1neg[negatives[k]], np.float32(0.0), a, work)
    for d in range(l1.shape[0]):
        l1[d] += work[d]


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def sgns_epoch(
    syn0: np.ndarray,
    syn1neg: np.ndarray,
    corpus: np.ndarray,
    offsets: np.ndarray,
    keep: np.ndarray,
    noise_thresholds: np.ndarray,
    noise_alias: np.ndarray,
    window: int,
    negative: int,
    alpha_start: float,
    alpha_end: float,
    epoch: int,
    epochs: int,
    seed: int,
    n_chunks: int,
) -> int:
    """One epoch of skip-gram with negative sampling, hogwild over n_chunks interleaved sets of sentences.

    corpus (N,) int32 holds the word indices of all sentences, sentence s being corpus[offsets[s]:offsets[s + 1]].
    Chunk c trains sentences c, c + n_chunks, ... so that all threads move through the corpus together and the
    learning rate, which decays linearly from alpha_start to alpha_end over all epochs, is the same for all.
    Each sentence draws its randomness from its own generator (seed, epoch, sentence).
    Returns the effective words: the words kept by subsampling.
    """
    n_sentences = offsets.shape[0] - 1
    size = syn0.shape[1]
    total_words = corpus.shape[0] * epochs
    longest = 0
    for s in range(n_sentences):
        longest = max(longest, offsets[s + 1] - offsets[s])
    trained = np.zeros(n_chunks, dtype=np.int64)
    for chunk in prange(n_chunks):
        work = np.empty(size, dtype=np.float32)  # (D,) gradient for the input vector
        kept = np.empty(longest, dtype=np.int32)  # the sentence after subsampling
        for s in range(chunk, n_sentences, n_chunks):
            start, stop = offsets[s], offsets[s + 1]
            state = seed_state(seed, epoch, s)
            progress = (epoch * corpus.shape[0] + start) / total_words
            alpha = np.float32(alpha_start - (alpha_start - alpha_end) * progress)
            n = 0
            for p in range(start, stop):
                word = corpus[p]
                if keep[word] <= UINT32_MASK:  # sometimes dropped: draw
                    r = lcg_uint32(state)
                    state = lcg_next(state)
                    if r >= keep[word]:
                        continue
                kept[n] = word
                n += 1
            trained[chunk] += n
            for i in range(n):
                reduced = lcg_uint32(state) % window  # word2vec's random window shrink: b in [0, window)
                state = lcg_next(state)
                center = kept[i]
                for j in range(max(0, i - window + reduced), min(n, i + window + 1 - reduced)):
                    if j == i:
                        continue
                    l1 = syn0[kept[j]]  # (D,) the context word's input vector
                    for d in range(size):
                        work[d] = 0.0
                    predict_word(l1, syn1neg[center], np.float32(1.0), alpha, work)
                    for _ in range(negative):
                        r_bin = lcg_uint32(state)
                        state = lcg_next(state)
                        r_keep = lcg_uint32(state)
                        state = lcg_next(state)
                        target = draw_alias(noise_thresholds, noise_alias, r_bin, r_keep)
                        if target != center:
                            predict_word(l1, syn1neg[target], np.float32(0.0), alpha, work)
                    for d in range(size):
                        l1[d] += work[d]
    return trained.sum()
