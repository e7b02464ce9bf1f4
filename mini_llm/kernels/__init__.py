"""k-bit kernels behind one registry: a pure-torch reference for every device, Numba on the CPU, Triton on CUDA.

mini_llm.kernels.registry declares the operations (quantize, dequantize, gemv, matmul) with one signature each and
maps device types to implementations; this module registers them (which backend serves which device is written
here and nowhere else) and offers the state-level entry points ``quantize``, ``gemv`` and ``dequantize`` that
mini_llm.quant calls. The kernels know nothing of models or of mini_llm.quant: ``gemv`` and ``dequantize`` read the
fields of any quantization state with ``bits``, ``shape``, ``blocksize`` (None: the whole tensor), ``code``,
``absmax`` and ``offset`` (torch tensors). mini_llm.kernels.cuda (triton) is imported on first use, so triton is
needed only on a GPU machine.

    registry.DEFAULT -> mini_llm.kernels.reference   (pure torch: any device, and backend='reference')
    "cpu"            -> mini_llm.kernels.cpu         (Numba; gemv/matmul backend 'auto', 'simd', 'portable' or
                                                      'int8': int8 activations, mini_llm.kernels.cpu_int8)
    "cuda"           -> mini_llm.kernels.cuda        (Triton; backend 'auto' or 'triton')

Outside the registry (not yet one of its operations): mini_llm.kernels.kquant_cpu, a Numba GEMV straight from the
bytes of llama.cpp's Q4_K blocks (``gemv_q4_k``); mini_llm.kernels.llama_cpu, a whole Llama decode step compiled
around the CPU GEMV's row kernels (``cpu.row_kernel``, the same kernels the registry's gemv runs).

May import: helpers (and torch, numpy, Numba, triton). Never quant, nn, train, tasks, scaling or cli.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from mini_llm.kernels import cpu, reference, registry
from mini_llm.kernels.checks import state_fields
from mini_llm.kernels.cpu_int8 import HAS_INT8_DOT, HAS_VNNI
from mini_llm.kernels.cpu_simd import HAS_AVX2, HAS_AVX512, HAS_SIMD

__all__ = ["HAS_AVX2", "HAS_AVX512", "HAS_INT8_DOT", "HAS_SIMD", "HAS_VNNI", "cpu", "dequantize", "gemv", "quantize",
           "reference", "registry", "triton_kernels"]


def triton_kernels() -> ModuleType:
    """mini_llm.kernels.cuda (the Triton kernels); ImportError with the fix when triton is not installed."""
    try:
        return importlib.import_module("mini_llm.kernels.cuda")
    except ImportError as error:
        raise ImportError(
            "k-bit kernels on CUDA tensors need Triton: pip install 'mini-llm[gpu]' (or use the pure-torch "
            f"reference, backend='reference' or mini_llm.quant.dequantize_reference); import failed with: {error}"
        ) from error


def _triton(op: str) -> Callable[..., Any]:
    """The CUDA entry of op: mini_llm.kernels.cuda.<op>, imported on the first call."""

    def run(*args: Any) -> Any:
        return getattr(triton_kernels(), op)(*args)

    run.__name__ = run.__qualname__ = f"triton_{op}"
    return run


for _op in registry.OPS:
    registry.register(_op)(getattr(reference, _op))
    registry.register(_op, "cpu")(getattr(cpu, _op))
    registry.register(_op, "cuda")(_triton(_op))
del _op


def quantize(
    A: torch.Tensor, code: torch.Tensor, bits: int, blocksize: int | None, centered: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(packed, absmax, offset or None) of the flattened A quantized to the nearest of code, on A's device."""
    return registry.call("quantize", A, code, bits, blocksize, centered, backend=backend)


def gemv(packed: torch.Tensor, state: Any, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """y = W @ x for the packed 2-D weight W described by state; x (K,) -> (N,), x (B, K) -> (B, N), float32.

    x of one row runs the registry's gemv, more rows its small-batch matmul. CPU tensors run the Numba kernels
    (backend 'auto', 'simd', 'portable' or 'int8'); CUDA tensors the Triton kernels (backend 'auto' or 'triton': fused
    dequantize-GEMV at batch 1, dequantized tiles and tl.dot above); backend 'reference' the pure-torch reference.
    """
    bits, shape, code, absmax, offset, blocksize = state_fields(state)
    op = "matmul" if isinstance(x, torch.Tensor) and x.ndim == 2 and x.shape[0] > 1 else "gemv"
    return registry.call(op, packed, bits, shape, code, absmax, offset, blocksize, x, backend=backend)


def dequantize(
    packed: torch.Tensor, state: Any, dtype: torch.dtype | None = None, backend: str = "auto"
) -> torch.Tensor:
    """The (state.shape) tensor in dtype (default state.dtype) on packed's device: Numba on the CPU, Triton on CUDA,
    the pure-torch reference elsewhere or with backend 'reference'."""
    bits, shape, code, absmax, offset, blocksize = state_fields(state)
    dtype = state.dtype if dtype is None else dtype
    return registry.call("dequantize", packed, bits, shape, code, absmax, offset, blocksize, dtype, backend=backend)
