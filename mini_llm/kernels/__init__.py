"""k-bit kernels: a float64 numpy/torch reference, Numba CPU kernels, and one GEMV that dispatches by device.

The kernels know nothing of models or of mini_llm.quant: ``gemv`` reads the fields of any quantization state with
``bits``, ``shape``, ``blocksize`` (None: the whole tensor), ``code``, ``absmax`` and ``offset`` (torch tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mini_llm.kernels import cpu, reference
from mini_llm.kernels.cpu_simd import HAS_AVX512

__all__ = ["HAS_AVX512", "cpu", "gemv", "reference"]


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().contiguous().numpy()


def gemv(packed: torch.Tensor, state: Any, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """y = W @ x for the packed 2-D weight W described by state; x (K,) -> (N,), x (B, K) -> (B, N), float32.

    CPU tensors run the Numba kernels (backend 'auto', 'simd' or 'portable'); CUDA tensors belong to
    mini_llm.kernels.cuda, which is not written yet.
    """
    if packed.device.type == "cuda" or x.device.type == "cuda":
        raise NotImplementedError(
            "k-bit GEMV on CUDA tensors needs mini_llm.kernels.cuda (Triton), which is not implemented yet; "
            "move packed, state and x to the CPU, or dequantize and use torch.matmul"
        )
    if packed.device.type != "cpu" or x.device.type != "cpu":
        raise NotImplementedError(f"no k-bit GEMV for device {packed.device.type!r} / {x.device.type!r}")
    shape = tuple(state.shape)
    if len(shape) != 2:
        raise ValueError(f"state.shape must be 2-D (out_features, in_features) for gemv, got {shape}")
    if x.ndim not in (1, 2) or x.shape[-1] != shape[1]:
        raise ValueError(f"x must have shape ({shape[1]},) or (B, {shape[1]}), got {tuple(x.shape)}")
    blocksize = shape[0] * shape[1] if state.blocksize is None else state.blocksize
    y = cpu.gemv(
        _numpy(packed),
        state.bits,
        shape,
        _numpy(state.code.float()),
        _numpy(state.absmax.float()),
        _numpy(None if state.offset is None else state.offset.float()),
        blocksize,
        x.detach().float().contiguous().numpy(),
        backend=backend,
    )
    return torch.from_numpy(y)
