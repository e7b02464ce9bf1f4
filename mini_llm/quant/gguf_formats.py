"""llama.cpp's GGUF block formats: quantize weights to their raw block bytes and dequantize them back.

Q4_0, Q4_1 and Q8_0 store 32 weights per block with an fp16 scale (and for Q4_1 an fp16 minimum); the k-quants
Q2_K..Q6_K (in ``kquants``) store 256 per super-block. Quantization follows ggml-quants.c's reference functions
(``quantize_row_*_ref``, no importance matrix) and dequantization its ``dequantize_row_*``, in float32 and in the
C code's operation order, so the bytes and values are llama.cpp's. ``gguf_quantize(W, "q4_k")`` gives the bytes
GGUF stores for a tensor, shape (*W.shape[:-1], bytes per row); ``gguf_dequantize(data, "q4_k", shape)`` reads
them back as a float32 torch tensor; ``gguf_bits_per_weight`` is block bytes * 8 / block elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from mini_llm.helpers import check_choice
from mini_llm.quant import kquants
from mini_llm.quant.checks import check_float32_range, check_weight
from mini_llm.quant.kquants import F32, half, to_half


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (n, 18) -> (n, 32) float32: d * (q - 8), q the low then the high nibbles of 16 bytes."""
    q = np.concatenate([blocks[:, 2:] & 0xF, blocks[:, 2:] >> 4], axis=1).astype(np.int8) - 8
    return half(blocks, 0) * q.astype(F32)


def dequantize_q4_1(blocks: np.ndarray) -> np.ndarray:
    """Q4_1 blocks (n, 20) -> (n, 32) float32: d * q + m."""
    q = np.concatenate([blocks[:, 4:] & 0xF, blocks[:, 4:] >> 4], axis=1)
    return half(blocks, 0) * q.astype(F32) + half(blocks, 2)


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    """Q8_0 blocks (n, 34) -> (n, 32) float32: int8 q * d."""
    return blocks[:, 2:].view(np.int8).astype(F32) * half(blocks, 0)


def inverse(d: np.ndarray) -> np.ndarray:
    """1/d where d != 0, else 0 (the C code's ``d ? 1.0f/d : 0.0f``)."""
    with np.errstate(divide="ignore"):
        return np.where(d != 0, F32(1) / d, F32(0)).astype(F32)


