"""AWQ (Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan & Han, MLSys 2024): activation-aware per-input-channel
scales, searched on calibration activations and folded into the previous operation, then mini_llm's quantize.

For the channel scales s = mean|X|^alpha, normalised to s / sqrt(max(s) min(s)) (as the reference code
github.com/mit-han-lab/llm-awq, auto_scale.py, does), alpha runs over a grid of n_grid points in [0, 1) and the
one with the smallest output error ||X W^T - X diag(1/s) Q(W diag(s))^T||^2 wins (ties: the smaller alpha, so
alpha = 0, plain round-to-nearest, wins when nothing helps). The layer then stores Q(W diag(s)) and its input is
divided by s, which fold_scales moves into the previous LayerNorm, RMSNorm or Linear: before quantization the model
computes the same function. Not implemented: the reference's weight-clipping search (auto_clip).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mini_llm.helpers import check_int
from mini_llm.quant.blockwise import dequantize, quantize
from mini_llm.quant.codebooks import Codebook
from mini_llm.quant.gptq import check_calibration, check_matrix
from mini_llm.quant.state import QuantState

N_GRID = 20  # alpha = 0, 1/20, ..., 19/20 as in the reference code
MIN_SCALE = 1e-4  # the reference clamps mean|x|^alpha from below before normalising


def awq_scales(X: torch.Tensor, alpha: float) -> torch.Tensor:
    """Channel scales (in,) float32 of calibration inputs X (n, in): mean|X|^alpha, clamped, / sqrt(max * min)."""
    s = X.detach().float().abs().mean(dim=0).pow(alpha).clamp(min=MIN_SCALE)  # (in,)
    return s / (s.max() * s.min()).sqrt()


def output_error(gram: torch.Tensor, W: torch.Tensor, Wq: torch.Tensor) -> float:
    """||X W^T - X Wq^T||^2 (summed over rows and outputs) in float64, from the Gram matrix X^T X (in, in) in float64:
    sum over output rows r of d_r^T (X^T X) d_r with d = W - Wq, which costs in^2 per row instead of n * in."""
    D = W.double() - Wq.double()  # (out, in)
    return float(((D @ gram) * D).sum())


def awq_search(W: torch.Tensor, X: torch.Tensor, bits: int = 4, codebook: str | Codebook = "nf",
               blocksize: int | None = 64, *, n_grid: int = N_GRID, exponent_bits: int | None = None) -> torch.Tensor:
    """AWQ's scales (in,) float32 for W (out, in) on calibration inputs X (..., in), for the format of quantize.

    For several layers that read the same input (q, k and v after one LayerNorm), pass their weights concatenated
    along the output dimension.
    """
    return awq_search_errors(W, X, bits, codebook, blocksize, n_grid=n_grid, exponent_bits=exponent_bits)[0]


def awq_search_errors(W: torch.Tensor, X: torch.Tensor, bits: int = 4, codebook: str | Codebook = "nf",
                      blocksize: int | None = 64, *, n_grid: int = N_GRID, exponent_bits: int | None = None
                      ) -> tuple[torch.Tensor, float, list[float]]:
    """(best scales (in,), best alpha, output error of every alpha on the grid) of AWQ's search; see awq_search."""
    W = check_matrix(W)
    X = check_calibration(X, W.shape[1], "X").to(W.device)  # (n, in)
    n_grid = check_int("n_grid", n_grid, 1)
    Wf = W.detach().float()  # (out, in)
    gram = X.double().T @ X.double()  # (in, in) once for the whole grid
    errors = []
    best = (float("inf"), 0.0, torch.ones(W.shape[1], device=W.device))
    for step in range(n_grid):
        alpha = step / n_grid
        s = awq_scales(X, alpha)  # (in,)
        packed, state = quantize((Wf * s).contiguous(), bits, codebook, blocksize, exponent_bits=exponent_bits)
        Wq = dequantize(packed, state).float() / s  # (out, in) what the layer computes with on inputs x
        errors.append(output_error(gram, Wf, Wq))
        if errors[-1] < best[0]:
            best = (errors[-1], alpha, s)
    return best[2], best[1], errors


