"""Argument checks of the k-bit layout, shared by every public entry point (kernels and mini_llm.quant).

Each check raises a ValueError (TypeError for a wrong Python type) that names the argument, the value received and
what is allowed. They are O(1) in the tensor sizes, so the kernels run them on every call before any Numba or
Triton code can read past a buffer.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mini_llm.kernels.reference import n_blocks, packed_nbytes

MIN_BITS, MAX_BITS = 2, 8
MIN_BLOCKSIZE, MAX_BLOCKSIZE = 32, 4096
BLOCKSIZES = tuple(2**p for p in range(5, 13))  # 32, 64, ..., 4096: a block of 32 k-bit codes fills whole bytes
REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_bits(bits: object) -> int:
    """bits as an int in 2..8, or a ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return bits


def check_blocksize(blocksize: object) -> int | None:
    """blocksize as a power of two in 32..4096, or None for one block over the whole tensor; else a ValueError."""
    if blocksize is None:
        return None
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize not in BLOCKSIZES:
        raise ValueError(
            f"blocksize must be a power of two in {MIN_BLOCKSIZE}..{MAX_BLOCKSIZE} ({', '.join(map(str, BLOCKSIZES))}) "
            f"or None for the whole tensor, got {blocksize!r}"
        )
    return blocksize


def check_shape(shape: object, name: str = "state.shape") -> tuple[int, ...]:
    """shape as a non-empty tuple of positive ints, or a ValueError naming `name`."""
    if (
        not isinstance(shape, (tuple, list, torch.Size))
        or not shape
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape)
    ):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(shape)


def _check_float_vector(name: str, t: object, length: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype not in REAL_DTYPES or tuple(t.shape) != (length,):
        raise ValueError(
            f"{name} must be a floating-point tensor of shape ({length},), got "
            f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
        )


def check_state(state: Any, packed: object = None) -> None:
    """The fields of a k-bit state (bits, blocksize, shape, code, absmax, offset) agree with each other and with
    packed (when given): a uint8 tensor of exactly ceil(numel * bits / 8) bytes. ValueError naming the field."""
    for field in ("bits", "blocksize", "shape", "code", "absmax", "offset"):
        if not hasattr(state, field):
            raise TypeError(f"state must have the field {field!r} (a mini_llm.quant.QuantState), got {type(state)}")
    bits = check_bits(state.bits)
    blocksize = check_blocksize(state.blocksize)
    numel = math.prod(check_shape(state.shape))
    blocks = n_blocks(numel, numel if blocksize is None else blocksize)
    _check_float_vector("state.code", state.code, 2**bits)
    _check_float_vector("state.absmax", state.absmax, blocks)
    if state.offset is not None:
        _check_float_vector("state.offset", state.offset, blocks)
    if packed is not None:
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
            raise ValueError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
        if packed.numel() != packed_nbytes(numel, bits):
            raise ValueError(
                f"packed has {packed.numel()} bytes but the state ({numel} values of {bits} bits) "
                f"needs {packed_nbytes(numel, bits)}"
            )


def check_input(x: object, n_cols: int) -> torch.Tensor:
    """x as a non-empty real floating-point tensor of shape (K,) or (B, K) with K = n_cols, or a ValueError."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in REAL_DTYPES:
        raise ValueError(f"x must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if x.ndim not in (1, 2) or x.shape[-1] != n_cols or x.numel() == 0:
        raise ValueError(f"x must have shape ({n_cols},) or (B, {n_cols}) with B >= 1, got {tuple(x.shape)}")
    return x
