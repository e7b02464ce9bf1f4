"""Reference implementations in plain numpy (float64) and torch: the ground truth every fast kernel is tested against.

Two kinds: the float64 numpy functions (``*_reference``), the oracle of the tests, and the pure-torch operations
``quantize``, ``dequantize``, ``gemv`` and ``matmul`` with the registry's signatures (mini_llm.kernels.registry),
registered as the DEFAULT implementation that serves every device without a kernel of its own (any device torch
runs on, and any backend='reference' call).

Layout shared by every backend (bits k in 2..8):
- codes: one k-bit code per element of the flattened (row-major) tensor;
- packed: a dense bit stream, ceil(n * k / 8) bytes; element i takes bits i*k .. i*k+k-1 counted from the most
  significant bit of byte 0 (so at k = 4 the first element sits in the HIGH nibble, as in bitsandbytes);
- blocks: consecutive runs of `blocksize` flattened elements (the last may be shorter), one float32 absmax each,
  and with centering one float32 offset each: value = table[code] * absmax[block] + offset[block].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mini_llm.kernels.layout import Layout, layout_op

BACKENDS = ("auto", "reference")


def packed_nbytes(n: int, bits: int) -> int:
    """Bytes that n codes of `bits` bits take when densely packed."""
    return (n * bits + 7) // 8


def n_blocks(n: int, blocksize: int) -> int:
    """Number of blocks of `blocksize` flattened elements that cover n elements."""
    return (n + blocksize - 1) // blocksize


def pack_reference(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack codes (n,) < 2**bits into the dense MSB-first bit stream (ceil(n*bits/8),) uint8."""
    codes = np.asarray(codes, dtype=np.uint8)
    bit_matrix = (codes[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)) & 1  # (n, bits), MSB first
    return np.packbits(bit_matrix.reshape(-1))


