"""Memorization metrics: the exposure of a canary (Carlini et al., 2019) and exact extraction (Carlini et al., 2021).

- Exposure (Carlini et al. 2019, "The Secret Sharer", USENIX Security): a secret ``s`` drawn at random from a
  space ``R`` of candidates (e.g. every 5-digit number after "的密码是") is inserted into the training text; the model
  ranks all candidates by log-perplexity and ``exposure = log2 |R| - log2 rank(s)``. A secret the model prefers to
  every other candidate gets the maximum, log2 |R| bits; a secret it never saw has a uniformly random rank and an
  expected exposure of about 1 / ln 2 = 1.44 bits (``random_rank_exposure``).
- Extraction (Carlini et al. 2021, "Extracting Training Data from Large Language Models"): give the model a prefix
  taken from the text and decode greedily; the continuation is extracted when it equals the text that followed.
  ``extraction_lengths`` counts the exact characters (the common prefix of the continuation and the reference),
  ``extraction_rate`` the share of continuations with at least n of them; ``extraction_summary`` adds the Wilson
  interval of each share.
- Duplicated text (Lee et al. 2022, "Deduplicating Training Data Makes Language Models Better"; Kandpal et al.
  2022): how often each window of a token sequence occurs in it (``window_copies``) or in another one
  (``count_occurrences``, ``copies_in``), exactly: a 64-bit polynomial hash finds the candidates, a comparison of the
  tokens confirms each one.

The metrics take log-perplexities, decoded texts and token ids, never a model: the experiments that compute them
live in ``mini_llm.trends.memorization``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from mini_llm.evaluation.intervals import accuracy_interval
from mini_llm.helpers import check_int, is_number

HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the window hash (arithmetic mod 2^64)


def _finite_array(name: str, values: object, ndim: tuple[int, ...]) -> np.ndarray:
    """values as a float64 array of one of the allowed numbers of dimensions, every entry finite."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must hold finite real numbers, got {values!r:.80}") from error
    if isinstance(values, bool) or (array.ndim == 0 and not is_number(values) and not isinstance(values, np.ndarray)):
        raise ValueError(f"{name} must hold finite real numbers, got {values!r:.80}")
    if array.ndim not in ndim:
        shapes = " or ".join({0: "a number", 1: "a 1-D sequence"}[n] for n in ndim)
        raise ValueError(f"{name} must be {shapes}, got an array of shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite real numbers (no NaN or inf), got {array[~np.isfinite(array)][0]}")
    return array


def exposure_rank(
    canary_log_perplexity: float | Sequence[float] | np.ndarray,
    candidate_log_perplexities: Sequence[float] | np.ndarray,
) -> int | np.ndarray:
    """Rank of the canary among the candidates (which include it): the number with log-perplexity <= the canary's.

    Rank 1 is the most likely candidate. Ties count against the canary (a candidate exactly as likely ranks before
    it), so a tie never raises the exposure. A 1-D canary_log_perplexity gives one rank per canary. ValueError if a
    canary is below every candidate (it is not among them), or for empty, non-finite or misshapen input.
    """
    canary = _finite_array("canary_log_perplexity", canary_log_perplexity, (0, 1))
    candidates = _finite_array("candidate_log_perplexities", candidate_log_perplexities, (1,))
    if candidates.size == 0:
        raise ValueError("candidate_log_perplexities must be a non-empty 1-D sequence (the candidate space R)")
    rank = np.searchsorted(np.sort(candidates), canary, side="right")  # count of candidates <= canary
    if np.any(rank == 0):
        raise ValueError("candidate_log_perplexities must include the canary itself: a canary_log_perplexity is "
                         "lower than every candidate's")
    return int(rank) if rank.ndim == 0 else rank.astype(np.int64)


def exposure(
    canary_log_perplexity: float | Sequence[float] | np.ndarray,
    candidate_log_perplexities: Sequence[float] | np.ndarray,
) -> float | np.ndarray:
    """Exposure in bits, log2 |R| - log2 rank (Carlini et al. 2019), with ``exposure_rank``'s rank and ties.

    candidate_log_perplexities holds every candidate of the space R, the canary included; any base of logarithm
    works, only the order counts. 0 bits for the least likely candidate, log2 |R| for the most likely one.
    """
    rank = exposure_rank(canary_log_perplexity, candidate_log_perplexities)
    size = np.asarray(candidate_log_perplexities).size
    bits = math.log2(size) - np.log2(rank)
    return float(bits) if np.ndim(bits) == 0 else bits


