"""GPTQ (Frantar, Ashkboos, Hoefler & Alistarh, ICLR 2023) into mini_llm's blockwise absmax k-bit formats.

Column by column, each weight column is rounded to the nearest codebook value times its block's absmax, and the
rounding error is carried to the columns not yet quantized through the rows of the upper Cholesky factor of the
inverse Hessian H^-1, H = 2 X^T X / n of the layer's calibration inputs X (n, in), with dampening and lazy batch
updates of 128 columns as in the reference code (github.com/IST-DASLab/gptq, gptq.py, ``static_groups=False``).

The blocks are mini_llm's: consecutive elements of the flattened row-major weight (out, in). A block's absmax is
taken from the current (error-updated) weights when GPTQ reaches the block's first column (with act-order: the first
of its columns in processing order), so the result is exactly representable by the state GPTQ returns:
``dequantize(*quantize_with_scales(Q, state.absmax, ...))`` gives Q back. Blocks must lie inside a row (blocksize
divides in_features) or cover whole rows (blocksize None or a multiple of in_features). The computation runs in
float64 on W's device. Centered (midrange) blocks are not supported.
"""

from __future__ import annotations

import torch

from mini_llm.helpers import check_number
from mini_llm.quant.blockwise import dequantize, quantize
from mini_llm.quant.checks import check_bits, check_blocksize, check_layer_input, check_weight
from mini_llm.quant.codebooks import Codebook
from mini_llm.quant.codebooks import codebook as make_codebook
from mini_llm.quant.packing import pack_codes
from mini_llm.quant.state import QuantState

LAZY_BATCH = 128  # columns per lazy batch update (the reference code's blocksize)
HESSIAN_CHUNK = 65536  # calibration rows per float64 chunk of X^T X


class CodeGrid:
    """Round to the nearest codebook value times a scale, as the kernels do: float32 normalisation, ties to the lower
    code, and only codes with |value| <= 1 (int's lowest code -2**(k-1)/(2**(k-1)-1) is never an absmax code)."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table.float()  # (2**k,) sorted ascending
        self.mids = ((self.table[:-1] + self.table[1:]) * 0.5).contiguous()  # (2**k - 1,) decision boundaries
        inside = (self.table.abs() <= 1.0).nonzero().flatten()
        self.low, self.high = int(inside.min()), int(inside.max())

    def round(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (int64) and float32 values table[code] * scale of x, each element with its own float32 scale."""
        scale = scale.float()
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        normed = (x.float() / safe).contiguous()  # float32 as in the kernels
        codes = torch.searchsorted(self.mids, normed, side="left").clamp(self.low, self.high)
        return codes, self.table[codes] * scale  # the product dequantize computes, in float32


def check_calibration(X: object, in_features: int, name: str = "X", min_rows: int = 1) -> torch.Tensor:
    """X (..., in_features) as a finite (n, in_features) tensor with n >= min_rows; TypeError/ValueError naming X."""
    X = check_layer_input(X, in_features, name)
    X2 = check_weight(X.detach().reshape(-1, in_features).contiguous(), name)  # (n, in): finite, non-empty
    if X2.shape[0] < min_rows:
        raise ValueError(
            f"{name} must hold at least {min_rows} rows (calibration samples, one per token) for in_features="
            f"{in_features}, got {X2.shape[0]}: the Hessian 2 X^T X / n has rank <= n, and with fewer rows than inputs "
            "the dampening alone fills its null space, so GPTQ would fit noise; collect more calibration tokens"
        )
    return X2


def check_matrix(W: object, name: str = "W") -> torch.Tensor:
    """W as a finite, non-empty, contiguous (out, in) floating-point tensor; ValueError naming W."""
    W = check_weight(W, name)
    if W.ndim != 2:
        raise ValueError(f"{name} must be a 2-D weight (out_features, in_features), got shape {tuple(W.shape)}")
    return W


