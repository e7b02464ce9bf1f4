"""The Word Embedding Association Test (WEAT, Caliskan, Bryson & Narayanan 2017, Science 356:183).

Two sets of target vectors X and Y (e.g. male- and female-typed occupations) and two sets of attribute vectors A and B
(e.g. male and female words). With cosine similarity cos,

- s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b): how much closer w lies to A than to B;
- the test statistic t = mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B). Caliskan et al. use the difference of
  sums, s(X, Y, A, B) = sum_X s - sum_Y s, with |X| = |Y|, where it is |X| t. With unequal sizes the difference of
  sums can have the opposite sign of t and d (all s < 0 and |X| > |Y|), so the difference of means is reported;
  over partitions of fixed sizes both are increasing functions of sum_{X_i} s, so the p-value is the same for either;
- the effect size d = t / std_{w in X u Y} s(w, A, B), with the sample standard deviation (ddof=1, ``STD_DDOF``);
  Caliskan et al. do not state it, ddof=0 would give a d larger by sqrt(n / (n - 1)) for n = |X| + |Y| target words;
- the one-sided p-value: the share of the partitions (X_i, Y_i) of X u Y into sets of sizes |X| and |Y| whose
  statistic is at least the observed one. All C(|X| + |Y|, |X|) partitions are enumerated when there are at most
  ``permutations`` of them (the observed one included, so p >= 1 / C); otherwise ``permutations`` random partitions
  (uniform, with replacement) are drawn and p = (1 + #{at least the observed}) / (1 + permutations) (Phipson &
  Smyth 2010).

Functions take vectors (rows of 2-D arrays), never a model. May import: helpers (and numpy).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import NamedTuple

import numpy as np

from mini_llm.helpers import check_int, check_seed

STD_DDOF = 1  # the effect size divides by the sample standard deviation of s(w, A, B) over X u Y
DEFAULT_PERMUTATIONS = 100_000  # exact enumeration up to this many partitions, else this many random ones
TIE_TOLERANCE = 1e-12  # statistics within this (relative) distance of the observed one count as ties (>=)
CHUNK = 4096  # partitions evaluated per numpy batch


class WeatResult(NamedTuple):
    """The outcome of one WEAT: effect size, test statistic and one-sided permutation p-value."""

    effect_size: float  # Caliskan et al.'s d (NaN when s(w, A, B) is the same for every target word)
    statistic: float  # mean over X of s(x, A, B) - mean over Y of s(y, A, B) (Caliskan's sum difference / |X|)
    p_value: float  # one-sided: share of partitions with a statistic >= the observed one
    method: str  # "exact" (every partition enumerated) or "random" (random partitions, +1 correction)
    partitions: int  # partitions evaluated (all of them for "exact")


def check_vectors(name: str, vectors: object, dim: int | None = None) -> np.ndarray:
    """vectors as a float64 (n, D) array with n >= 1, finite, non-zero rows and D == dim; ValueError naming name."""
    try:
        array = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a 2-D array of numbers (one word vector per row), got {error}") from error
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (one word vector per row), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one word vector, got an empty set")
    if array.shape[1] == 0:
        raise ValueError(f"{name} must hold vectors of dimension >= 1, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} must hold vectors of dimension {dim} like X, got dimension {array.shape[1]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must hold finite numbers, got NaN or inf")
    if (np.linalg.norm(array, axis=1) == 0).any():
        raise ValueError(f"{name} must not hold a zero vector: its cosine similarity is undefined")
    return array


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm."""
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # (n, D)


def association(W: object, A: object, B: object) -> np.ndarray:
    """s(w, A, B) for every row w of W: mean cosine with the rows of A minus mean cosine with the rows of B."""
    W = check_vectors("W", W)
    A = check_vectors("A", A, W.shape[1])
    B = check_vectors("B", B, W.shape[1])
    return _association(W, A, B)


