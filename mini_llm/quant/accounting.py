"""Exact bit accounting of one quantized tensor: its total bits and bits per parameter (model totals, which walk
QuantizedLinear layers, are mini_llm.quant.linear.model_bits).

A quantized tensor stores its packed codes (8 bytes per byte, padding included), one float32 absmax per block, one
float32 offset per block when centered, and, for a data-dependent codebook (quantile), its 2**k float32 values;
fixed codebooks (int, float, dynamic, nf) belong to the format and cost nothing per tensor.
So 4-bit blocks of 64 with float32 absmax cost 4 + 32/64 = 4.5 bits per parameter.
"""

from __future__ import annotations

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
