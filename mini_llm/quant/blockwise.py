"""Blockwise absmax quantization: quantize(W) -> (packed, state) and dequantize(packed, state) -> W'.

Both run through the kernel registry (mini_llm.kernels): Numba for CPU tensors, Triton for CUDA tensors, the
pure-torch reference on any other device; the result stays on W's (or packed's) device.
"""

from __future__ import annotations

import numpy as np
import torch

from mini_llm import kernels
from mini_llm.kernels import reference
from mini_llm.quant.checks import check_bits, check_blocksize, check_float32_range, check_scales, check_weight
from mini_llm.quant.codebooks import Codebook, codebook
from mini_llm.quant.state import QuantState


def quantize(
    W: torch.Tensor,
    bits: int = 4,
    codebook: str | Codebook = "nf",
    blocksize: int | None = 64,
    *,
    centered: bool = False,
    exponent_bits: int | None = None,
) -> tuple[torch.Tensor, QuantState]:
    """Quantize W blockwise to k-bit codes: packed (ceil(numel*k/8),) uint8 and its QuantState.

    Blocks are `blocksize` consecutive elements of the flattened (row-major) tensor, each scaled by its absmax (after
    subtracting its midrange when centered). codebook is a name (int, float, dynamic, quantile, nf) or a Codebook; the
    quantile codebook is estimated from W's block-normalised values. With bits=4, codebook='nf', blocksize=64 the
    result is byte for byte bitsandbytes' NF4 layout.
    """
    bits = check_bits(bits)
    blocksize = check_blocksize(blocksize)
    W = check_float32_range(check_weight(W))
    if not isinstance(centered, bool):
        raise ValueError(f"centered must be True or False, got {centered!r}")
    x = W.detach().reshape(-1)  # (n,) on W's device
    block = x.numel() if blocksize is None else blocksize
    book = _resolve_codebook(codebook, bits, exponent_bits, x, block, centered)
    code = book.tensor().to(x.device)
    packed, absmax, offset = kernels.quantize(x, code, bits, blocksize, centered)
    check_scales(absmax, offset)
    state = QuantState(
        shape=tuple(W.shape),
        dtype=W.dtype,
        bits=bits,
        blocksize=blocksize,
        codebook=book.name,
        code=code,
        absmax=absmax,
        offset=offset,
    )
    return packed, state


def _resolve_codebook(
    book: str | Codebook, bits: int, exponent_bits: int | None, x: torch.Tensor, block: int, centered: bool
) -> Codebook:
    if isinstance(book, Codebook):
        if book.bits != bits:
            raise ValueError(f"codebook has {book.bits} bits but bits={bits}")
        return book
    if book == "quantile":  # quantiles of the values as the blocks will see them: absmax-normalised
        sample = x[: min(x.numel(), 1 << 20)].cpu().float().numpy()  # (<= 2**20,) enough for 2**k quantiles
        _, absmax, offset = reference.quantize_reference(sample, np.array([-1.0, 1.0]), block, centered)
        idx = np.arange(sample.size) // block
        shift = offset[idx] if offset is not None else 0.0
        normed = (sample - shift) / np.where(absmax > 0, absmax, 1.0)[idx]
        return codebook("quantile", bits, data=normed)
    if not isinstance(book, str):
        raise ValueError(f"codebook must be a name or a Codebook, got {type(book).__name__}")
    return codebook(book, bits, exponent_bits=exponent_bits)


def dequantize(packed: torch.Tensor, state: QuantState) -> torch.Tensor:
    """The tensor (state.shape, state.dtype) that packed codes stand for, on packed's device; ValueError on mismatch."""
    if not isinstance(state, QuantState):
        raise ValueError(f"state must be a QuantState, got {type(state).__name__}")
    state.validate(packed)
    return kernels.dequantize(packed.detach(), state)  # the registry: Numba, Triton or the pure-torch reference


def dequantize_reference(packed: torch.Tensor, state: QuantState) -> torch.Tensor:
    """Pure-torch dequantize (any device): the reference path QuantizedLinear uses off the Numba kernels."""
    state.validate(packed)
    return kernels.dequantize(packed, state, backend="reference")
