"""Compute-optimal scaling: the loss surface L(N, D) of Hoffmann et al. (2022) and its iso-FLOP minima.

Approach 3 of the paper fits

    L(N, D) = E + A / N**alpha + B / D**beta

to (parameters N, training tokens D, loss L) points by minimising the Huber loss of log L - log L_hat, with
log L_hat = logsumexp(log A - alpha log N, log B - beta log D, log E), by L-BFGS. Here the start comes from a grid
over (alpha, beta) on which E, A and B are linear least-squares solutions, so one L-BFGS run suffices. With the
training compute C = 6 N D the surface is minimal at

    N_opt = G (C / 6)**(beta / (alpha + beta)),  D_opt = (C / 6)**(alpha / (alpha + beta)) / G,
    G = (alpha A / (beta B))**(1 / (alpha + beta)).

Approach 2 needs no formula: along each iso-FLOP line C = 6 N D, every model's loss at D = C / (6 N) (interpolated
in log D between its kept checkpoints) is fitted by a parabola in log N whose vertex is N_opt(C).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

CHINCHILLA = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}  # Hoffmann et al. (2022), eq. (10)
HUBER_DELTA = 1e-3  # the paper's delta (nats of log loss)
EXPONENT_GRID = np.linspace(0.02, 2.0, 100)  # start values of alpha and beta


@dataclass(frozen=True)
class LossSurface:
    """L(N, D) = E + A / N**alpha + B / D**beta fitted on n points (N parameters, D tokens, L nats per token)."""

    E: float  # irreducible loss
    A: float  # parameter term coefficient
    alpha: float  # parameter exponent
    B: float  # data term coefficient
    beta: float  # data exponent
    n: int = 0  # points fitted

    def predict(self, params: float | np.ndarray, tokens: float | np.ndarray) -> np.ndarray:
        """The fitted loss at N parameters and D training tokens."""
        n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
        return self.E + self.A * n ** -self.alpha + self.B * d ** -self.beta

    def compute_optimal(self, flops: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) that minimise the loss for training compute C = 6 N D; NaN if an exponent is not > 0."""
        c = np.asarray(flops, dtype=float) / 6
        if not (self.alpha > 0 and self.beta > 0):
            return np.full_like(c, np.nan), np.full_like(c, np.nan)  # the loss falls forever along C = 6 N D
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        total = self.alpha + self.beta
        return g * c ** (self.beta / total), c ** (self.alpha / total) / g

    def tokens_per_param(self, flops: float | np.ndarray) -> np.ndarray:
        """D_opt / N_opt at training compute C: constant only when alpha = beta."""
        n, d = self.compute_optimal(flops)
        return d / n

    @property
    def param_exponent(self) -> float:
        """a in N_opt ∝ C**a (the paper's approach 3 gives 0.46; Kaplan et al. 2020 give 0.73)."""
        return self.beta / (self.alpha + self.beta)


