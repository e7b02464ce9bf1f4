"""Trend 1 (模型规模的扩大): how the zoo's held-out loss falls with parameters N and training tokens D.

The points are the 16-bit rows of the quantization sweep (``results/kbit_sweep.csv``: nine sizes, weights kept at
1/8, 1/4, 1/2 and all of a 6M-token budget) and of the control runs (``results/future_scaling_control.csv``: four
small sizes trained on 1/8 and 1/4 of that budget, each with its own warm-up and cosine). A checkpoint kept at 1/8 of
a run is not a run trained for 1/8 of the tokens: its learning rate has not decayed yet. Hoffmann et al. (2022) made
that point against Kaplan et al. (2020); the controls measure it here, and the surface is fitted both on the kept
checkpoints and on finished runs only, with N counted with and without the (tied) embedding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mini_llm.atomic import write_csv_atomic
from mini_llm.scaling.analysis import load_results
from mini_llm.scaling.chinchilla import (
    LossSurface,
    bootstrap_surfaces,
    fit_loss_surface,
    isoflop_minima,
    isoflop_profile,
)

SWEEP_CSV = "kbit_sweep.csv"  # the zoo's 16-bit evaluations (main preset set)
CONTROL_CSV = "future_scaling_control.csv"  # the own-schedule control runs (eighth and quarter preset sets)
FIT_CSV = "future_scaling_fit.csv"  # one row per (point set, parameter count): the surface and its intervals
ISOFLOP_CSV = "future_isoflop.csv"  # approach 2: the loss-minimising size per compute budget
POINT_SETS = ("checkpoints", "finished")  # every kept checkpoint of the main zoo / every finished run
COUNTS = ("non-embedding", "total")  # N without or with the tied token embedding (and the position table)
QUANTILES = (0.05, 0.5, 0.95)  # the bootstrap interval reported


@dataclass(frozen=True)
class ZooPoint:
    """One evaluated model: its size, tokens, loss and whether its schedule had finished."""

    model: str  # "<layers>x<width>"
    preset_set: str  # main, eighth or quarter
    seed: int
    params: dict[str, int]  # N by count: {"non-embedding": ..., "total": ...}
    tokens: int  # D
    loss: float  # held-out nats per character
    finished: bool  # the weights at the end of their own schedule (not a checkpoint kept mid-run)


def zoo_points(results_dir: str | os.PathLike = "results") -> list[ZooPoint]:
    """The 16-bit evaluations of the zoo and of the control runs, as points of the loss surface."""
    results = Path(results_dir)
    rows = load_results(results / SWEEP_CSV) + load_results(results / CONTROL_CSV)
    return [
        ZooPoint(row["model"], row["preset_set"], row["seed"],
                 {"non-embedding": row["nonembedding_params"], "total": row["params"]}, row["tokens"], row["loss"],
                 row["fraction"] == 1.0)
        for row in rows if row["bits"] == 16
    ]


def select_points(points: Sequence[ZooPoint], point_set: str) -> list[ZooPoint]:
    """``checkpoints``: every kept checkpoint of the main zoo; ``finished``: the final weights of every run."""
    if point_set == "checkpoints":
        return [p for p in points if p.preset_set == "main"]
    if point_set == "finished":
        return [p for p in points if p.finished]
    raise ValueError(f"point_set must be one of {', '.join(POINT_SETS)}, got {point_set!r}")


def schedule_gaps(points: Sequence[ZooPoint], tolerance: float = 0.02) -> list[dict[str, object]]:
    """Per control run: its loss against the main zoo's checkpoint of the same size and seed kept at the same tokens
    (within ``tolerance`` relative: 1/8 of the main budget is 183 steps, the eighth preset's budget 184)."""
    kept = [p for p in points if p.preset_set == "main" and not p.finished]
    rows = []
    for p in points:
        if p.preset_set == "main":
            continue
        for match in kept:
            if (match.model, match.seed) == (p.model, p.seed) and abs(match.tokens / p.tokens - 1) <= tolerance:
                rows.append({"model": p.model, "tokens": p.tokens, "own_schedule_loss": p.loss,
                             "checkpoint_tokens": match.tokens, "checkpoint_loss": match.loss,
                             "gap": match.loss - p.loss})
    return rows


def _surface_row(point_set: str, count: str, points: Sequence[ZooPoint], fit: LossSurface,
                 boots: Sequence[LossSurface]) -> dict[str, object]:
    """One CSV row: the fit, what it implies at the largest compute of the points, and bootstrap quantiles."""
    n = np.array([p.params[count] for p in points], dtype=float)  # (m,)
    d = np.array([p.tokens for p in points], dtype=float)  # (m,)
    loss = np.array([p.loss for p in points])  # (m,)
    flops = float(np.max(6 * n * d))  # the largest training compute among the points
    residual = np.log(fit.predict(n, d)) - np.log(loss)  # (m,)
    row: dict[str, object] = {
        "points": point_set, "count": count, "n_points": len(points), "flops_ref": flops,
        "E": fit.E, "A": fit.A, "alpha": fit.alpha, "B": fit.B, "beta": fit.beta,
        "param_exponent": fit.param_exponent, "tokens_per_param": float(fit.tokens_per_param(flops)),
        "rms_log_residual": float(np.sqrt(np.mean(residual ** 2))),
    }
    implied = {
        "alpha": [b.alpha for b in boots], "beta": [b.beta for b in boots],
        "param_exponent": [b.param_exponent for b in boots],
        "tokens_per_param": [float(b.tokens_per_param(flops)) for b in boots],
    }
    for name, values in implied.items():
        for q in QUANTILES:
            row[f"{name}_q{round(q * 100):02d}"] = float(np.nanquantile(values, q))
    row["bootstrap_samples"] = len(boots)
    row["samples_without_optimum"] = int(np.sum(np.isnan(implied["tokens_per_param"])))
    return row


def surface_rows(points: Sequence[ZooPoint], samples: int = 200, seed: int = 0) -> list[dict[str, object]]:
    """The loss surface fitted per point set and parameter count, with bootstrap quantiles."""
    rows = []
    for point_set in POINT_SETS:
        chosen = select_points(points, point_set)
        for count in COUNTS:
            n = [p.params[count] for p in chosen]
            d = [p.tokens for p in chosen]
            loss = [p.loss for p in chosen]
            fit = fit_loss_surface(n, d, loss)
            rows.append(_surface_row(point_set, count, chosen, fit, bootstrap_surfaces(n, d, loss, samples, seed)))
    return rows


def isoflop_rows(points: Sequence[ZooPoint], budgets: int = 12) -> list[dict[str, object]]:
    """Approach 2 on the main zoo's kept checkpoints (seed 0): per compute budget the best model that reaches it and
    the parabola's minimum in log N when it lies inside the sizes measured (NaN otherwise)."""
    rows = []
    for count in COUNTS:
        curves: dict[str, tuple[float, list[float], list[float]]] = {}
        for p in sorted(select_points(points, "checkpoints"), key=lambda p: p.tokens):
            if p.seed == 0:
                n, tokens, losses = curves.setdefault(p.model, (p.params[count], [], []))
                tokens.append(p.tokens)
                losses.append(p.loss)
        reach = [6 * n * np.array(t) for n, t, _ in curves.values()]  # (checkpoints,) per model
        low, high = min(r.min() for r in reach), max(r.max() for r in reach)
        for flops in np.geomspace(low, high, budgets):
            profile = isoflop_profile(curves, flops)
            best = min(profile, key=lambda name: profile[name][1])
            minimum = isoflop_minima(curves, [flops])
            rows.append({
                "count": count, "flops": float(flops), "models": len(profile),
                "largest_model": max(profile, key=lambda name: profile[name][0]), "best_model": best,
                "best_params": profile[best][0], "best_tokens_per_param": flops / 6 / profile[best][0] ** 2,
                "best_loss": profile[best][1],
                "params_opt": minimum[0].params if minimum else float("nan"),
                "tokens_per_param_opt": minimum[0].tokens / minimum[0].params if minimum else float("nan"),
            })
    return rows


def run_compute_optimal(out_dir: str | os.PathLike = "results", results_dir: str | os.PathLike = "results",
                        samples: int = 200, seed: int = 0) -> dict[str, Path]:
    """Fit the zoo's loss surface (approach 3, with bootstrap) and its iso-FLOP minima (approach 2); write both."""
    points = zoo_points(results_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows in ((FIT_CSV, surface_rows(points, samples, seed)), (ISOFLOP_CSV, isoflop_rows(points))):
        write_csv_atomic(out / name, list(rows[0]), rows)
        written[name] = out / name
    return written
