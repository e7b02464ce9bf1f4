"""Vocabulary: word counts, the min_count cut, corpus encoding, subsampling and the negative-sampling noise table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NOISE_POWER = 0.75  # Mikolov et al. 2013: negatives drawn from unigram^0.75
RANDOM_RANGE = 2**32  # subsampling compares a keep threshold with a uniform 32-bit random integer


@dataclass(frozen=True)
class Vocabulary:
    """Words kept by min_count, most frequent first (ties in order of first appearance), with their counts."""

    words: tuple[str, ...]  # index -> word
    counts: np.ndarray  # (V,) int64, occurrences in the corpus
    index: dict[str, int]  # word -> index

    def __len__(self) -> int:
        return len(self.words)

    @property
    def total(self) -> int:
        """Occurrences of vocabulary words in the corpus (the raw words that training sees)."""
        return int(self.counts.sum())


def check_sentences(sentences: Iterable[Sequence[str]]) -> list[Sequence[str]]:
    """The corpus as a list of word lists; ValueError when it is empty or a sentence is a bare string."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of word lists (e.g. [['我', '爱', '北京']]), got a str")
    sentences = list(sentences)
    for i, sentence in enumerate(sentences):
        if isinstance(sentence, str):
            raise TypeError(
                f"sentences must be a list of word lists, but sentence {i} is a str ({sentence[:20]!r}); "
                "split it into words first"
            )
    if sum(len(sentence) for sentence in sentences) == 0:
        raise ValueError(f"sentences is an empty corpus ({len(sentences)} sentences, 0 words); give at least one word")
    return sentences


def build_vocabulary(sentences: Sequence[Sequence[str]], min_count: int) -> Vocabulary:
    """Count the words and keep those occurring at least min_count times, most frequent first."""
    counter = Counter(word for sentence in sentences for word in sentence)
    kept = [(word, count) for word, count in counter.items() if count >= min_count]
    if not kept:
        raise ValueError(
            f"min_count={min_count} removes every word: the most frequent word occurs "
            f"{max(counter.values(), default=0)} times in {sum(counter.values())} words; lower min_count"
        )
    kept.sort(key=lambda item: -item[1])  # stable: ties keep the order of first appearance, as in gensim
    words = tuple(word for word, _ in kept)
    counts = np.array([count for _, count in kept], dtype=np.int64)
    return Vocabulary(words=words, counts=counts, index={word: i for i, word in enumerate(words)})


def encode_corpus(sentences: Sequence[Sequence[str]], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Word indices of all sentences, out-of-vocabulary words dropped: (flat (N,) int32, offsets (S + 1,) int64)."""
    index = vocab.index
    ids: list[int] = []
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    for s, sentence in enumerate(sentences):
        ids.extend(i for i in (index.get(word) for word in sentence) if i is not None)
        offsets[s + 1] = len(ids)
    return np.asarray(ids, dtype=np.int32), offsets


def split_long_sentences(offsets: np.ndarray, max_words: int) -> np.ndarray:
    """Sentence offsets with every sentence longer than max_words cut into pieces of at most max_words words."""
    pieces = [
        np.arange(start, stop, max_words, dtype=np.int64)
        for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
        if stop > start
    ]
    return np.concatenate([*pieces, offsets[-1:]]) if pieces else offsets[-1:].copy()


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Probability of keeping each word when subsampling frequent words (word2vec.c and gensim's formula).

    With t = sample * total count and c the word's count, p_keep = min(1, (sqrt(c / t) + 1) * t / c);
    sample = 0 keeps every word.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones_like(counts)
    threshold = sample * counts.sum()
    return np.minimum(1.0, (np.sqrt(counts / threshold) + 1.0) * threshold / counts)


def keep_thresholds(counts: np.ndarray, sample: float) -> np.ndarray:
    """keep_probabilities scaled to 32-bit integers: a word is kept when a uniform random uint32 is below it."""
    return np.round(keep_probabilities(counts, sample) * RANDOM_RANGE).astype(np.int64)  # (V,)


def noise_distribution(counts: np.ndarray, power: float = NOISE_POWER) -> np.ndarray:
    """The negative-sampling distribution: count^power, normalised to sum to 1."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()


def alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table for drawing from a discrete distribution in O(1): (thresholds (V,) int64, alias (V,) int32).

    Draw a bin i uniformly and a uniform 32-bit integer r: the sample is i when r < thresholds[i], else alias[i].
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n = len(probabilities)
    scaled = probabilities / probabilities.sum() * n
    alias = np.arange(n, dtype=np.int32)
    share = np.ones(n, dtype=np.float64)  # the part of bin i that returns i itself
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, big = small.pop(), large.pop()
        share[s], alias[s] = scaled[s], big
        scaled[big] -= 1.0 - scaled[s]
        (small if scaled[big] < 1.0 else large).append(big)
    thresholds = np.minimum(np.round(share * RANDOM_RANGE), RANDOM_RANGE).astype(np.int64)
    return thresholds, alias


def alias_probabilities(thresholds: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """The exact distribution an alias table draws from (to check it against the one it was built for)."""
    n = len(thresholds)
    share = np.asarray(thresholds, dtype=np.float64) / RANDOM_RANGE
    probabilities = share.copy()
    np.add.at(probabilities, np.asarray(alias), 1.0 - share)
    return probabilities / n
