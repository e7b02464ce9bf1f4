"""Classification metrics: confusion matrix, per-class precision/recall/F1, macro F1, Wilson and bootstrap intervals.

The Wilson interval of the accuracy comes from ``mini_llm.evaluation.intervals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mini_llm.evaluation.intervals import accuracy_interval

BOOTSTRAP_RESAMPLES = 2000  # resamples of the test set for the F1 interval
BOOTSTRAP_SEED = 0  # the resampling is seeded, so the interval is reproducible


def _labels_pair(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> tuple[np.ndarray, ...]:
    """y_true and y_pred as 1-D int arrays of one non-zero length; ValueError otherwise."""
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.ndim != 1 or true.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D sequence of class ids, got shape {true.shape}")
    if pred.shape != true.shape:
        raise ValueError(f"y_pred must have the shape of y_true {true.shape}, got {pred.shape}")
    for name, values in (("y_true", true), ("y_pred", pred)):
        if not np.issubdtype(values.dtype, np.integer) or values.min() < 0:
            raise ValueError(f"{name} must hold integer class ids >= 0, got dtype {values.dtype}")
    return true.astype(np.int64), pred.astype(np.int64)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int | None = None) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class (scikit-learn's convention)."""
    true, pred = _labels_pair(y_true, y_pred)
    n = max(int(true.max()), int(pred.max())) + 1 if n_classes is None else n_classes
    if max(int(true.max()), int(pred.max())) >= n:
        raise ValueError(f"n_classes must exceed every class id, got n_classes={n_classes}")
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)  # (C, C)


def _prf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class from confusion matrices (..., C, C); 0 where undefined (as scikit-learn)."""
    hits = np.diagonal(counts, axis1=-2, axis2=-1).astype(float)  # (..., C)
    predicted = counts.sum(axis=-2).astype(float)  # (..., C) column sums
    actual = counts.sum(axis=-1).astype(float)  # (..., C) row sums
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(actual > 0, hits / actual, 0.0)
        f1 = np.where(predicted + actual > 0, 2 * hits / (predicted + actual), 0.0)  # = 2PR / (P + R)
    return precision, recall, f1


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int | None = None) -> float:
    """The unweighted mean of the per-class F1 scores."""
    return float(_prf(confusion_matrix(y_true, y_pred, n_classes))[2].mean())


def bootstrap_macro_f1_interval(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    n_classes: int | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """(macro F1, low, high): the percentile bootstrap interval over resamples of the examples (with replacement)."""
    true, pred = _labels_pair(y_true, y_pred)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = max(int(true.max()), int(pred.max())) + 1 if n_classes is None else n_classes
    rows = np.random.default_rng(seed).integers(0, true.size, size=(resamples, true.size))  # (R, N)
    codes = (true[rows] * n + pred[rows]) + (np.arange(resamples) * n * n)[:, None]  # (R, N): resample, cell
    counts = np.bincount(codes.ravel(), minlength=resamples * n * n).reshape(resamples, n, n)  # (R, C, C)
    scores = _prf(counts)[2].mean(axis=1)  # (R,)
    low, high = np.quantile(scores, [(1 - level) / 2, (1 + level) / 2])
    return macro_f1(true, pred, n), float(low), float(high)


@dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracy and macro F1 with 95% intervals, per-class scores and the confusion matrix of one prediction run."""

    n: int  # number of examples
    accuracy: tuple[float, float, float]  # (value, low, high), Wilson score interval
    macro_f1: tuple[float, float, float]  # (value, low, high), percentile bootstrap interval
    precision: tuple[float, ...]  # per class
    recall: tuple[float, ...]  # per class
    f1: tuple[float, ...]  # per class
    support: tuple[int, ...]  # true examples per class
    confusion: tuple[tuple[int, ...], ...]  # (C, C), row = true class, column = predicted class

    def to_dict(self) -> dict:
        """A JSON-ready dict (lists instead of tuples)."""
        return {
            "n": self.n,
            "accuracy": dict(zip(("value", "low", "high"), self.accuracy, strict=True)),
            "macro_f1": dict(zip(("value", "low", "high"), self.macro_f1, strict=True)),
            "per_class": [
                {"class": c, "precision": p, "recall": r, "f1": f, "support": s}
                for c, (p, r, f, s) in enumerate(zip(self.precision, self.recall, self.f1, self.support, strict=True))
            ],
            "confusion_matrix": [list(row) for row in self.confusion],
        }


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int = 2) -> ClassificationMetrics:
    """Every metric of chapter 5 for one set of predictions."""
    true, pred = _labels_pair(y_true, y_pred)
    counts = confusion_matrix(true, pred, n_classes)  # (C, C)
    precision, recall, f1 = _prf(counts)
    return ClassificationMetrics(
        n=int(true.size),
        accuracy=accuracy_interval(true == pred),
        macro_f1=bootstrap_macro_f1_interval(true, pred, n_classes),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in counts.sum(axis=1)),
        confusion=tuple(tuple(int(v) for v in row) for row in counts),
    )
