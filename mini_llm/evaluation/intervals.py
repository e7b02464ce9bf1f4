"""Confidence intervals of a measured share: the Wilson score interval of an accuracy.

The percentile bootstrap interval of macro F1 lives in ``mini_llm.evaluation.classification`` beside the confusion
matrices it resamples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def accuracy_interval(correct: Sequence[bool] | np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """(accuracy, low, high): the share of True and its Wilson score interval (z = 1.96: 95%)."""
    hits = np.asarray(correct, dtype=bool)
    if hits.ndim != 1 or hits.size == 0:
        raise ValueError(f"correct must be a non-empty 1-D sequence of booleans, got shape {hits.shape}")
    n, p = hits.size, float(hits.mean())
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half
