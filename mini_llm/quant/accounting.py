"""Exact bit accounting: bits per parameter of one quantized tensor and total bits of a model.

A quantized tensor stores its packed codes (8 bytes per byte, padding included), one float32 absmax per block, one
float32 offset per block when centered, and, for a data-dependent codebook (quantile), its 2**k float32 values;
fixed codebooks (int, float, dynamic, nf) belong to the format and cost nothing per tensor.
So 4-bit blocks of 64 with float32 absmax cost 4 + 32/64 = 4.5 bits per parameter.
"""

from __future__ import annotations

from torch import nn

from mini_llm.quant.state import QuantState

SCALE_BITS = 32  # absmax and offset are stored as float32


def tensor_bits(state: QuantState) -> int:
    """Total bits one quantized tensor takes: codes, scales, offsets and a data-dependent table."""
    bits = 8 * state.packed_nbytes + SCALE_BITS * state.n_blocks
    if state.offset is not None:
        bits += SCALE_BITS * state.n_blocks
    if state.codebook.startswith("quantile"):
        bits += 32 * 2**state.bits
    return bits


def bits_per_param(state: QuantState) -> float:
    """Bits per quantized parameter, block scales included (e.g. 4 + 32/64 = 4.5 for NF4 with blocks of 64)."""
    if not isinstance(state, QuantState):
        raise ValueError(f"state must be a QuantState, got {type(state).__name__}")
    return tensor_bits(state) / state.numel


def model_bits(model: nn.Module) -> int:
    """Total bits of a model: every QuantizedLinear's stored_bits() plus every other parameter and buffer at its dtype.

    Shared (tied) tensors are counted once.
    """
    from mini_llm.quant.linear import QuantizedLinear

    total = 0
    seen: set[int] = set()
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    for module in quantized:
        total += module.stored_bits()
        seen.update(t.data_ptr() for t in module.state_tensors())
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() in seen or tensor.numel() == 0:
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size() * 8
    return total
