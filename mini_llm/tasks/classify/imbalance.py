"""Class imbalance and long texts: imbalanced subsets, inverse-frequency weights, prior shift, truncation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mini_llm.helpers import check_int

TRUNCATION_SIDES = ("head", "tail", "head+tail")  # keep the first, the last, or half of each end


def _class_ids(labels: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """labels as a 1-D int array of ids in [0, n_classes); ValueError otherwise."""
    check_int("n_classes", n_classes, 2, kinds=int)
    ids = np.asarray(labels)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence of class ids, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= n_classes:
        raise ValueError(
            f"labels must be integer class ids in [0, {n_classes}), got {ids.dtype} from {ids.min()} to {ids.max()}"
        )
    return ids.astype(np.int64)


def class_prior(labels: Sequence[int] | np.ndarray, n_classes: int = 2) -> np.ndarray:
    """(C,) the share of each class among labels."""
    ids = _class_ids(labels, n_classes)
    return np.bincount(ids, minlength=n_classes) / ids.size


def imbalanced_indices(
    labels: Sequence[int] | np.ndarray, minority: int, ratio: float, seed: int = 0, n_classes: int = 2
) -> np.ndarray:
    """Sorted indices that keep every example of the other classes and 1/ratio as many of ``minority``.

    The minority examples kept are a seeded random choice; with ``ratio`` = 19 a balanced binary set becomes
    about 1 minority example per 19 of the largest other class.
    """
    ids = _class_ids(labels, n_classes)
    check_int("minority", minority, 0, n_classes - 1, allowed=f"a class id in [0, {n_classes})")
    if not isinstance(ratio, int | float) or not math.isfinite(ratio) or ratio < 1:
        raise ValueError(f"ratio must be a finite number >= 1, got {ratio!r}")
    counts = np.bincount(ids, minlength=n_classes)  # (C,)
    largest_other = int(np.delete(counts, minority).max())
    n_keep = round(largest_other / ratio)
    if not 1 <= n_keep <= counts[minority]:
        raise ValueError(
            f"ratio={ratio!r} asks for {n_keep} examples of class {minority}, which has {counts[minority]}"
        )
    rows = np.flatnonzero(ids == minority)
    kept = np.random.default_rng(seed).choice(rows, size=n_keep, replace=False)
    return np.sort(np.concatenate([np.flatnonzero(ids != minority), kept]))


def inverse_frequency_weights(labels: Sequence[int] | np.ndarray, n_classes: int = 2) -> np.ndarray:
    """(C,) weights N / (C * N_c): every class then carries the same total weight (scikit-learn's "balanced")."""
    counts = np.bincount(_class_ids(labels, n_classes), minlength=n_classes)  # (C,)
    if (counts == 0).any():
        raise ValueError(f"labels must hold every class 0..{n_classes - 1}, got counts {counts.tolist()}")
    return counts.sum() / (n_classes * counts)


def check_class_weights(weights: Sequence[float] | np.ndarray | torch.Tensor, n_classes: int) -> torch.Tensor:
    """weights as a float tensor (C,); ValueError if of the wrong length, negative, NaN/inf or all zero."""
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64) if not torch.is_tensor(weights) else weights)
    w = w.to(torch.float32)
    if w.ndim != 1 or w.numel() != n_classes:
        raise ValueError(f"class_weights must have one weight per class ({n_classes}), got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise ValueError(f"class_weights must be finite, >= 0 and not all zero, got {w.tolist()}")
    return w


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """sum_i w[y_i] * (-log softmax(logits_i)[y_i]) / sum_i w[y_i]: the mean loss with each example weighted."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (B, C) and labels (B,), got {tuple(logits.shape)}, {tuple(labels.shape)}")
    w = check_class_weights(class_weights, logits.shape[1]).to(logits.device)  # (C,)
    nll = -torch.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)  # (B,)
    w_example = w[labels]  # (B,)
    return (w_example * nll).sum() / w_example.sum()


def prior_shift(
    log_scores: np.ndarray, train_prior: Sequence[float], target_prior: Sequence[float] | None = None
) -> np.ndarray:
    """(N, C) log_scores + log target_prior - log train_prior: Bayes' rule for a change of class prior.

    ``log_scores`` are log posteriors (or logits, or naive Bayes' joint log-likelihoods) of a model trained with
    class shares ``train_prior``; ``target_prior`` None means uniform. The argmax is then the decision for the
    target prior.
    """
    scores = np.asarray(log_scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"log_scores must be (N, C), got shape {scores.shape}")
    n_classes = scores.shape[1]
    target = np.full(n_classes, 1 / n_classes) if target_prior is None else target_prior
    logs = []
    for name, prior in (("train_prior", train_prior), ("target_prior", target)):
        p = np.asarray(prior, dtype=np.float64)
        if p.shape != (n_classes,) or not np.isfinite(p).all() or (p <= 0).any():
            raise ValueError(f"{name} must hold {n_classes} finite shares > 0, got {np.asarray(prior).tolist()}")
        logs.append(np.log(p / p.sum()))
    return scores - logs[0] + logs[1]


def truncate_text(text: str, max_chars: int, side: str = "head") -> str:
    """The first (head), last (tail), or first ceil(k/2) plus last floor(k/2) (head+tail) of k = max_chars chars."""
    check_int("max_chars", max_chars, 1, kinds=int)
    if side not in TRUNCATION_SIDES:
        raise ValueError(f"side must be one of {', '.join(TRUNCATION_SIDES)}, got {side!r}")
    if len(text) <= max_chars:
        return text
    if side == "head":
        return text[:max_chars]
    if side == "tail":
        return text[-max_chars:]
    n_tail = max_chars // 2
    return text[: max_chars - n_tail] + (text[-n_tail:] if n_tail else "")
