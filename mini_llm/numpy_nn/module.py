"""The ``Module`` base class: parameters, their gradients, and nesting under dotted names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class Module:
    """A layer with an explicit ``forward`` and ``backward`` written in numpy.

    ``forward(x)`` returns the output and caches what ``backward`` needs. ``backward(dy)`` takes the gradient of the
    loss with respect to the output and returns the gradient with respect to the first input (``None`` when that input
    is not differentiable, e.g. token ids). It ADDS the parameter gradients into ``grads[name]``, which has the same
    keys and shapes as ``params[name]``; call ``zero_grad()`` before the next step.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}  # this module's own parameters, by short name
        self.grads: dict[str, np.ndarray] = {}  # their accumulated gradients, same keys and shapes
        self.children: dict[str, Module] = {}  # sub-modules, by (possibly dotted, e.g. "blocks.0") name

    def add_parameter(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a parameter array and a zero gradient of the same shape; return the array."""
        if name in self.params:
            raise ValueError(f"name must be new, got {name!r} which is already a parameter")
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def add_module(self, name: str, module: Module) -> Any:
        """Register a sub-module under ``name``; return it."""
        if name in self.children:
            raise ValueError(f"name must be new, got {name!r} which is already a sub-module")
        self.children[name] = module
        return module

    def forward(self, *inputs: Any) -> Any:
        """Compute the output and cache what backward needs."""
        raise NotImplementedError

    def backward(self, dy: Any) -> Any:
        """Return the gradient with respect to the first input; accumulate parameter gradients."""
        raise NotImplementedError

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield (dotted name, module) for this module and every sub-module, depth first."""
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (dotted name, array) for every parameter, e.g. ``("blocks.0.attn.qkv.weight", W)``."""
        for prefix, module in self.named_modules():
            for name, value in module.params.items():
                yield (f"{prefix}.{name}" if prefix else name), value

    def gradients(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (dotted name, gradient) in the same order and with the same names as ``parameters()``."""
        for prefix, module in self.named_modules():
            for name, value in module.grads.items():
                yield (f"{prefix}.{name}" if prefix else name), value

    def zero_grad(self) -> None:
        """Set every accumulated gradient to zero, in place."""
        for _, grad in self.gradients():
            grad.fill(0)

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return sum(value.size for _, value in self.parameters())

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, by dotted name."""
        return {name: value.copy() for name, value in self.parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays into the parameters, in place; names and shapes must match exactly."""
        own = dict(self.parameters())
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise ValueError(f"state must have exactly this module's names; missing {missing}, unexpected {unexpected}")
        for name, value in own.items():
            new = np.asarray(state[name])
            if new.shape != value.shape:
                raise ValueError(f"state[{name!r}] must have shape {value.shape}, got {new.shape}")
            value[...] = new


def require_cache(cache: Any, module: Module) -> Any:
    """Return the forward cache, or raise if backward is called before forward."""
    if cache is None:
        raise RuntimeError(f"{type(module).__name__}.backward was called before forward")
    return cache


def check_last_dim(name: str, x: np.ndarray, size: int) -> None:
    """Raise ValueError unless ``x`` has at least one axis and its last axis has ``size`` entries."""
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got shape {x.shape}")


def check_token_ids(name: str, ids: np.ndarray, num_embeddings: int) -> None:
    """Raise ValueError unless ``ids`` is an integer array with values in [0, num_embeddings)."""
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= num_embeddings):
        bad = ids[(ids < 0) | (ids >= num_embeddings)].flat[0]
        raise ValueError(f"{name} must lie in [0, {num_embeddings}), got {bad}")