def nibble_bytes(q: np.ndarray) -> np.ndarray:
    """(n, 32) codes in [0, 15] -> 16 bytes: element j in the low nibble of byte j, element j + 16 in the high."""
    return (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> Q4_0 blocks (n, 18) by quantize_row_q4_0_ref: d = the signed absmax / -8."""
    signed, _ = kquants.first_absmax(x)
    d = (signed / F32(-8))[:, None]
    q = np.minimum(15, np.trunc(x * inverse(d) + F32(8.5)))  # (int8_t) truncates toward zero
    return np.concatenate([to_half(d), nibble_bytes(q.astype(np.uint8))], axis=1)


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> Q4_1 blocks (n, 20) by quantize_row_q4_1_ref: d = (max - min)/15, m = min."""
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    d = (high - low) / F32(15)
    q = np.minimum(15, np.trunc((x - low) * inverse(d) + F32(0.5)))
    return np.concatenate([to_half(d), to_half(low), nibble_bytes(q.astype(np.uint8))], axis=1)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """(n, 32) float32 -> Q8_0 blocks (n, 34) by quantize_row_q8_0_ref: d = absmax/127, q = roundf(x/d)."""
    d = np.abs(x).max(axis=1, keepdims=True) / F32(127)
    scaled = (x * inverse(d)).astype(np.float64)  # roundf: half away from zero, exact in float64
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    return np.concatenate([to_half(d), q.astype(np.int8).view(np.uint8)], axis=1)


class GGUFType(NamedTuple):
    """One GGUF block format: elements and bytes per block, and its (de)quantizer over (n_blocks, ...) arrays."""

    name: str
    block_size: int
    block_bytes: int
    quantize: Callable[[np.ndarray], np.ndarray]
    dequantize: Callable[[np.ndarray], np.ndarray]


GGUF_TYPES = {
    t.name: t
    for t in (
        GGUFType("q4_0", 32, 18, quantize_q4_0, dequantize_q4_0),
        GGUFType("q4_1", 32, 20, quantize_q4_1, dequantize_q4_1),
        GGUFType("q8_0", 32, 34, quantize_q8_0, dequantize_q8_0),
        GGUFType("q2_k", 256, 84, kquants.quantize_q2_k, kquants.dequantize_q2_k),
        GGUFType("q3_k", 256, 110, kquants.quantize_q3_k, kquants.dequantize_q3_k),
        GGUFType("q4_k", 256, 144, kquants.quantize_q4_k, kquants.dequantize_q4_k),
        GGUFType("q5_k", 256, 176, kquants.quantize_q5_k, kquants.dequantize_q5_k),
        GGUFType("q6_k", 256, 210, kquants.quantize_q6_k, kquants.dequantize_q6_k),
    )
}


def gguf_type(type_name: object) -> GGUFType:
    """The GGUF format named type_name (case-insensitive), or a ValueError listing the names."""
    key = type_name.lower() if isinstance(type_name, str) else type_name
    return GGUF_TYPES[check_choice("type_name", key, tuple(GGUF_TYPES))]


def gguf_bits_per_weight(type_name: str) -> float:
    """Exact storage bits per weight of a GGUF format: block bytes * 8 / block elements (q4_k: 4.5)."""
    t = gguf_type(type_name)
    return t.block_bytes * 8 / t.block_size


def check_row_length(length: int, t: GGUFType, name: str) -> None:
    """ValueError naming `name` unless a row of `length` elements splits into whole blocks of t."""
    if length % t.block_size:
        raise ValueError(
            f"{name}'s last dimension must be a multiple of {t.name}'s block size {t.block_size}, got {length}"
        )


def gguf_quantize(W: torch.Tensor | np.ndarray, type_name: str) -> np.ndarray:
    """W (..., n) -> GGUF block bytes (..., n / block_size * block_bytes) uint8, rows quantized as llama.cpp does."""
    t = gguf_type(type_name)
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(W)
    W = check_float32_range(check_weight(W, "W"), "W")
    if W.ndim == 0:
        raise ValueError("W must have at least one dimension, got a scalar")
    check_row_length(W.shape[-1], t, "W")
    x = W.detach().to("cpu", torch.float32).numpy().reshape(-1, t.block_size)  # (n_blocks, block_size)
    blocks = t.quantize(x)  # (n_blocks, block_bytes)
    if not np.isfinite(t.dequantize(blocks)).all():
        largest = float(W.abs().max())
        raise ValueError(f"W's values are too large for {t.name}'s float16 block scales (|W| max {largest:.4g})")
    return blocks.reshape(*W.shape[:-1], W.shape[-1] // t.block_size * t.block_bytes)


def gguf_dequantize(
    data: np.ndarray | bytes | torch.Tensor, type_name: str, shape: tuple[int, ...] | torch.Size
) -> torch.Tensor:
    """GGUF block bytes of a tensor of `shape` -> its float32 values as a torch tensor of that shape."""
    t = gguf_type(type_name)
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else shape
    if not isinstance(shape, tuple) or not shape or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(f"shape must be a non-empty tuple of positive integers, got {shape!r}")
    check_row_length(shape[-1], t, "shape")
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = np.frombuffer(data, dtype=np.uint8)
    elif isinstance(data, torch.Tensor) and data.dtype == torch.uint8:
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        got = data.dtype if isinstance(data, (np.ndarray, torch.Tensor)) else type(data).__name__
        raise TypeError(f"data must be a uint8 numpy array, uint8 torch tensor or bytes, got {got}")
    expected = math.prod(shape) // t.block_size * t.block_bytes
    if data.size != expected:
        raise ValueError(f"data must hold {expected} bytes for a {t.name} tensor of shape {shape}, got {data.size}")
    values = t.dequantize(np.ascontiguousarray(data).reshape(-1, t.block_bytes))  # (n_blocks, block_size)
    return torch.from_numpy(values.reshape(shape))
