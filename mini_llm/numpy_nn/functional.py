"""Stateless functions with their backward: softmax, cross-entropy, ReLU, GELU (tanh and exact erf)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

GELU_APPROXIMATIONS = ("tanh", "none")  # torch's names: "tanh" = GPT-2's gelu_new, "none" = exact x * Phi(x)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_COEF = 0.044715
_ERF_SERIES_TERMS = 60  # enough for full double precision on |x| < 3 (the terms have no cancellation)
_ERFC_FRACTION_TERMS = 60  # continued-fraction depth for |x| >= 3, where erfc <= 2.2e-5
_ERF_SWITCH = 3.0


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """softmax along ``axis``, stable: exp(x - max) / sum(exp(x - max)); entries equal to -inf get 0."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(dy: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient through softmax given its output y: dx = y * (dy - sum(dy * y))."""
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax along ``axis``: x - max - log(sum(exp(x - max)))."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _check_targets(logits: np.ndarray, targets: np.ndarray, ignore_index: int) -> np.ndarray:
    """Validate the shapes and values of cross-entropy inputs; return the mask of counted positions."""
    if logits.ndim < 1:
        raise ValueError(f"logits must have shape (..., V), got shape {logits.shape}")
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {logits.shape[:-1]} (logits' shape without V), got {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be an integer array, got dtype {targets.dtype}")
    counted = targets != ignore_index
    vocab_size = logits.shape[-1]
    bad = counted & ((targets < 0) | (targets >= vocab_size))
    if bad.any():
        raise ValueError(f"targets must lie in [0, {vocab_size}) or equal ignore_index={ignore_index}, "
                         f"got {targets[bad].flat[0]}")
    if not counted.any():
        raise ValueError(f"targets must contain at least one entry other than ignore_index={ignore_index}")
    return counted


def cross_entropy(logits: np.ndarray, targets: ArrayLike, ignore_index: int = -100) -> float:
    """Mean of -log softmax(logits)[target] over positions whose target is not ``ignore_index`` (as in torch).

    ``logits`` has shape (..., V) and ``targets`` integer shape (...).
    """
    targets = np.asarray(targets)
    counted = _check_targets(logits, targets, ignore_index)
    logp = log_softmax(logits)  # (..., V)
    safe = np.where(counted, targets, 0)  # (...)
    picked = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]  # (...)
    return float(-np.sum(picked[counted]) / np.count_nonzero(counted))


def cross_entropy_backward(logits: np.ndarray, targets: ArrayLike, ignore_index: int = -100) -> np.ndarray:
    """Gradient of ``cross_entropy`` with respect to the logits: (softmax - one_hot) / N on counted rows, else 0."""
    targets = np.asarray(targets)
    counted = _check_targets(logits, targets, ignore_index)
    dlogits = softmax(logits)  # (..., V)
    safe = np.where(counted, targets, 0)  # (...)
    np.put_along_axis(dlogits, safe[..., None], np.take_along_axis(dlogits, safe[..., None], axis=-1) - 1, axis=-1)
    dlogits *= counted[..., None]
    return dlogits / np.count_nonzero(counted)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0)


def relu_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient through ReLU: dy where x > 0, else 0 (the subgradient at 0 is taken as 0, as torch does)."""
    return dy * (x > 0)


def erf(x: ArrayLike) -> np.ndarray:
    """The error function, vectorised, to about 1e-15 relative error (no scipy needed).

    For |x| < 3 the series erf(x) = 2/sqrt(pi) exp(-x^2) sum_n x (2x^2)^n / (1*3*...*(2n+1)), whose terms are all
    positive; for |x| >= 3, erf = 1 - erfc with the continued fraction
    erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    near = np.minimum(a, _ERF_SWITCH)  # the series, evaluated where it is used
    two_a2 = 2.0 * near * near
    term = near.copy()
    total = near.copy()
    for n in range(1, _ERF_SERIES_TERMS):
        term = term * two_a2 / (2 * n + 1)
        total = total + term
    series = (2.0 / math.sqrt(math.pi)) * np.exp(-near * near) * total
    far = np.maximum(a, _ERF_SWITCH)  # the continued fraction, evaluated where it is used
    fraction = far.copy()
    for n in range(_ERFC_FRACTION_TERMS, 0, -1):
        fraction = far + (n / 2.0) / fraction
    erfc_far = np.exp(-far * far) / (math.sqrt(math.pi) * fraction)
    return np.sign(x) * np.where(a < _ERF_SWITCH, series, 1.0 - erfc_far)


def _check_approximate(approximate: str) -> None:
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}")


def gelu(x: np.ndarray, approximate: str = "tanh") -> np.ndarray:
    """GELU. "tanh" (default, GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); "none": x Phi(x)."""
    _check_approximate(approximate)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_COEF * x**3)))
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0))).astype(x.dtype, copy=False)


def gelu_backward(dy: np.ndarray, x: np.ndarray, approximate: str = "tanh") -> np.ndarray:
    """Gradient through ``gelu`` at input x."""
    _check_approximate(approximate)
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_TANH_COEF * x**3))
        du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_COEF * x**2)
        return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
    cdf = 0.5 * (1.0 + erf(x / math.sqrt(2.0)))  # Phi(x)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # phi(x)
    return dy * (cdf + x * pdf).astype(x.dtype, copy=False)


__all__ = [
    "GELU_APPROXIMATIONS",
    "cross_entropy",
    "cross_entropy_backward",
    "erf",
    "gelu",
    "gelu_backward",
    "log_softmax",
    "relu",
    "relu_backward",
    "softmax",
    "softmax_backward",
]