def random_rank_exposure(n_candidates: int) -> float:
    """Expected exposure of a canary whose rank is uniform on 1..n (one the model never saw): log2 n - log2(n!) / n.

    It tends to 1 / ln 2 = 1.4427 bits as n grows (Stirling); the exposure of such a canary is then close to an
    exponential variable with that mean and standard deviation.
    """
    n = check_int("n_candidates", n_candidates, 1)
    return math.log2(n) - math.lgamma(n + 1) / math.log(2) / n


def _check_sequences(name: str, values: object) -> Sequence:
    """values if it is a list of texts (strings or token sequences), else ValueError naming it."""
    if isinstance(values, str) or not isinstance(values, Sequence | np.ndarray):
        got = "a single str (wrap one text as [text])" if isinstance(values, str) else type(values).__name__
        raise ValueError(f"{name} must be a list of texts (strings or token sequences), got {got}")
    for item in values:
        if not isinstance(item, str | Sequence | np.ndarray) or (isinstance(item, np.ndarray) and item.ndim != 1):
            raise ValueError(f"{name} must hold strings or 1-D token sequences, got {item!r:.80}")
    return values


def common_prefix_length(generated: Sequence[Hashable], reference: Sequence[Hashable]) -> int:
    """Number of leading tokens (characters) where generated and reference agree."""
    length = 0
    for produced, expected in zip(generated, reference, strict=False):
        if produced != expected:
            break
        length += 1
    return length


def extraction_lengths(
    generated: Sequence[Sequence[Hashable]], reference: Sequence[Sequence[Hashable]]
) -> np.ndarray:
    """Exact characters of each continuation: the length of its common prefix with the true continuation, (N,) int.

    generated[i] and reference[i] are strings (or token sequences) that follow the same prefix; a continuation that
    differs at its first character scores 0, one identical to its reference scores min(len) characters.
    """
    _check_sequences("generated", generated)
    _check_sequences("reference", reference)
    if len(generated) != len(reference):
        raise ValueError(f"generated and reference must have the same length, got {len(generated)} and "
                         f"{len(reference)}")
    lengths = [common_prefix_length(list(g), list(r)) for g, r in zip(generated, reference, strict=True)]
    return np.asarray(lengths, dtype=np.int64)


def extraction_rate(lengths: Sequence[int] | np.ndarray, n: int) -> float:
    """Share of continuations with at least n exact characters (lengths from ``extraction_lengths``)."""
    n = check_int("n", n, 1)
    values = _finite_array("lengths", lengths, (1,))
    if values.size == 0:
        raise ValueError("lengths must be a non-empty 1-D sequence of exact-character counts")
    bad = (values < 0) | (values != np.round(values))  # (N,)
    if bad.any():
        raise ValueError(f"lengths must hold integers >= 0, got {values[bad][0]}")
    return float(np.mean(values >= n))


def window_hashes(ids: np.ndarray, length: int) -> np.ndarray:
    """Polynomial hash mod 2^64 of every window ids[i : i + length], (N - length + 1,) uint64."""
    ids = np.asarray(ids, dtype=np.uint64) + np.uint64(1)  # (N,), no zero symbol
    length = check_int("length", length, 1, len(ids))
    blocks = {1: ids}  # hashes of the windows of each power-of-two length
    size = 1
    while size * 2 <= length:
        half = blocks[size]  # (N - size + 1,)
        n = len(half) - size
        blocks[size * 2] = half[:n] * HASH_BASE ** np.uint64(size) + half[size:size + n]
        size *= 2
    count = len(ids) - length + 1
    hashes, done = None, 0
    for size in sorted(blocks, reverse=True):  # length in binary: h(a + b) = h(a) * B^b + h(b)
        if length - done >= size:
            part = blocks[size][done:done + count]  # (count,)
            hashes = part if hashes is None else hashes * HASH_BASE ** np.uint64(size) + part
            done += size
    return hashes


def _row_hashes(queries: np.ndarray) -> np.ndarray:
    """The same hash of every row of queries (M, L) by Horner's rule, (M,) uint64."""
    rows = np.asarray(queries, dtype=np.uint64) + np.uint64(1)  # (M, L)
    hashes = np.zeros(len(rows), dtype=np.uint64)
    for column in rows.T:
        hashes = hashes * HASH_BASE + column  # (M,)
    return hashes


