"""Outlier-dependent quantization: keep in 16 bit the input dimensions whose hidden states are largest.

Dettmers et al. (LLM.int8(), 2022) found that a few hidden dimensions carry very large activations; the k-bit
inference paper keeps the weight columns that read those dimensions in 16 bit and quantizes the rest. Here the
dimensions are chosen from calibration inputs: the largest mean |x| per input dimension of each Linear layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from mini_llm.quant.layers import linear_weight


def top_dims(magnitude: torch.Tensor, fraction: float) -> torch.Tensor:
    """Sorted indices of the round(fraction * K) largest entries of magnitude (K,), at least 1 when fraction > 0."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {fraction}")
    k = magnitude.numel()
    count = 0 if fraction == 0 else max(1, round(fraction * k))
    return torch.topk(magnitude.float(), count).indices.sort().values


def input_magnitudes(
    model: nn.Module, batches: Iterable[object], forward: Callable[[nn.Module, object], object] | None = None
) -> dict[str, torch.Tensor]:
    """Mean |x| per input dimension (K,) seen by every nn.Linear (and transformers Conv1D) over calibration batches.

    forward(model, batch) runs one batch (default: model(batch)); returns {module name: magnitudes}.
    """
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook(name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])  # (M, K)
            sums[name] = sums.get(name, 0) + x.abs().sum(dim=0)  # (K,)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return record

    for name, module in model.named_modules():
        if linear_weight(module) is not None:
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            for batch in batches:
                forward(model, batch) if forward is not None else model(batch)
    finally:
        for handle in hooks:
            handle.remove()
    return {name: sums[name] / counts[name] for name in sums}