def _association(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """s(w, A, B) of checked arrays: (n,) from W (n, D), A (a, D), B (b, D)."""
    W, A, B = _unit_rows(W), _unit_rows(A), _unit_rows(B)
    return (W @ A.T).mean(axis=1) - (W @ B.T).mean(axis=1)  # (n,)


def _checked(X: object, Y: object, A: object, B: object) -> tuple[np.ndarray, np.ndarray]:
    """(s(x, A, B) over X, s(y, A, B) over Y) after checking the four sets."""
    X = check_vectors("X", X)
    dim = X.shape[1]
    Y, A, B = (check_vectors(name, value, dim) for name, value in (("Y", Y), ("A", A), ("B", B)))
    return _association(X, A, B), _association(Y, A, B)


def _effect_size(s_x: np.ndarray, s_y: np.ndarray) -> float:
    """Caliskan et al.'s d from the associations of both target sets; NaN when they are all equal."""
    spread = float(np.std(np.concatenate([s_x, s_y]), ddof=STD_DDOF))
    if spread == 0.0:
        return math.nan
    return (float(s_x.mean()) - float(s_y.mean())) / spread


def weat_effect_size(X: object, Y: object, A: object, B: object) -> float:
    """Caliskan et al.'s effect size d of targets X, Y (rows) and attributes A, B (rows), cosine, ddof=1."""
    s_x, s_y = _checked(X, Y, A, B)
    return _effect_size(s_x, s_y)


def _exact_sums(s: np.ndarray, n_x: int) -> np.ndarray:
    """The sum of s over the first part of every partition of range(len(s)) into sizes n_x and the rest."""
    sums = []
    batch: list[tuple[int, ...]] = []
    for chosen in combinations(range(len(s)), n_x):
        batch.append(chosen)
        if len(batch) == CHUNK:
            sums.append(s[np.array(batch)].sum(axis=1))  # (CHUNK,)
            batch = []
    if batch:
        sums.append(s[np.array(batch)].sum(axis=1))  # (rest,)
    return np.concatenate(sums)


def _random_sums(s: np.ndarray, n_x: int, permutations: int, seed: int) -> np.ndarray:
    """The sum of s over the first n_x of ``permutations`` uniformly random orderings of range(len(s))."""
    rng = np.random.default_rng(seed)
    sums = []
    for start in range(0, permutations, CHUNK):
        rows = min(CHUNK, permutations - start)
        order = rng.random((rows, len(s))).argsort(axis=1)[:, :n_x]  # (rows, n_x): a uniform random subset
        sums.append(s[order].sum(axis=1))  # (rows,)
    return np.concatenate(sums)


def weat_test(
    X: object, Y: object, A: object, B: object, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
) -> WeatResult:
    """Effect size, statistic and one-sided permutation p-value (exact when C(|X|+|Y|, |X|) <= permutations)."""
    permutations = check_int("permutations", permutations, 1)
    seed = check_seed(seed)
    s_x, s_y = _checked(X, Y, A, B)
    s = np.concatenate([s_x, s_y])  # (n,)
    n_x, n_y, total = len(s_x), len(s_y), float(s.sum())
    statistic = float(s_x.mean()) - float(s_y.mean())
    if math.comb(n_x + n_y, n_x) <= permutations:
        sums, method = _exact_sums(s, n_x), "exact"
    else:
        sums, method = _random_sums(s, n_x, permutations, seed), "random"
    statistics = sums / n_x - (total - sums) / n_y  # (P,): mean over X_i minus mean over Y_i
    tolerance = TIE_TOLERANCE * max(1.0, float(np.abs(s).sum()))
    at_least = int(np.count_nonzero(statistics >= statistic - tolerance))
    p_value = at_least / len(sums) if method == "exact" else (1 + at_least) / (1 + len(sums))
    return WeatResult(_effect_size(s_x, s_y), statistic, p_value, method, len(sums))
