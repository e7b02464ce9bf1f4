"""QuantizedLinear (k-bit weights, optional 16-bit outlier columns), quantize_model for any torch model, and the
model-level measures of a quantized model (model_bits, count_quantized, weight_error).

Works on every nn.Linear and on transformers' GPT-2 Conv1D (the same map with the weight stored transposed).
The forward pass picks, per call: the fused k-bit GEMV for up to SMALL_BATCH[device] rows of input (Numba on the
CPU, Triton on CUDA), dequantize-then-matmul for larger batches, and the pure-torch dequantize-on-the-fly reference path
for backend='reference', for other devices, and where gradients are needed. backend='int8' (CPU, AVX-512 VNNI or
AVX2) rounds the inputs to int8 for integer dot products at every batch size (mini_llm.kernels.cpu_int8; a small
extra error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm import kernels
from mini_llm.quant.accounting import tensor_bits
from mini_llm.quant.blockwise import dequantize_reference, quantize
from mini_llm.quant.checks import check_bits, check_blocksize, check_layer_input, check_module_names
from mini_llm.quant.codebooks import CODEBOOKS, Codebook
from mini_llm.quant.layers import linear_weight
from mini_llm.quant.outliers import input_magnitudes, top_dims
from mini_llm.quant.state import QuantState

# Up to this many input rows use the fused k-bit kernel; more rows dequantize the layer once and matmul. On the CPU
# the kernel decodes each weight row once and reuses it from L1 for every input row: faster than dequantize + matmul
# up to 128-256 rows (SmolLM2's layers, 2 threads, benchmarks/bench_llm_decode.py's prefill of 16 and 128 tokens).
SMALL_BATCH = {"cpu": 128, "cuda": 8}
LINEAR_BACKENDS = ("auto", "simd", "portable", "int8", "reference")
OUTLIER_BITS = 16  # outlier columns are stored in float16
INDEX_BITS = 32  # each outlier dimension's index costs one int32


class QuantizedLinear(nn.Module):
    """y = x W^T + b with W stored as k-bit blockwise codes, and optionally some input columns of W in float16.

    Outlier columns are set to zero in the k-bit part (so the blocks keep their places in each row and no outlier
    sets a block's absmax) and stored in float16 beside it; their inputs bypass the k-bit part.
    """

    def __init__(
        self,
        packed: torch.Tensor,
        state: QuantState,
        bias: torch.Tensor | None = None,
        outlier_dims: torch.Tensor | None = None,
        outlier_weight: torch.Tensor | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in LINEAR_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(LINEAR_BACKENDS)}, got {backend!r}")
        state.validate(packed)
        if len(state.shape) != 2:
            raise ValueError(f"state.shape must be (out_features, in_features), got {state.shape}")
        n_out = 0 if outlier_dims is None else outlier_dims.numel()
        if (outlier_dims is None) != (outlier_weight is None):
            raise ValueError("outlier_dims and outlier_weight must be given together")
        if outlier_weight is not None and tuple(outlier_weight.shape) != (state.shape[0], n_out):
            raise ValueError(
                f"outlier_weight must have shape ({state.shape[0]}, {n_out}), got {tuple(outlier_weight.shape)}"
            )
        self.out_features = state.shape[0]
        self.in_features = state.shape[1]
        self.bits, self.blocksize, self.codebook, self.weight_dtype = (
            state.bits,
            state.blocksize,
            state.codebook,
            state.dtype,
        )
        self.backend = backend
        self.register_buffer("packed", packed)
        self.register_buffer("code", state.code)
        self.register_buffer("absmax", state.absmax)
        self.register_buffer("offset", state.offset)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        if n_out and not (0 <= int(outlier_dims.min()) and int(outlier_dims.max()) < self.in_features):
            raise ValueError(f"outlier_dims must lie in 0..{self.in_features - 1}, got {outlier_dims.tolist()}")
        self.register_buffer("outlier_dims", outlier_dims.long() if n_out else None)
        self.register_buffer("outlier_weight", outlier_weight)
        if backend == "int8":  # refuse now, not at the first forward, a layer the int8-activation kernel cannot run
            whole = self.in_features * self.out_features if self.blocksize is None else self.blocksize
            kernels.cpu.check_int8_applies(self.bits, self.in_features, whole, state.code.float().cpu().numpy(),
                                           None if state.offset is None else state.offset.float().cpu().numpy())

    @classmethod
    def from_linear(
        cls,
        module: nn.Module,
        bits: int = 4,
        codebook: str | Codebook = "nf",
        blocksize: int | None = 64,
        *,
        centered: bool = False,
        outlier_dims: torch.Tensor | None = None,
        backend: str = "auto",
    ) -> QuantizedLinear:
        """Quantize an nn.Linear (or Conv1D); the input dims in outlier_dims stay in float16."""
        weight = linear_weight(module)
        if weight is None:
            raise ValueError(f"module must be an nn.Linear or a transformers Conv1D, got {type(module).__name__}")
        W = weight.detach().float().contiguous()  # (N, K)
        outlier_weight = None
        if outlier_dims is not None and outlier_dims.numel():
            outlier_dims = outlier_dims.long().unique()
            if int(outlier_dims.min()) < 0 or int(outlier_dims.max()) >= W.shape[1]:
                raise ValueError(f"outlier_dims must lie in 0..{W.shape[1] - 1}, got {outlier_dims.tolist()}")
            if outlier_dims.numel() >= W.shape[1]:
                raise ValueError("outlier_dims must leave at least one input dimension to quantize")
            outlier_weight = W[:, outlier_dims].half()  # (N, n_out) float16
            W = W.index_fill(1, outlier_dims, 0.0)  # (N, K): zero columns set no absmax
        else:
            outlier_dims = None
        packed, state = quantize(W, bits, codebook, blocksize, centered=centered)
        state.dtype = weight.dtype if weight.dtype in (torch.float16, torch.bfloat16, torch.float64) else torch.float32
        bias = getattr(module, "bias", None)
        return cls(packed, state, bias, outlier_dims, outlier_weight, backend).to(weight.device)  # on W's device

    @property
    def state(self) -> QuantState:
        """The QuantState of the k-bit part (shape (out_features, in_features); outlier columns are zero there)."""
        return QuantState(
            (self.out_features, self.in_features),
            self.weight_dtype,
            self.bits,
            self.blocksize,
            self.codebook,
            self.code,
            self.absmax,
            self.offset,
        )

    def state_tensors(self) -> list[torch.Tensor]:
        """The buffers that hold the quantized weight (counted by stored_bits, not as plain tensors)."""
        names = ("packed", "code", "absmax", "offset", "outlier_dims", "outlier_weight")
        return [t for t in (getattr(self, n) for n in names) if t is not None]

    def stored_bits(self) -> int:
        """Bits of the weight as stored: k-bit codes with scales, float16 outlier columns and their int32 indices."""
        bits = tensor_bits(self.state)
        if self.outlier_dims is not None:
            bits += OUTLIER_BITS * self.outlier_weight.numel() + INDEX_BITS * self.outlier_dims.numel()
        return bits

    def dequantized_weight(self) -> torch.Tensor:
        """The full (out_features, in_features) float32 weight this layer computes with (pure torch)."""
        W = dequantize_reference(self.packed, self.state).float()  # (N, K)
        if self.outlier_dims is not None:
            W[:, self.outlier_dims] = self.outlier_weight.float()
        return W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> (..., out_features) in x's dtype."""
        check_layer_input(x, self.in_features)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).float()  # (M, K)
        xq = x2 if self.outlier_dims is None else x2.index_fill(1, self.outlier_dims, 0.0)  # (M, K)
        on_gpu = x.device.type == "cuda"
        fast = self.backend != "reference" and (on_gpu or x.device.type == "cpu") and not torch.is_grad_enabled()
        int8 = self.backend == "int8" and not on_gpu  # int8 activations at every batch size (CPU kernels only)
        if fast and (xq.shape[0] <= SMALL_BATCH[x.device.type] or int8):
            backend = "auto" if on_gpu else self.backend  # simd / portable / int8 name CPU kernels
            y = kernels.gemv(self.packed, self.state, xq.contiguous(), backend=backend)  # (M, N)
        elif fast:
            y = F.linear(xq, kernels.dequantize(self.packed, self.state, torch.float32))  # (M, N)
        else:
            y = F.linear(xq, dequantize_reference(self.packed, self.state).float())  # (M, N)
        if self.outlier_dims is not None:
            y = y + x2[:, self.outlier_dims] @ self.outlier_weight.float().t()  # (M, N)
        if self.bias is not None:
            y = y + self.bias.float()
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        n_out = 0 if self.outlier_dims is None else self.outlier_dims.numel()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"codebook={self.codebook}, blocksize={self.blocksize}, outlier_dims={n_out}, backend={self.backend}"
        )