def hessian(X: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X / n (in, in) float64 of calibration inputs X (n, in), accumulated in chunks of rows."""
    n, d = X.shape
    H = torch.zeros(d, d, dtype=torch.float64, device=X.device)
    for start in range(0, n, HESSIAN_CHUNK):
        chunk = X[start : start + HESSIAN_CHUNK].double()  # (<= HESSIAN_CHUNK, in)
        H += chunk.T @ chunk
    return H * (2.0 / n)


def quantize_with_scales(
    W: torch.Tensor, absmax: torch.Tensor, bits: int, codebook: str | Codebook, blocksize: int | None
) -> tuple[torch.Tensor, QuantState]:
    """Quantize W blockwise with given per-block scales (absmax) instead of each block's own absmax: (packed, state).

    Each element goes to the nearest code (|value| <= 1) of its block's normalised value, as quantize would with that
    absmax. codebook is a fixed name (int, float, dynamic, nf) or a Codebook (a quantile table must be passed as one).
    """
    bits = check_bits(bits)
    blocksize = check_blocksize(blocksize)
    W = check_weight(W)
    book = _fixed_codebook(codebook, bits)
    x = W.detach().reshape(-1)  # (n,)
    block = x.numel() if blocksize is None else blocksize
    n_blocks = -(-x.numel() // block)
    if not isinstance(absmax, torch.Tensor) or absmax.dtype != torch.float32 or tuple(absmax.shape) != (n_blocks,):
        got = f"{getattr(absmax, 'dtype', type(absmax).__name__)} {tuple(getattr(absmax, 'shape', ()))}"
        raise ValueError(f"absmax must be a float32 tensor of shape ({n_blocks},) (one per block), got {got}")
    if not bool(torch.isfinite(absmax).all()) or bool((absmax < 0).any()):
        raise ValueError("absmax must be finite and >= 0")
    absmax = absmax.to(x.device)
    scale = absmax.repeat_interleave(block)[: x.numel()]  # (n,) each element's block scale
    codes, _ = CodeGrid(book.tensor().to(x.device)).round(x, scale)
    return pack_codes(codes.to(torch.uint8), bits), _state(W, bits, blocksize, book, absmax)


def _fixed_codebook(codebook: str | Codebook, bits: int) -> Codebook:
    if isinstance(codebook, Codebook):
        if codebook.bits != bits:
            raise ValueError(f"codebook has {codebook.bits} bits but bits={bits}")
        return codebook
    if codebook == "quantile":
        raise ValueError(
            "codebook 'quantile' depends on the data: pass its table as a Codebook, "
            "e.g. Codebook(state.codebook, state.bits, state.code.numpy())"
        )
    return make_codebook(codebook, bits)  # ValueError naming the allowed codebooks


def _state(W: torch.Tensor, bits: int, blocksize: int | None, book: Codebook, absmax: torch.Tensor) -> QuantState:
    code = book.tensor().to(absmax.device)
    return QuantState(tuple(W.shape), W.dtype, bits, blocksize, book.name, code, absmax.float().contiguous())


def gptq_quantize(
    W: torch.Tensor,
    X: torch.Tensor,
    bits: int = 4,
    codebook: str | Codebook = "nf",
    blocksize: int | None = 64,
    *,
    percdamp: float = 0.01,
    act_order: bool = False,
    exponent_bits: int | None = None,
) -> tuple[torch.Tensor, QuantState]:
    """GPTQ-quantize W (out, in) on calibration inputs X (..., in) with >= in rows: (packed, QuantState).

    bits, codebook, blocksize (and exponent_bits for 'float') name a mini_llm format as in quantize; blocksize must
    divide in_features or be a multiple of it (or None). percdamp in (0, 1]: lambda = percdamp * mean(diag H) is added
    to H's diagonal. act_order: columns in order of decreasing diag H (blocks keep their places in the row).
    """
    W = check_matrix(W)
    out_features, in_features = W.shape
    X = check_calibration(X, in_features, "X", min_rows=in_features)
    percdamp = check_number("percdamp", percdamp, 0.0, 1.0, low_open=True)
    if not isinstance(act_order, bool):
        raise ValueError(f"act_order must be True or False, got {act_order!r}")
    _, rtn_state = quantize(W, bits, codebook, blocksize, exponent_bits=exponent_bits)  # checks; resolves the table
    group, rows = _block_geometry(blocksize, in_features, out_features)
    book = Codebook(rtn_state.codebook, bits, rtn_state.code.cpu().numpy())
    grid = CodeGrid(rtn_state.code.to(W.device))

    H = hessian(X.to(W.device))  # (in, in) float64
    Wd = W.detach().double().clone()  # (out, in)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    Wd[:, dead] = 0.0
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if act_order else torch.arange(in_features)
    perm = perm.to(W.device)
    Wd, H = Wd[:, perm], H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(in_features, dtype=H.dtype, device=H.device)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)  # (in, in) upper

    n_groups = in_features // group
    scales = torch.zeros(out_features, n_groups, dtype=torch.float32, device=W.device)  # (out, groups)
    done = torch.zeros(n_groups, dtype=torch.bool)
    if rows is not None:  # blocks of whole rows: every absmax is known before the first column
        scales[:, 0] = _row_block_absmax(Wd, rows)
        done[:] = True
    group_of = (perm // group).cpu()  # (in,) block column of each processed position
    codes = _gptq_loop(Wd, Hinv, grid, scales, done, group_of)  # (out, in) in processing order
    codes = codes[:, torch.argsort(perm)]  # (out, in) in the original column order
    absmax = scales.reshape(-1) if rows is None else scales[::rows, 0]
    return pack_codes(codes.to(torch.uint8).reshape(-1), bits), _state(W, bits, blocksize, book, absmax)


def gptq_weight(W: torch.Tensor, X: torch.Tensor, bits: int = 4, codebook: str | Codebook = "nf",
                blocksize: int | None = 64, **options: object) -> torch.Tensor:
    """The dequantized GPTQ weight (out, in) in W's dtype: dequantize(*gptq_quantize(W, X, ...))."""
    return dequantize(*gptq_quantize(W, X, bits, codebook, blocksize, **options))


def _block_geometry(blocksize: int | None, in_features: int, out_features: int) -> tuple[int, int | None]:
    """(columns per block column, rows per block or None): blocks inside a row, or blocks of whole rows."""
    if blocksize is not None and in_features % blocksize == 0:
        return blocksize, None
    if blocksize is None or blocksize % in_features == 0:
        return in_features, out_features if blocksize is None else blocksize // in_features
    raise ValueError(
        f"blocksize must divide in_features={in_features} or be a multiple of it (or be None) for GPTQ, whose blocks "
        f"must lie inside a row or cover whole rows, got {blocksize}"
    )


def _row_block_absmax(W: torch.Tensor, rows: int) -> torch.Tensor:
    """Each row's block absmax (out,) float32 when blocks are `rows` whole rows (the last may hold fewer)."""
    per_row = W.abs().amax(dim=1)  # (out,)
    block = torch.arange(W.shape[0], device=W.device) // rows  # (out,)
    amax = torch.zeros(int(block[-1]) + 1, dtype=W.dtype, device=W.device).scatter_reduce(0, block, per_row, "amax")
    return amax[block].float()


def _gptq_loop(
    W: torch.Tensor, Hinv: torch.Tensor, grid: CodeGrid, scales: torch.Tensor, done: torch.Tensor,
    group_of: torch.Tensor,
) -> torch.Tensor:
    """GPTQ's column loop with lazy batch updates; W (out, in) float64 is updated in place; codes (out, in) int64."""
    out_features, in_features = W.shape
    codes = torch.zeros(out_features, in_features, dtype=torch.int64, device=W.device)
    positions = [(group_of == g).nonzero().flatten().tolist() for g in range(scales.shape[1])]
    for i1 in range(0, in_features, LAZY_BATCH):
        i2 = min(i1 + LAZY_BATCH, in_features)
        W1 = W[:, i1:i2].clone()  # (out, count) the batch, updated column by column
        Err1 = torch.zeros_like(W1)  # (out, count) scaled errors, applied to W[:, i2:] at the batch end
        Hinv1 = Hinv[i1:i2, i1:i2]  # (count, count)
        for i in range(i2 - i1):
            g = int(group_of[i1 + i])
            if not done[g]:  # first column of this block: its absmax from the current weights of all its columns
                current = _current_columns(W, W1, Err1, Hinv, i1, i, positions[g])  # (out, block columns)
                scales[:, g] = current.abs().amax(dim=1).float()
                done[g] = True
            w = W1[:, i]  # (out,)
            codes[:, i1 + i], q = grid.round(w, scales[:, g])
            err = (w - q.double()) / Hinv1[i, i]  # (out,)
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return codes


def _current_columns(
    W: torch.Tensor, W1: torch.Tensor, Err1: torch.Tensor, Hinv: torch.Tensor, i1: int, i: int, cols: list[int]
) -> torch.Tensor:
    """The current weights (out, len(cols)) of unprocessed positions cols (>= i1 + i): those in the batch from W1, those
    after it from W with the batch's pending updates (columns i1 .. i1+i-1) applied."""
    i2 = i1 + W1.shape[1]
    inside = [c - i1 for c in cols if c < i2]
    after = torch.tensor([c for c in cols if c >= i2], dtype=torch.long, device=W.device)
    parts = [W1[:, inside]]
    if after.numel():
        parts.append(W[:, after] - Err1[:, :i] @ Hinv[i1 : i1 + i][:, after])
    return torch.cat(parts, dim=1)
