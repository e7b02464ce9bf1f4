"""Which modules count as linear layers (nn.Linear and transformers' GPT-2 Conv1D) and their (out, in) weight.

The one definition that calibration (mini_llm.quant.outliers) and quantization (mini_llm.quant.linear) both walk
models with; it imports nothing of mini_llm.
"""

from __future__ import annotations

import torch
from torch import nn


def linear_weight(module: nn.Module) -> torch.Tensor | None:
    """The (out_features, in_features) weight of an nn.Linear or a transformers Conv1D, else None."""
    if isinstance(module, nn.Linear):
        return module.weight
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and getattr(module, "weight", None) is not None:
        return module.weight.t()  # Conv1D stores (in, out)
    return None
