"""Gradient checking: compare a module's backward with central finite differences, in float64."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .module import Module


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a||, ||b||) in the 2-norm over all entries; 0 when both are zero."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f() / d x by central differences (f(x + eps) - f(x - eps)) / (2 eps), entry by entry.

    ``x`` is perturbed IN PLACE (f must read it) and restored exactly afterwards.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat = x.reshape(-1)  # a view: writing into it perturbs x
    if not np.shares_memory(flat, x):
        raise ValueError("x must be a contiguous array, so that it can be perturbed in place")
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


def gradient_errors(module: Module, *inputs: Any, eps: float = 1e-6, seed: int = 0) -> dict[str, float]:
    """Relative error of backward() against central differences, for every parameter (dotted name) and ``"input"``.

    The scalar checked is L = sum(forward(*inputs) * U) with a fixed random U (seeded by ``seed``), so backward(U)
    must give dL/d(first input) and accumulate dL/d(parameter). The first input is checked when it is a floating
    array (token ids and targets are not). Everything must be float64, where differences with eps = 1e-6 are exact
    to about 1e-9.
    """
    if not inputs:
        raise ValueError("inputs must hold at least one argument for module.forward, got none")
    inputs = list(inputs)
    check_input = isinstance(inputs[0], np.ndarray) and np.issubdtype(inputs[0].dtype, np.floating)
    if check_input:
        inputs[0] = np.array(inputs[0], dtype=np.float64)  # a private copy to perturb
    for name, value in module.parameters():
        if value.dtype != np.float64:
            raise ValueError(f"parameter {name!r} must be float64 for a gradient check, got {value.dtype}")
    upstream = np.asarray(np.random.default_rng(seed).standard_normal(np.shape(module.forward(*inputs))))

    def objective() -> float:
        return float(np.sum(np.asarray(module.forward(*inputs)) * upstream))

    module.zero_grad()
    module.forward(*inputs)
    dx = module.backward(upstream)
    analytic = {name: grad.copy() for name, grad in module.gradients()}
    errors = {}
    if check_input and dx is not None:
        errors["input"] = relative_error(dx, numerical_gradient(objective, inputs[0], eps))
    for name, value in module.parameters():
        errors[name] = relative_error(analytic[name], numerical_gradient(objective, value, eps))
    module.zero_grad()
    return errors


def gradient_check(module: Module, *inputs: Any, eps: float = 1e-6, seed: int = 0) -> float:
    """Largest relative error between backward() and central differences over all parameters and the input."""
    return max(gradient_errors(module, *inputs, eps=eps, seed=seed).values())
