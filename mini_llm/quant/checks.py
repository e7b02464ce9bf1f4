"""Argument checks shared by the quantization functions: each raises a ValueError naming the argument."""

from __future__ import annotations

import torch

# The k-bit layout checks live with the kernels (the lower floor) and are shared from there.
from mini_llm.kernels.checks import (  # noqa: F401
    BLOCKSIZES,
    MAX_BITS,
    MAX_BLOCKSIZE,
    MIN_BITS,
    MIN_BLOCKSIZE,
    check_bits,
    check_blocksize,
)


def check_weight(W: object, name: str = "W") -> torch.Tensor:
    """W as a non-empty, contiguous, finite floating-point torch tensor, or a ValueError naming `name`."""
    if not isinstance(W, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(W).__name__}")
    if not W.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {W.dtype}"
        )
    if W.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(W.shape)}")
    if not W.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first), got strides {W.stride()}")
    finite = torch.isfinite(W)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN or Inf values out of {W.numel()}")
    return W


FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_float32_range(W: torch.Tensor, name: str = "W") -> torch.Tensor:
    """W whose values fit float32 (the codes' scales are float32), or a ValueError naming `name`."""
    if W.dtype == torch.float64:
        largest = float(W.abs().max())
        if largest > FLOAT32_MAX:
            message = f"{name} must lie in the float32 range (|x| <= {FLOAT32_MAX:.4g}), got |x| = {largest:.4g}"
            raise ValueError(message)
    return W


def check_scales(absmax: torch.Tensor, offset: torch.Tensor | None, name: str = "W") -> None:
    """The per-block absmax (and centering offset) are finite: ValueError naming `name` when a block overflowed."""
    for what, values in (("absmax", absmax), ("offset", offset)):
        if values is not None and not bool(torch.isfinite(values).all()):
            blocks = int((~torch.isfinite(values)).sum())
            raise ValueError(
                f"{name} has values too large to quantize: the float32 {what} of {blocks} block(s) overflows "
                f"(|x|, or with centering the block's midrange and spread, must stay below {FLOAT32_MAX:.4g}); "
                f"scale {name} down first"
            )


def check_module_names(names: object, name: str = "skip") -> tuple[str, ...]:
    """One module name or a sequence of them, as a tuple of strings; a TypeError naming `name` otherwise."""
    if isinstance(names, str):
        return (names,)
    if not isinstance(names, (list, tuple, set, frozenset)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{name} must be a module name or a sequence of module names (str), got {names!r}")
    return tuple(names)


def check_layer_input(x: object, in_features: int, name: str = "x") -> torch.Tensor:
    """x as a real floating-point tensor of shape (..., in_features), or a TypeError/ValueError naming `name`."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {got}")
    if x.ndim == 0 or x.shape[-1] != in_features:
        raise ValueError(f"{name} must end in in_features={in_features}, got shape {tuple(x.shape)}")
    return x