def quantize_model(
    model: nn.Module,
    bits: int = 4,
    codebook: str | Codebook = "nf",
    blocksize: int | None = 64,
    *,
    centered: bool = False,
    outlier_fraction: float = 0.0,
    calibration: Iterable[object] | None = None,
    forward: Callable[[nn.Module, object], object] | None = None,
    skip: str | Sequence[str] = ("lm_head",),
    backend: str = "auto",
) -> nn.Module:
    """Replace every nn.Linear / Conv1D of model (in place) by a QuantizedLinear and return the model.

    skip: a module name or several (names or name suffixes) left in full precision; the LM head by default, whose
    weight is usually tied to the embedding. With outlier_fraction > 0, each layer keeps that fraction of its input
    dimensions (those with the largest mean |x| over the calibration batches, run as forward(model, batch)) in float16.
    """
    check_bits(bits)
    check_blocksize(blocksize)
    skip = check_module_names(skip, "skip")
    if not isinstance(codebook, Codebook) and codebook not in CODEBOOKS:
        raise ValueError(f"codebook must be one of {', '.join(CODEBOOKS)} or a Codebook, got {codebook!r}")
    if backend not in LINEAR_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(LINEAR_BACKENDS)}, got {backend!r}")
    if not 0.0 <= outlier_fraction < 1.0:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction}")
    if outlier_fraction > 0 and calibration is None:
        raise ValueError("outlier_fraction > 0 needs calibration batches to measure the hidden-state magnitudes")
    magnitudes = input_magnitudes(model, calibration, forward) if outlier_fraction > 0 else {}

    targets = [
        (name, module)
        for name, module in model.named_modules()
        if linear_weight(module) is not None and not _skipped(name, skip)
    ]
    for name, module in targets:
        dims = top_dims(magnitudes[name], outlier_fraction) if name in magnitudes else None
        quantized = QuantizedLinear.from_linear(
            module, bits, codebook, blocksize, centered=centered, outlier_dims=dims, backend=backend
        )
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, quantized)
    return model


def _skipped(name: str, skip: Sequence[str]) -> bool:
    return any(name == s or name.endswith("." + s) for s in skip)


def model_bits(model: nn.Module) -> int:
    """Total bits of a model: every QuantizedLinear's stored_bits() plus every other parameter and buffer at its dtype.

    Shared (tied) tensors are counted once.
    """
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


def count_quantized(model: nn.Module) -> int:
    """Number of QuantizedLinear layers in model."""
    return sum(isinstance(m, QuantizedLinear) for m in model.modules())


def weight_error(model: nn.Module, reference: nn.Module) -> float:
    """Largest relative Frobenius error ||W_q - W|| / ||W|| over the quantized layers of model vs reference."""
    worst = 0.0
    ref_modules = dict(reference.named_modules())
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            W = linear_weight(ref_modules[name]).detach().float()
            worst = max(worst, float((module.dequantized_weight() - W).norm() / W.norm().clamp_min(math.ulp(1.0))))
    return worst
