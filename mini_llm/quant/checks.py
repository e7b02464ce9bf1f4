"""Argument checks shared by the quantization functions: each raises a ValueError naming the argument."""

from __future__ import annotations

import torch

MIN_BITS, MAX_BITS = 2, 8
MIN_BLOCKSIZE, MAX_BLOCKSIZE = 32, 4096
BLOCKSIZES = tuple(2**p for p in range(5, 13))  # 32, 64, ..., 4096: a block of 32 k-bit codes fills whole bytes


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
