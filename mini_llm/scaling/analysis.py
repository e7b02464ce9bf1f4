"""Reading a sweep CSV, fitting bit-level scaling curves, the best k per bit budget, and the bit-scaling plot.

The fitted form is a power law in total model bits B with an irreducible term, as in Kaplan et al. (2020):

    metric(B) = E + A * B**(-alpha)

for the held-out loss (nats per character; perplexity = exp(loss)) or the top-1 error (1 - accuracy). With E fixed,
log(metric - E) = log A - alpha * log B is a straight line, fitted by numpy least squares; with E = "fit", E is
chosen in [0, min(metric)) to minimise the squared error of metric itself (a grid, then a golden-section search).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mini_llm.jsonfiles import read_text
from mini_llm.scaling.sweep import BASELINE_BITS, COLUMNS

INT_COLUMNS = ("seed", "n_layer", "n_embd", "n_head", "vocab_size", "params", "nonembedding_params", "step", "tokens",
               "bits", "eval_tokens", "total_bits", "linear_bits", "embedding_bits", "other_bits")
FLOAT_COLUMNS = ("fraction", "outlier_fraction", "loss", "perplexity", "accuracy", "bits_per_param", "seconds")
QUANT_COLUMNS = ("codebook", "blocksize", "outliers", "outlier_fraction", "embedding")  # not set for the baseline
CHECKPOINT_COLUMNS = ("preset_set", "model", "seed", "step", "eval_tokens")  # identify one checkpoint's evaluation
METRICS = ("perplexity", "accuracy")
Row = dict[str, Any]


def _cell(path: Path, line: int, column: str, text: str) -> Any:
    """One typed cell; ValueError naming the file, line and column if it cannot be read."""
    try:
        if column in INT_COLUMNS:
            return int(text)
        if column in FLOAT_COLUMNS:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
        if column == "outliers":
            return {"0": False, "1": True}[text]
        if column == "blocksize":
            return None if text in ("", "tensor") else int(text)
    except (ValueError, KeyError):
        raise ValueError(f"{path}, line {line}: column {column!r} cannot be {text!r}") from None
    return text


def load_results(path: str | os.PathLike) -> list[Row]:
    """The rows of a sweep CSV with typed values (blocksize None = whole tensor); ValueError if it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write it with `mini-llm sweep --out {path}`")
    rows: list[Row] = []
    text = read_text(path, "a sweep CSV")
    numbered = enumerate(io.StringIO(text, newline=""), 1)
    lines = [(number, line) for number, line in numbered if not line.startswith("#") and line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty: not a sweep CSV (header {','.join(COLUMNS[:3])},... expected)")
    if len(lines) == 1:
        raise ValueError(f"{path} holds no rows, only the header of a sweep CSV")
    header = next(csv.reader([lines[0][1]]))
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise ValueError(f"{path} is not a sweep CSV: columns {missing} are missing")
    for number, line in lines[1:]:
        cells = next(csv.reader([line]))
        if len(cells) != len(header):
            raise ValueError(f"{path}, line {number}: {len(cells)} cells, the header has {len(header)}")
        rows.append({name: _cell(path, number, name, text) for name, text in zip(header, cells, strict=True)})
    return rows


def select(rows: Iterable[Row], include_baseline: bool = True, **criteria: Any) -> list[Row]:
    """Rows matching every criterion (column=value, or column=(v1, v2) for any of several values).

    Criteria on the quantization columns (codebook, blocksize, outliers, outlier_fraction, embedding) do not apply
    to the 16-bit baseline rows, which are kept if ``include_baseline`` (and dropped otherwise).
    """
    for name in criteria:
        if name not in COLUMNS:
            raise ValueError(f"unknown column {name!r}; columns: {', '.join(COLUMNS)}")

    def matches(row: Row, name: str, wanted: Any) -> bool:
        if isinstance(wanted, tuple | list | set | frozenset):
            return row[name] in wanted
        return row[name] == wanted

    chosen = []
    for row in rows:
        baseline = row["bits"] == BASELINE_BITS
        if baseline and not include_baseline:
            continue
        if all(matches(row, name, wanted) for name, wanted in criteria.items()
               if not (baseline and name in QUANT_COLUMNS)):
            chosen.append(row)
    return chosen


@dataclass(frozen=True)
class PowerLawFit:
    """metric(B) = irreducible + coefficient * B**(-alpha), fitted on n points with B in [x_min, x_max]."""

    coefficient: float  # A
    alpha: float  # exponent: how fast the metric falls with bits
    irreducible: float  # E: the metric's floor
    r2: float  # coefficient of determination of the metric itself
    n: int  # points fitted
    x_min: float  # smallest total bits fitted
    x_max: float  # largest total bits fitted

    def predict(self, bits: float | np.ndarray) -> np.ndarray:
        """The fitted metric at total bits B."""
        return self.irreducible + self.coefficient * np.asarray(bits, dtype=float) ** (-self.alpha)


def _fit_fixed(log_x: np.ndarray, y: np.ndarray, irreducible: float) -> tuple[float, float, float]:
    """(A, alpha, squared error of y) of the log-linear least-squares fit for a fixed irreducible term."""
    design = np.stack([np.ones_like(log_x), log_x], axis=1)  # (n, 2)
    (intercept, slope), *_ = np.linalg.lstsq(design, np.log(y - irreducible), rcond=None)
    prediction = irreducible + np.exp(intercept + slope * log_x)  # (n,)
    return float(np.exp(intercept)), float(-slope), float(np.sum((y - prediction) ** 2))


def fit_power_law(bits: Sequence[float], values: Sequence[float], irreducible: float | str = 0.0) -> PowerLawFit:
    """Fit values = E + A * bits**(-alpha) by least squares; ``irreducible`` is E, or "fit" to estimate it."""
    x = np.asarray(bits, dtype=float)  # (n,)
    y = np.asarray(values, dtype=float)  # (n,)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"bits and values must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    need = 3 if irreducible == "fit" else 2
    if len(x) < need or len(np.unique(x)) < need:
        raise ValueError(f"need at least {need} distinct bit counts to fit, got {len(np.unique(x))}")
    if not (np.all(np.isfinite(x)) and np.all(x > 0) and np.all(np.isfinite(y))):
        raise ValueError("bits must be finite and > 0 and values finite")
    log_x = np.log(x)
    if irreducible == "fit":
        if np.min(y) <= 0:
            raise ValueError("values must be > 0 to estimate the irreducible term")
        grid = np.min(y) * np.arange(64) / 64  # (64,) candidate floors in [0, min y)
        errors = [_fit_fixed(log_x, y, e)[2] for e in grid]
        i = int(np.argmin(errors))
        low, high = grid[max(i - 1, 0)], (grid[i + 1] if i + 1 < len(grid) else np.min(y) * (1 - 1e-9))
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(80):  # golden-section search of the squared error over [low, high]
            a, b = high - ratio * (high - low), low + ratio * (high - low)
            if _fit_fixed(log_x, y, a)[2] < _fit_fixed(log_x, y, b)[2]:
                high = b
            else:
                low = a
        floor = (low + high) / 2
    elif isinstance(irreducible, int | float) and math.isfinite(irreducible):
        floor = float(irreducible)
        if np.min(y) <= floor:
            raise ValueError(f"every value must exceed the irreducible term {floor}, the smallest is {np.min(y)}")
    else:
        raise ValueError(f"irreducible must be a number or 'fit', got {irreducible!r}")
    coefficient, alpha, error = _fit_fixed(log_x, y, floor)
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - error / total if total > 0 else 1.0
    return PowerLawFit(coefficient, alpha, floor, r2, len(x), float(x.min()), float(x.max()))


def _metric_values(rows: Sequence[Row], metric: str) -> np.ndarray:
    """The fitted quantity: loss (nats) for perplexity, error 1 - accuracy for accuracy."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric == "perplexity":
        return np.array([row["loss"] for row in rows])
    return np.array([1.0 - row["accuracy"] for row in rows])


def _from_metric(values: np.ndarray, metric: str) -> np.ndarray:
    """Fitted quantity back to the plotted metric: perplexity = exp(loss), accuracy in percent."""
    return np.exp(values) if metric == "perplexity" else 100.0 * (1.0 - values)


def _order(value: Any) -> tuple:
    """Sort key for group values: None (whole tensor) first, then numbers in order, then text."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value))


def fit(
    rows: Sequence[Row], metric: str = "perplexity", by: str = "bits", irreducible: float | str = 0.0
) -> dict[Any, PowerLawFit]:
    """One power law per value of ``by`` (default: per k): loss (for perplexity) or error (for accuracy) vs total bits.

    Select the rows first (one codebook, block size, ... per curve). Groups with too few distinct bit counts are left
    out.
    """
    if by not in COLUMNS:
        raise ValueError(f"unknown column {by!r}; columns: {', '.join(COLUMNS)}")
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        groups.setdefault(row[by], []).append(row)
    fits = {}
    for value, group in sorted(groups.items(), key=lambda item: _order(item[0])):
        x = [row["total_bits"] for row in group]
        if len(set(x)) < (3 if irreducible == "fit" else 2):
            continue
        fits[value] = fit_power_law(x, _metric_values(group, metric), irreducible)
    return fits


def best_k(fits: dict[Any, PowerLawFit], budgets: Sequence[float]) -> list[tuple[float, Any]]:
    """For each bit budget, the group (k) whose fitted curve is lowest there, among the curves whose data span it."""
    best = []
    for budget in budgets:
        inside = {k: float(f.predict(budget)) for k, f in fits.items() if f.x_min <= budget <= f.x_max}
        best.append((budget, min(inside, key=inside.get) if inside else None))
    return best


def best_per_budget(rows: Sequence[Row], budgets: Sequence[float], metric: str = "perplexity") -> list[Row | None]:
    """For each bit budget, the measured run with total bits within it and the best metric (None if there is none)."""
    values = _metric_values(rows, metric)  # lower is better for both loss and error
    best: list[Row | None] = []
    for budget in budgets:
        inside = [i for i, row in enumerate(rows) if row["total_bits"] <= budget]
        best.append(rows[min(inside, key=lambda i: values[i])] if inside else None)
    return best


def relative_cost(rows: Sequence[Row]) -> list[Row]:
    """Copies of the rows with perplexity_increase (ppl / baseline ppl - 1) and accuracy_drop (baseline - accuracy).

    The baseline is the 16-bit row of the same checkpoint and held-out subset; NaN where the CSV has none.
    """
    baselines = {tuple(row[c] for c in CHECKPOINT_COLUMNS): row for row in rows if row["bits"] == BASELINE_BITS}
    result = []
    for row in rows:
        base = baselines.get(tuple(row[c] for c in CHECKPOINT_COLUMNS))
        increase = row["perplexity"] / base["perplexity"] - 1.0 if base else math.nan
        drop = base["accuracy"] - row["accuracy"] if base else math.nan
        result.append(row | {"perplexity_increase": increase, "accuracy_drop": drop})
    return result


def _label(by: str, value: Any) -> str:
    """Legend text of one curve."""
    if by == "bits":
        return "16-bit" if value == BASELINE_BITS else f"{value}-bit"
    return f"{by}={'whole tensor' if by == 'blocksize' and value is None else value}"


def plot_bit_scaling(
    rows: Sequence[Row],
    metric: str = "perplexity",
    by: str = "bits",
    fits: dict[Any, PowerLawFit] | bool = True,
    irreducible: float | str = 0.0,
    ax: Any = None,
    xlabel: str = "total model bits (log scale)",
    ylabel: str | None = None,
    title: str | None = None,
) -> Any:
    """Metric against total model bits, one marker set per value of ``by`` (k), with fitted curves; returns the Axes.

    ``fits``: True fits here (see ``fit``), False draws none, or a dict from ``fit``.
    """
    import matplotlib.pyplot as plt

    values = _metric_values(rows, metric)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    if fits is True:
        fits = fit(rows, metric, by, irreducible)
    groups: dict[Any, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row[by], []).append(i)
    for n, (value, index) in enumerate(sorted(groups.items(), key=lambda item: _order(item[0]))):
        color = f"C{n % 10}"
        x = np.array([rows[i]["total_bits"] for i in index], dtype=float)
        ax.scatter(x, _from_metric(values[index], metric), color=color, s=18, label=_label(by, value))
        if fits and value in fits:
            curve = fits[value]
            grid = np.geomspace(curve.x_min, curve.x_max, 100)  # (100,)
            ax.plot(grid, _from_metric(curve.predict(grid), metric), color=color, linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    default = "held-out perplexity (per character)" if metric == "perplexity" else "next-character top-1 accuracy (%)"
    ax.set_ylabel(ylabel or default)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    return ax
