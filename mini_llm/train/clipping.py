"""Gradient clipping by the global L2 norm over all parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float, eps: float = 1e-6) -> float:
    """Scale all gradients by min(1, max_norm / (‖g‖ + eps)) in place; return the global norm ‖g‖ before clipping.

    ‖g‖ = sqrt(Σ_p Σ_i g_{p,i}²) over every parameter p that has a gradient (as torch.nn.utils.clip_grad_norm_).
    ``max_norm = inf`` only measures the norm; a non-finite norm is returned and the gradients are left as they are.
    """
    if not (isinstance(max_norm, int | float) and max_norm > 0):
        raise ValueError(f"max_norm must be a number > 0 (inf to only measure), got {max_norm!r}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    total_norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64) for g in grads])
    )
    total = float(total_norm)  # ‖g‖
    if not math.isfinite(total):
        return total  # a diverged loss: nothing sensible to scale by, the caller sees inf/nan
    scale = max_norm / (total + eps)
    if scale < 1.0:
        for g in grads:
            g.mul_(scale)  # g ← g max_norm / (‖g‖ + eps)
    return total
