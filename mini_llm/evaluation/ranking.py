"""Metrics of a score that ranks examples, before any threshold: the recall pair at every threshold and ROC AUC.

A binary classifier's score (a log-odds, a probability) is turned into a decision by a threshold ``t``:
"positive if score > t". ``recall_curve`` gives both recalls at every threshold (the ROC curve read as recalls),
``roc_auc`` the area under it: the chance that a random positive example scores higher than a random negative one
(ties count one half).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Scores = Sequence[float] | np.ndarray
Mask = Sequence[bool] | np.ndarray


def _scores_and_mask(scores: Scores, positive: Mask) -> tuple[np.ndarray, np.ndarray]:
    """scores (N,) float64 and positive (N,) bool with both classes present; ValueError otherwise."""
    values, mask = np.asarray(scores, dtype=np.float64), np.asarray(positive)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence, got shape {values.shape}")
    if mask.shape != values.shape or mask.dtype != np.bool_:
        raise ValueError(f"positive must be a bool array of the shape of scores {values.shape}, "
                         f"got {mask.dtype} {mask.shape}")
    if np.isnan(values).any():
        raise ValueError("scores must not hold NaN (+-inf is a valid extreme score)")
    if mask.all() or not mask.any():
        raise ValueError("positive must mark at least one positive and one negative example")
    return values, mask


def recall_curve(scores: Scores, positive: Mask) -> tuple[np.ndarray, np.ndarray]:
    """(positive recall, negative recall), each (K,), for the rule "positive if score > t" at every threshold t.

    The thresholds are -inf and each distinct score, in increasing order: the positive recall falls from 1, the
    negative recall rises to 1.
    """
    values, mask = _scores_and_mask(scores, positive)
    thresholds = np.concatenate([[-np.inf], np.unique(values)])  # (K,)
    positive_recall = (values[mask][None, :] > thresholds[:, None]).mean(axis=1)  # (K,)
    negative_recall = (values[~mask][None, :] <= thresholds[:, None]).mean(axis=1)  # (K,)
    return positive_recall, negative_recall


def roc_auc(scores: Scores, positive: Mask) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties counted 1/2."""
    values, mask = _scores_and_mask(scores, positive)
    pos, neg = values[mask], values[~mask]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