def count_occurrences(text: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """How often each row of queries (M, L) occurs in text (N,) as a window, exactly; (M,) int64."""
    text, queries = np.asarray(text), np.asarray(queries)
    if text.ndim != 1 or queries.ndim != 2 or not 1 <= queries.shape[1] <= len(text):
        raise ValueError(f"text must be 1-D and queries (M, L) with 1 <= L <= len(text), got {text.shape} and "
                         f"{queries.shape}")
    length = queries.shape[1]
    text_hashes = window_hashes(text, length)  # (N - L + 1,)
    order = np.argsort(text_hashes, kind="stable")
    ordered = text_hashes[order]
    query_hashes = _row_hashes(queries)  # (M,)
    low = np.searchsorted(ordered, query_hashes, side="left")  # (M,)
    high = np.searchsorted(ordered, query_hashes, side="right")  # (M,)
    counts = np.zeros(len(queries), dtype=np.int64)
    offsets = np.arange(length)  # (L,)
    for m in np.flatnonzero(high > low):  # the same hash: compare the characters
        windows = text[order[low[m]:high[m]][:, None] + offsets]  # (K, L)
        counts[m] = int((windows == queries[m]).all(axis=1).sum())
    return counts


def window_copies(text: np.ndarray, length: int) -> np.ndarray:
    """How often the window starting at each position occurs in text (itself included), exactly; (N - L + 1,)."""
    text = np.asarray(text)
    hashes = window_hashes(text, length)  # (W,)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    copies = np.ones(len(hashes), dtype=np.int64)
    maybe = np.flatnonzero(counts[inverse] >= 2)  # positions whose hash repeats
    if len(maybe):
        copies[maybe] = count_occurrences(text, text[maybe[:, None] + np.arange(length)])
    return copies


def copies_in(train: np.ndarray, val: np.ndarray, length: int) -> np.ndarray:
    """How often each window of ``length`` of val occurs in train, exactly; (N_val - L + 1,)."""
    val = np.asarray(val)
    text_hashes = np.sort(window_hashes(train, length))
    val_hashes = window_hashes(val, length)  # (W_val,)
    hit = np.flatnonzero(np.searchsorted(text_hashes, val_hashes, "right") > np.searchsorted(text_hashes, val_hashes))
    copies = np.zeros(len(val_hashes), dtype=np.int64)
    if len(hit):
        copies[hit] = count_occurrences(train, val[hit[:, None] + np.arange(length)])
    return copies


def extraction_summary(lengths: Sequence[int] | np.ndarray, min_chars: Sequence[int]) -> list[dict]:
    """Per threshold n of min_chars: the continuations with >= n exact characters, their share and its Wilson 95%
    interval (``accuracy_interval``), one dict per threshold."""
    rows = []
    for n in min_chars:
        rate = extraction_rate(lengths, n)  # checks lengths and n
        _, low, high = accuracy_interval(np.asarray(lengths) >= n)
        rows.append({"min_chars": n, "extracted": round(rate * len(lengths)), "rate": rate,
                     "rate_low": max(low, 0.0), "rate_high": min(high, 1.0)})
    return rows


def duplication_rows(train: np.ndarray, val: np.ndarray, lengths: Sequence[int]) -> list[dict]:
    """Per window length: the share of train's windows found at least twice in train (text "train"), and of val's
    windows found in train at all (text "held_out")."""
    rows = []
    for length in lengths:
        copies = window_copies(train, length)  # (W,)
        starts = np.flatnonzero(copies >= 2)
        distinct = len(np.unique(window_hashes(train, length)[starts])) if len(starts) else 0
        rows.append({"text": "train", "window_chars": length, "windows": len(copies),
                     "duplicated_windows": len(starts), "duplicated_share": len(starts) / len(copies),
                     "distinct_duplicated": distinct, "max_copies": int(copies.max())})
        seen = copies_in(train, val, length)  # (W_val,)
        rows.append({"text": "held_out", "window_chars": length, "windows": len(seen),
                     "duplicated_windows": int((seen >= 1).sum()), "duplicated_share": float((seen >= 1).mean()),
                     "distinct_duplicated": "", "max_copies": int(seen.max())})
    return rows
