"""Argument checks of the k-bit layout, shared by every public entry point (kernels and mini_llm.quant).

Each check raises a ValueError (TypeError for a wrong Python type) that names the argument, the value received and
what is allowed. They are O(1) in the tensor sizes, so the kernel registry (mini_llm.kernels.registry.call) runs the
op's check (check_quantize_args, check_dequantize_args, check_gemv_args) once on every call, before any Numba or
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
    fields = state_fields(state)
    check_layout(packed, *fields, check_packed=packed is not None)


def state_fields(state: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(bits, shape, code, absmax, offset, blocksize) of any object with those fields (a QuantState), else TypeError."""
    for field in ("bits", "blocksize", "shape", "code", "absmax", "offset"):
        if not hasattr(state, field):
            raise TypeError(f"state must have the field {field!r} (a mini_llm.quant.QuantState), got {type(state)}")
    return state.bits, state.shape, state.code, state.absmax, state.offset, state.blocksize


def check_layout(
    packed: object,
    bits: object,
    shape: object,
    code: object,
    absmax: object,
    offset: object,
    blocksize: object,
    check_packed: bool = True,
) -> None:
    """The layout arguments of the kernel registry's ops agree (named as the QuantState fields they come from)."""
    bits = check_bits(bits)
    blocksize = check_blocksize(blocksize)
    numel = math.prod(check_shape(shape))
    blocks = n_blocks(numel, numel if blocksize is None else blocksize)
    _check_float_vector("state.code", code, 2**bits)
    _check_float_vector("state.absmax", absmax, blocks)
    if offset is not None:
        _check_float_vector("state.offset", offset, blocks)
    if check_packed:
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
            raise ValueError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
        if packed.numel() != packed_nbytes(numel, bits):
            raise ValueError(
                f"packed has {packed.numel()} bytes but the state ({numel} values of {bits} bits) "
                f"needs {packed_nbytes(numel, bits)}"
            )


def check_dtype(dtype: object) -> torch.dtype:
    """dtype as one of the real floating-point dtypes the kernels write, or a ValueError."""
    if dtype not in REAL_DTYPES:
        raise ValueError(f"dtype must be float16, bfloat16, float32 or float64, got {dtype}")
    return dtype


def check_quantize_args(A: object, code: object, bits: object, blocksize: object, centered: object) -> None:
    """Arguments of the registry's quantize: a non-empty floating tensor, a 2**bits table, bits, blocksize, a bool."""
    if not isinstance(A, torch.Tensor) or A.dtype not in REAL_DTYPES or A.numel() == 0:
        raise ValueError(
            "A must be a non-empty float16, bfloat16, float32 or float64 tensor, got "
            f"{getattr(A, 'dtype', type(A).__name__)} {tuple(getattr(A, 'shape', ()))}"
        )
    _check_float_vector("code", code, 2 ** check_bits(bits))
    check_blocksize(blocksize)
    if not isinstance(centered, bool):
        raise ValueError(f"centered must be True or False, got {centered!r}")


def check_dequantize_args(
    packed: object, bits: object, shape: object, code: object, absmax: object, offset: object, blocksize: object,
    dtype: object,
) -> None:
    """Arguments of the registry's dequantize: a consistent layout and a real floating-point dtype."""
    check_layout(packed, bits, shape, code, absmax, offset, blocksize)
    check_dtype(dtype)


def check_gemv_args(
    packed: object, bits: object, shape: object, code: object, absmax: object, offset: object, blocksize: object,
    x: object,
) -> None:
    """Arguments of the registry's gemv and matmul: a consistent 2-D layout and x (K,) or (B, K)."""
    check_layout(packed, bits, shape, code, absmax, offset, blocksize)
    shape = tuple(shape)
    if len(shape) != 2:
        raise ValueError(f"state.shape must be 2-D (out_features, in_features) for gemv, got {shape}")
    check_input(x, shape[1])


def check_input(x: object, n_cols: int) -> torch.Tensor:
    """x as a non-empty real floating-point tensor of shape (K,) or (B, K) with K = n_cols, or a ValueError."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in REAL_DTYPES:
        raise ValueError(f"x must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if x.ndim not in (1, 2) or x.shape[-1] != n_cols or x.numel() == 0:
        raise ValueError(f"x must have shape ({n_cols},) or (B, {n_cols}) with B >= 1, got {tuple(x.shape)}")
    return x