def _check_points(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float],
                  need: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The points as float64 arrays; ValueError naming the argument that is wrong."""
    arrays = []
    for name, values in (("params", params), ("tokens", tokens), ("losses", losses)):
        array = np.asarray(values, dtype=float)  # (n,)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        if not np.all(np.isfinite(array)) or np.any(array <= 0):
            raise ValueError(f"{name} must be finite and > 0")
        arrays.append(array)
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"params, tokens and losses must have equal lengths, got {[len(a) for a in arrays]}")
    if len(arrays[0]) < need:
        raise ValueError(f"losses: need at least {need} points to fit {need} parameters, got {len(arrays[0])}")
    return arrays[0], arrays[1], arrays[2]


def _grid_start(n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> tuple[float, float, float, float, float]:
    """(E, A, alpha, B, beta) with the smallest squared log error over EXPONENT_GRID, E, A, B by least squares."""
    alpha, beta = np.meshgrid(EXPONENT_GRID, EXPONENT_GRID, indexing="ij")  # (G, G)
    alpha, beta = alpha.ravel(), beta.ravel()  # (P,)
    design = np.stack([np.ones((len(alpha), len(n))), n[None] ** -alpha[:, None], d[None] ** -beta[:, None]],
                      axis=2)  # (P, n, 3)
    scale = np.linalg.norm(design, axis=1, keepdims=True)  # (P, 1, 3): unit columns keep the solve conditioned
    unit = design / scale  # (P, n, 3)
    gram = unit.transpose(0, 2, 1) @ unit + 1e-12 * np.eye(3)  # (P, 3, 3)
    coef = np.linalg.solve(gram, unit.transpose(0, 2, 1) @ loss[:, None])[..., 0] / scale[:, 0]  # (P, 3): E, A, B
    coef = np.maximum(coef, 1e-9)  # a negative term has no place in the law; clipping keeps the log defined
    prediction = np.einsum("pnk,pk->pn", design, coef)  # (P, n)
    error = np.sum((np.log(prediction) - np.log(loss)) ** 2, axis=1)  # (P,)
    best = int(np.argmin(error))
    e, a, b = coef[best]
    return float(e), float(a), float(alpha[best]), float(b), float(beta[best])


def fit_loss_surface(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float],
                     huber_delta: float = HUBER_DELTA, max_iter: int = 100) -> LossSurface:
    """Fit L(N, D) = E + A/N**alpha + B/D**beta: Huber loss on log L, L-BFGS from the best grid start."""
    n, d, loss = _check_points(params, tokens, losses, need=5)
    if not (math.isfinite(huber_delta) and huber_delta > 0):
        raise ValueError(f"huber_delta must be finite and > 0, got {huber_delta}")
    e, a, alpha, b, beta = _grid_start(n, d, loss)
    theta = torch.tensor([math.log(a), alpha, math.log(b), beta, math.log(e)], dtype=torch.float64,
                         requires_grad=True)  # (5,): log A, alpha, log B, beta, log E
    log_n, log_d = torch.from_numpy(np.log(n)), torch.from_numpy(np.log(d))  # (n,), (n,)
    log_loss = torch.from_numpy(np.log(loss))  # (n,)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                  tolerance_change=1e-15, history_size=50, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        terms = torch.stack([theta[0] - theta[1] * log_n, theta[2] - theta[3] * log_d,
                             theta[4].expand_as(log_n)])  # (3, n)
        value = torch.nn.functional.huber_loss(torch.logsumexp(terms, dim=0), log_loss, reduction="sum",
                                               delta=huber_delta)
        value.backward()
        return value

    optimizer.step(objective)
    log_a, alpha, log_b, beta, log_e = theta.detach().tolist()
    return LossSurface(math.exp(log_e), math.exp(log_a), alpha, math.exp(log_b), beta, len(n))


def bootstrap_surfaces(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float], samples: int = 200,
                       seed: int = 0) -> list[LossSurface]:
    """Fits on ``samples`` resamples of the points (drawn with replacement), for intervals of what the fit implies."""
    n, d, loss = _check_points(params, tokens, losses, need=5)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    fits = []
    while len(fits) < samples:
        pick = rng.integers(0, len(n), len(n))  # (n,)
        if len(np.unique(pick)) < 5:
            continue
        fits.append(fit_loss_surface(n[pick], d[pick], loss[pick]))
    return fits


@dataclass(frozen=True)
class IsoFlopMinimum:
    """The loss-minimising model size along one iso-FLOP line C = 6 N D (approach 2)."""

    flops: float  # C
    params: float  # N_opt: the parabola's vertex in log N
    tokens: float  # D_opt = C / (6 N_opt)
    loss: float  # the parabola's value at the vertex
    models: int  # models whose checkpoints reach this C


def _loss_at(tokens: np.ndarray, losses: np.ndarray, wanted: float) -> float | None:
    """One model's loss at ``wanted`` tokens, linear in log tokens between its checkpoints; None outside them."""
    if wanted < tokens[0] or wanted > tokens[-1]:
        return None
    return float(np.interp(np.log(wanted), np.log(tokens), losses))


Curves = Mapping[str, tuple[float, Sequence[float], Sequence[float]]]  # name -> (N, tokens, losses)


def isoflop_profile(curves: Curves, flops: float) -> dict[str, tuple[float, float]]:
    """{name: (N, loss at D = C / (6 N))} of the models whose checkpoints reach training compute C.

    ``curves`` maps a model name to (N, tokens at its checkpoints, losses there); tokens must increase.
    """
    profile = {}
    for name, (n, tokens, losses) in curves.items():
        tokens_array, losses_array = np.asarray(tokens, dtype=float), np.asarray(losses, dtype=float)
        if np.any(np.diff(tokens_array) <= 0):
            raise ValueError(f"curves[{name!r}]: tokens must increase, got {tokens_array.tolist()}")
        loss = _loss_at(tokens_array, losses_array, flops / (6 * n))
        if loss is not None:
            profile[name] = (float(n), loss)
    return profile


def isoflop_minima(curves: Curves, flops: Sequence[float], min_models: int = 4) -> list[IsoFlopMinimum]:
    """Approach 2: per C, fit loss against log N by a parabola over the models that reach C; keep interior minima."""
    if min_models < 3:
        raise ValueError(f"min_models must be >= 3 (a parabola has 3 coefficients), got {min_models}")
    minima = []
    for c in flops:
        points = list(isoflop_profile(curves, c).values())  # (N, loss) per model
        if len(points) < min_models:
            continue
        n, y = np.array(points).T  # (m,), (m,)
        x = np.log(n)
        curvature, slope, intercept = np.polyfit(x, y, 2)
        vertex = -slope / (2 * curvature) if curvature > 0 else math.nan
        if not (x.min() <= vertex <= x.max()):
            continue  # no minimum inside the sizes measured: the parabola would extrapolate
        params = math.exp(vertex)
        minima.append(IsoFlopMinimum(float(c), params, c / (6 * params),
                                     float(np.polyval([curvature, slope, intercept], vertex)), len(points)))
    return minima


def fit_exponent(flops: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """(a, k) of values = k * C**a by least squares in log-log space (N_opt or D_opt against compute)."""
    c, v = np.log(np.asarray(flops, dtype=float)), np.log(np.asarray(values, dtype=float))
    if len(c) < 2:
        raise ValueError(f"flops: need at least 2 points to fit an exponent, got {len(c)}")
    a, log_k = np.polyfit(c, v, 1)
    return float(a), float(math.exp(log_k))
