"""k-bit kernels: a float64 numpy/torch reference, Numba CPU kernels, Triton GPU kernels; GEMV and dequantize by device.

The kernels know nothing of models or of mini_llm.quant: ``gemv`` and ``dequantize`` read the fields of any
quantization state with ``bits``, ``shape``, ``blocksize`` (None: the whole tensor), ``code``, ``absmax`` and
``offset`` (torch tensors). CPU tensors run the Numba kernels, CUDA tensors the Triton kernels of
mini_llm.kernels.cuda (imported on first use, so triton is needed only on a GPU machine).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch

from mini_llm.kernels import cpu, reference
from mini_llm.kernels.checks import check_input, check_state
from mini_llm.kernels.cpu_simd import HAS_AVX512

__all__ = ["HAS_AVX512", "cpu", "dequantize", "gemv", "reference", "triton_kernels"]

GPU_BACKENDS = ("auto", "triton")


def triton_kernels() -> ModuleType:
    """mini_llm.kernels.cuda (the Triton kernels); ImportError with the fix when triton is not installed."""
    try:
        from mini_llm.kernels import cuda
    except ImportError as error:
        raise ImportError(
            "k-bit kernels on CUDA tensors need Triton: pip install 'mini-llm[gpu]' (or use the pure-torch "
            f"reference, mini_llm.quant.dequantize_reference); import failed with: {error}"
        ) from error
    return cuda


def _check_devices(*tensors: torch.Tensor) -> str:
    """The one device type of all tensors ('cpu' or 'cuda'); NotImplementedError for mixed or other devices."""
    kinds = {t.device.type for t in tensors}
    if len(kinds) > 1:
        raise NotImplementedError(
            f"packed and x must be on one device (CPU: Numba kernels, CUDA: mini_llm.kernels.cuda), "
            f"got {sorted(kinds)}"
        )
    kind = kinds.pop()
    if kind not in ("cpu", "cuda"):
        raise NotImplementedError(f"no k-bit kernels for device {kind!r}")
    return kind


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """t as a numpy array (shared memory when t is a CPU tensor without grad; the kernels make it contiguous)."""
    if t is None:
        return None
    try:
        return t.numpy()  # the common case, ~4x cheaper than the general conversion below
    except (RuntimeError, TypeError):  # requires grad, or not on the CPU
        return t.detach().cpu().numpy()


def _table_and_scales(state: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The state's code table, absmax and offset (None when not centred) as float32 numpy arrays."""
    return (
        _numpy(state.code.float()),
        _numpy(state.absmax.float()),
        _numpy(None if state.offset is None else state.offset.float()),
    )


def gemv(packed: torch.Tensor, state: Any, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """y = W @ x for the packed 2-D weight W described by state; x (K,) -> (N,), x (B, K) -> (B, N), float32.

    CPU tensors run the Numba kernels (backend 'auto', 'simd' or 'portable'); CUDA tensors the Triton kernels
    (backend 'auto' or 'triton': fused dequantize-GEMV at batch 1, dequantized tiles and tl.dot above).
    """
    device = _check_devices(packed, x)
    check_state(state, packed)
    shape = tuple(state.shape)
    if len(shape) != 2:
        raise ValueError(f"state.shape must be 2-D (out_features, in_features) for gemv, got {shape}")
    check_input(x, shape[1])
    if device == "cuda":
        if backend not in GPU_BACKENDS:
            raise ValueError(f"backend for CUDA tensors must be one of {', '.join(GPU_BACKENDS)}, got {backend!r}")
        return triton_kernels().gemv(packed, state, x)
    blocksize = shape[0] * shape[1] if state.blocksize is None else state.blocksize
    y = cpu.gemv(
        _numpy(packed),
        state.bits,
        shape,
        *_table_and_scales(state),
        blocksize,
        x.detach().float().contiguous().numpy(),
        backend=backend,
    )
    return torch.from_numpy(y)


def dequantize(packed: torch.Tensor, state: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The (state.shape) tensor in dtype (default state.dtype) on packed's device: Numba on the CPU, Triton on CUDA."""
    device = _check_devices(packed)
    check_state(state, packed)
    dtype = state.dtype if dtype is None else dtype
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"dtype must be float16, bfloat16, float32 or float64, got {dtype}")
    if device == "cuda":
        return triton_kernels().dequantize(packed, state, dtype)
    numel = math.prod(state.shape)
    values = cpu.dequantize(
        _numpy(packed),
        state.bits,
        numel,
        *_table_and_scales(state),
        numel if state.blocksize is None else state.blocksize,
    )
    return torch.from_numpy(values).reshape(tuple(state.shape)).to(dtype)