def awq_quantize(W: torch.Tensor, X: torch.Tensor, bits: int = 4, codebook: str | Codebook = "nf",
                 blocksize: int | None = 64, *, n_grid: int = N_GRID, exponent_bits: int | None = None
                 ) -> tuple[torch.Tensor, QuantState, torch.Tensor]:
    """(packed, state, scales): mini_llm's quantize of W diag(s) with AWQ's scales s; the layer's input must be
    divided by s (fold_scales does it in the previous operation), so x W^T ~ (x / s) dequantize(packed, state)^T."""
    scales = awq_search(W, X, bits, codebook, blocksize, n_grid=n_grid, exponent_bits=exponent_bits)
    scaled = (W.detach().float() * scales).to(W.dtype).contiguous()  # (out, in)
    packed, state = quantize(scaled, bits, codebook, blocksize, exponent_bits=exponent_bits)
    return packed, state, scales


def fold_scales(prev: nn.Module, linears: nn.Linear | Sequence[nn.Linear], scales: torch.Tensor) -> None:
    """Fold scales (in,) in place: the output of prev (LayerNorm, RMSNorm or Linear) is divided by s, the weight
    columns of each following nn.Linear multiplied by s; the composed function is unchanged (up to rounding)."""
    linears = [linears] if isinstance(linears, nn.Module) else list(linears)
    if not linears or not all(isinstance(m, nn.Linear) for m in linears):
        raise TypeError(f"linears must be an nn.Linear or a non-empty sequence of them, got {linears!r}")
    if not isinstance(scales, torch.Tensor) or scales.ndim != 1 or not scales.is_floating_point():
        raise ValueError(f"scales must be a 1-D floating-point tensor, got {getattr(scales, 'shape', scales)!r}")
    if not bool(torch.isfinite(scales).all()) or not bool((scales > 0).all()):
        raise ValueError("scales must be finite and > 0")
    size = scales.numel()
    for m in linears:
        if m.in_features != size:
            raise ValueError(f"each linear must have in_features={size} (len(scales)), got {m.in_features}")
    with torch.no_grad():
        _divide_output(prev, scales)
        for m in linears:
            m.weight.mul_(scales.to(m.weight)[None, :])  # (out, in) columns times s


def _divide_output(prev: nn.Module, scales: torch.Tensor) -> None:
    """Divide the output features of prev by scales (in place)."""
    size = scales.numel()
    if isinstance(prev, (nn.LayerNorm, nn.RMSNorm)) or _is_norm(prev):
        if prev.weight is None:
            raise ValueError(f"prev must have an elementwise affine weight to absorb the scales, got {prev}")
        if tuple(prev.weight.shape) != (size,):
            got = tuple(prev.weight.shape)
            raise ValueError(f"prev must normalise {size} features (len(scales)), got weight of shape {got}")
        params = [prev.weight, getattr(prev, "bias", None)]
    elif isinstance(prev, nn.Linear):
        if prev.out_features != size:
            raise ValueError(f"prev must have out_features={size} (len(scales)), got {prev.out_features}")
        params = [prev.weight, prev.bias]
    else:
        raise TypeError(f"prev must be an nn.LayerNorm, nn.RMSNorm, another norm with a 1-D weight, or nn.Linear, got "
                        f"{type(prev).__name__}")
    for p in params:
        if p is not None:
            s = scales.to(p)
            p.div_(s[:, None] if p.ndim == 2 else s)  # Linear weight (out, in): rows; vectors: elementwise


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer of another library (Llama's RMSNorm): an elementwise 1-D weight and no submodules."""
    weight = getattr(module, "weight", None)
    return isinstance(weight, nn.Parameter) and weight.ndim == 1 and not any(module.children())