def unpack_reference(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Unpack n codes (n,) uint8 from the dense MSB-first bit stream."""
    stream = np.unpackbits(np.asarray(packed, dtype=np.uint8))[: n * bits].reshape(n, bits)  # (n, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)  # (bits,)
    return (stream.astype(np.int64) @ weights).astype(np.uint8)


def quantize_reference(
    x: np.ndarray, table: np.ndarray, blocksize: int, centered: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Blockwise absmax quantization of flat x to the nearest table value: (codes, absmax, offset or None).

    Normalisation runs in float32 ((x - offset) / absmax) as the kernels do; ties between two codes go to the lower.
    """
    x = np.asarray(x, dtype=np.float32).reshape(-1)  # (n,)
    n = x.size
    nb = n_blocks(n, blocksize)
    padded = np.concatenate([x, np.full(nb * blocksize - n, np.nan, dtype=np.float32)]).reshape(nb, blocksize)
    if centered:
        hi, lo = np.nanmax(padded, axis=1), np.nanmin(padded, axis=1)  # (nb,)
        offset = (hi.astype(np.float32) + lo.astype(np.float32)) * np.float32(0.5)  # (nb,) midrange
    else:
        offset = np.zeros(nb, dtype=np.float32)
    shifted = padded - offset[:, None]  # (nb, blocksize)
    absmax = np.nanmax(np.abs(shifted), axis=1).astype(np.float32)  # (nb,)
    safe = np.where(absmax > 0, absmax, np.float32(1.0)).astype(np.float32)
    normed = (shifted / safe[:, None]).reshape(-1)[:n]  # (n,) float32
    table = np.asarray(table, dtype=np.float32)
    mids = (table[:-1] + table[1:]) * np.float32(0.5)  # (2**k - 1,) float32 decision boundaries
    codes = np.searchsorted(mids, normed, side="left").astype(np.uint8)  # number of boundaries strictly below
    return codes, absmax, (offset if centered else None)


def dequantize_reference(
    codes: np.ndarray, table: np.ndarray, absmax: np.ndarray, offset: np.ndarray | None, blocksize: int
) -> np.ndarray:
    """Flat float64 values (n,) of codes: table[code] * absmax[block] + offset[block]."""
    codes = np.asarray(codes).astype(np.int64)
    block = np.arange(codes.size) // blocksize  # (n,)
    values = np.asarray(table, dtype=np.float64)[codes] * np.asarray(absmax, dtype=np.float64)[block]
    if offset is not None:
        values = values + np.asarray(offset, dtype=np.float64)[block]
    return values


def gemv_reference(
    packed: np.ndarray, bits: int, shape: tuple[int, int], table: np.ndarray, absmax: np.ndarray,
    offset: np.ndarray | None, blocksize: int, x: np.ndarray,
) -> np.ndarray:
    """y = W @ x in float64 for the packed (N, K) matrix W and x of shape (K,) or (B, K); returns (N,) or (B, N)."""
    n_rows, n_cols = shape
    codes = unpack_reference(packed, bits, n_rows * n_cols)
    W = dequantize_reference(codes, table, absmax, offset, blocksize).reshape(n_rows, n_cols)  # (N, K)
    return np.asarray(x, dtype=np.float64) @ W.T  # (N,) or (B, N)


def unpack_torch(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Pure-torch unpacking of n codes (n,) int64 from the dense MSB-first bit stream, on packed's device."""
    groups = (n + 7) // 8  # 8 codes of k bits fill exactly k bytes
    padded = torch.zeros(groups * bits, dtype=torch.int64, device=packed.device)
    padded[: packed.numel()] = packed.reshape(-1)[: groups * bits].long()
    byte_shifts = 8 * torch.arange(bits - 1, -1, -1, device=packed.device)  # (k,)
    words = (padded.reshape(groups, bits) << byte_shifts).sum(dim=1, keepdim=True)  # (G, 1) big-endian k-byte words
    code_shifts = bits * torch.arange(7, -1, -1, device=packed.device)  # (8,)
    return ((words >> code_shifts) & (2**bits - 1)).reshape(-1)[:n]  # (n,)


def dequantize_torch(
    packed: torch.Tensor,
    bits: int,
    shape: tuple[int, ...],
    table: torch.Tensor,
    absmax: torch.Tensor,
    offset: torch.Tensor | None,
    blocksize: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pure-torch dequantization to `shape` and `dtype` (the on-the-fly reference path of QuantizedLinear)."""
    n = int(np.prod(shape))
    codes = unpack_torch(packed, bits, n)  # (n,)
    block = torch.arange(n, device=packed.device) // blocksize  # (n,)
    values = table.float()[codes] * absmax.float()[block]  # (n,)
    if offset is not None:
        values = values + offset.float()[block]
    return values.reshape(shape).to(dtype)


def pack_torch(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pure-torch packing of codes (n,) < 2**bits into the dense MSB-first bit stream (ceil(n*bits/8),) uint8."""
    n = codes.numel()
    groups = (n + 7) // 8  # 8 codes of k bits fill exactly k bytes
    padded = torch.zeros(groups * 8, dtype=torch.int64, device=codes.device)
    padded[:n] = codes.reshape(-1).long()
    code_shifts = bits * torch.arange(7, -1, -1, device=codes.device)  # (8,)
    words = (padded.reshape(groups, 8) << code_shifts).sum(dim=1, keepdim=True)  # (G, 1) disjoint bits: sum == or
    byte_shifts = 8 * torch.arange(bits - 1, -1, -1, device=codes.device)  # (k,)
    return ((words >> byte_shifts) & 255).to(torch.uint8).reshape(-1)[: packed_nbytes(n, bits)]


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend for the pure-torch reference must be one of {', '.join(BACKENDS)}, got {backend!r}")


def quantize(
    A: torch.Tensor, code: torch.Tensor, bits: int, blocksize: int | None, centered: bool, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Registry op quantize in pure torch on A's device: float32 normalisation, ties to the lower code (as the
    numpy quantize_reference and every kernel)."""
    _check_backend(backend)
    x = A.detach().reshape(-1).float()  # (n,)
    n = x.numel()
    block = n if blocksize is None else blocksize
    nb = n_blocks(n, block)
    blocks = F.pad(x, (0, nb * block - n)).reshape(nb, block)  # (nb, block)
    valid = (torch.arange(nb * block, device=x.device) < n).reshape(nb, block)
    if centered:
        hi = blocks.masked_fill(~valid, -torch.inf).amax(dim=1)  # (nb,)
        lo = blocks.masked_fill(~valid, torch.inf).amin(dim=1)
        offset = (hi + lo) * 0.5  # (nb,) float32 midrange
    else:
        offset = torch.zeros(nb, dtype=torch.float32, device=x.device)
    shifted = blocks - offset[:, None]  # (nb, block)
    absmax = shifted.abs().masked_fill(~valid, 0.0).amax(dim=1)  # (nb,)
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    normed = (shifted / safe[:, None]).reshape(-1)[:n]  # (n,) float32
    table = code.to(device=x.device, dtype=torch.float32)
    mids = ((table[:-1] + table[1:]) * 0.5).contiguous()  # (2**k - 1,) decision boundaries
    codes = torch.searchsorted(mids, normed, side="left")  # number of boundaries strictly below
    return pack_torch(codes, bits), absmax, (offset if centered else None)


@layout_op
def dequantize(layout: Layout, dtype: torch.dtype, backend: str) -> torch.Tensor:
    """Registry op dequantize in pure torch on packed's device."""
    _check_backend(backend)
    packed, bits, shape, code, absmax, offset, blocksize = layout
    device = packed.device
    offset = None if offset is None else offset.to(device)
    return dequantize_torch(packed, bits, shape, code.to(device), absmax.to(device), offset, blocksize, dtype)


@layout_op
def gemv(layout: Layout, x: torch.Tensor, backend: str) -> torch.Tensor:
    """Registry ops gemv and matmul in pure torch: the float32 weight dequantized, then x (K,) or (B, K) @ W.T."""
    W = dequantize(*layout, torch.float32, backend)  # (N, K)
    return F.linear(x.detach().float(), W)  # (N,) or (B, N)


matmul = gemv  # one dequantized weight serves every row of x
