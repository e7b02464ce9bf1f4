"""Triton GPU kernels for the k-bit layout of mini_llm.kernels.reference: quantize, dequantize, batch-1 GEMV and
small-batch GEMM, with the signatures of the kernel registry (mini_llm.kernels.registry registers them for "cuda").

Design (one program per tile of weight rows, the weight streamed once from memory):
- bits: 8 consecutive codes of k bits fill exactly k bytes, so a "group" of 8 codes is read as k byte loads that are
  assembled into one big-endian word (uint32 for k <= 4, uint64 above); code j of the group is
  (word >> k * (7 - j)) & (2**k - 1), constant shifts for every k in 2..8. Rows start on a group when K % 8 == 0;
  other shapes take a per-code path (two bytes around the code's first bit) that handles any alignment;
- scales: value = code[c] * absmax[block] (+ offset[block]) with the 2**k-entry table read through the L1 cache;
  the block index is col // BLOCKSIZE + row * blocks_per_row when blocks do not straddle rows (K % BLOCKSIZE == 0);
- quantize: one program per block finds its absmax (and midrange offset), then one program per QUANT_BLOCK elements
  normalises in float32 with round-to-nearest division (tl.math.div_rn, as numpy and Numba divide), counts the
  decision boundaries below each value (ties to the lower code) and packs each group of 8 codes into k bytes:
  codes and absmax are bit for bit those of the Numba kernels;
- accumulation is float32: batch 1 multiplies the dequantized tile by x and sums rows (memory-bound GEMV); small
  batches dequantize a (BLOCK_N, BLOCK_K) tile and call tl.dot (K, N tiles >= 16 as the tensor cores require).

The launchers accept tensors on any device: CUDA tensors run compiled (with autotuned tile sizes), CPU tensors only
make sense when TRITON_INTERPRET=1 was set before this module was imported (the tests run it that way).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from mini_llm.kernels.layout import Layout, layout_op

GEMV_DEFAULT = {"BLOCK_N": 4, "BLOCK_K": 256}  # tile of the batch-1 kernel off the autotuner (interpreter)
DOT_DEFAULT = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 64}  # tile of the small-batch kernel off the autotuner
DEQUANT_BLOCK = 1024  # elements per program of the dequantize kernel (a multiple of 8)
QUANT_BLOCK = 1024  # elements per program of the quantize kernel (a multiple of 8)
SCALE_CHUNK = 1024  # elements per step of the block-scale kernel (blocks of up to 4096, or the whole tensor)
BACKENDS = ("auto", "triton", "reference")  # "reference": the registry's pure-torch DEFAULT entry
DOT_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}

GEMV_CONFIGS = [
    triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
    for n, k, w in [(2, 512, 4), (2, 1024, 4), (4, 256, 4), (4, 512, 4), (8, 256, 4), (8, 512, 8), (16, 256, 8)]
]
DOT_CONFIGS = [
    triton.Config({"BLOCK_M": 16, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
    for n, k, w, s in [(32, 64, 4, 3), (64, 64, 4, 3), (64, 128, 4, 2), (128, 64, 4, 2), (128, 128, 8, 2)]
]


@triton.jit
def _group_codes(packed_ptr, byte_start, gmask, K_BITS: tl.constexpr):
    """Codes (R, G, 8) int32 of the groups whose first byte is byte_start (R, G); masked groups read as 0."""
    if K_BITS <= 4:
        word = tl.zeros(byte_start.shape, tl.uint32)  # (R, G) k bytes, first byte most significant
    else:
        word = tl.zeros(byte_start.shape, tl.uint64)
    for c in tl.static_range(K_BITS):
        byte = tl.load(packed_ptr + byte_start + c, mask=gmask, other=0)  # (R, G) uint8
        word = (word << 8) | byte.to(word.dtype)
    shifts = (K_BITS * (7 - tl.arange(0, 8))).to(word.dtype)  # (8,) code j sits k * (7 - j) bits up
    return ((word[:, :, None] >> shifts[None, None, :]) & ((1 << K_BITS) - 1)).to(tl.int32)


@triton.jit
def _tile_codes(packed_ptr, rows, k0, K, n_bytes, rmask, K_BITS: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr, ALIGNED: tl.constexpr):
    """Codes (BLOCK_N, BLOCK_K) int32 of weight rows (BLOCK_N,) and columns k0 .. k0 + BLOCK_K of a packed (N, K)."""
    if ALIGNED:  # K % 8 == 0: every row starts on a group of 8 codes = K_BITS bytes
        groups = k0 // 8 + tl.arange(0, BLOCK_K // 8)  # (G,)
        row_bytes = rows.to(tl.int64) * (K // 8 * K_BITS)  # (BLOCK_N,) int64 first byte of each row
        start = row_bytes[:, None] + groups[None, :] * K_BITS  # (BLOCK_N, G)
        gmask = rmask[:, None] & (groups < K // 8)[None, :]  # (BLOCK_N, G)
        codes = _group_codes(packed_ptr, start, gmask, K_BITS)  # (BLOCK_N, G, 8)
        return tl.reshape(codes, (BLOCK_N, BLOCK_K))  # (BLOCK_N, BLOCK_K)
    else:  # any K: each code from the two bytes that hold its first bit
        cols = k0 + tl.arange(0, BLOCK_K)  # (BLOCK_K,)
        mask = rmask[:, None] & (cols < K)[None, :]  # (BLOCK_N, BLOCK_K)
        bit = (rows.to(tl.int64)[:, None] * K + cols[None, :]) * K_BITS  # (BLOCK_N, BLOCK_K) int64
        byte = bit >> 3
        hi = tl.load(packed_ptr + byte, mask=mask, other=0).to(tl.int32)
        lo = tl.load(packed_ptr + byte + 1, mask=mask & (byte + 1 < n_bytes), other=0).to(tl.int32)
        shift = 16 - K_BITS - (bit & 7).to(tl.int32)  # (BLOCK_N, BLOCK_K)
        return (((hi << 8) | lo) >> shift) & ((1 << K_BITS) - 1)


@triton.jit
def _tile_values(code_ptr, absmax_ptr, offset_ptr, codes, rows, cols, mask, K, blocks_per_row,
                 BLOCKSIZE: tl.constexpr, ONE_BLOCK: tl.constexpr, ROW_BLOCKS: tl.constexpr,
                 HAS_OFFSET: tl.constexpr):
    """Float32 weights (BLOCK_N, BLOCK_K) = code[codes] * absmax[block] (+ offset[block]); 0 where masked."""
    if ONE_BLOCK:
        block = tl.zeros(codes.shape, tl.int32)  # (BLOCK_N, BLOCK_K) one scale for the whole tensor
    elif ROW_BLOCKS:  # blocks never straddle rows
        block = rows[:, None] * blocks_per_row + (cols // BLOCKSIZE)[None, :]  # (BLOCK_N, BLOCK_K)
    else:
        block = (rows.to(tl.int64)[:, None] * K + cols[None, :]) // BLOCKSIZE  # (BLOCK_N, BLOCK_K) int64
    table = tl.load(code_ptr + codes, mask=mask, other=0.0).to(tl.float32)  # (BLOCK_N, BLOCK_K)
    scale = tl.load(absmax_ptr + block, mask=mask, other=0.0).to(tl.float32)
    values = table * scale
    if HAS_OFFSET:
        values += tl.load(offset_ptr + block, mask=mask, other=0.0).to(tl.float32)
    return values


@triton.jit
def dequantize_kernel(packed_ptr, code_ptr, absmax_ptr, offset_ptr, out_ptr, n, n_bytes,
                      K_BITS: tl.constexpr, BLOCKSIZE: tl.constexpr, ONE_BLOCK: tl.constexpr,
                      HAS_OFFSET: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = code[c_i] * absmax[i // BLOCKSIZE] (+ offset) for the flat stream of n codes, BLOCK per program."""
    pid = tl.program_id(0).to(tl.int64)
    groups = pid * (BLOCK // 8) + tl.arange(0, BLOCK // 8)  # (G,) int64
    start = groups * K_BITS  # (G,) first byte of each group
    codes = _group_codes(packed_ptr, start[None, :], (start < n_bytes)[None, :], K_BITS)  # (1, G, 8)
    codes = tl.reshape(codes, (BLOCK,))  # (BLOCK,)
    idx = pid * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) int64 flat element index
    mask = idx < n
    if ONE_BLOCK:
        block = tl.zeros((BLOCK,), tl.int32)
    else:
        block = idx // BLOCKSIZE  # (BLOCK,)
    values = tl.load(code_ptr + codes, mask=mask, other=0.0) * tl.load(absmax_ptr + block, mask=mask, other=0.0)
    if HAS_OFFSET:
        values += tl.load(offset_ptr + block, mask=mask, other=0.0)
    tl.store(out_ptr + idx, values.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def gemv_kernel(packed_ptr, code_ptr, absmax_ptr, offset_ptr, x_ptr, y_ptr, N, K, n_bytes, blocks_per_row,
                stride_x, stride_y, K_BITS: tl.constexpr, BLOCKSIZE: tl.constexpr, ONE_BLOCK: tl.constexpr,
                ROW_BLOCKS: tl.constexpr, HAS_OFFSET: tl.constexpr, ALIGNED: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """y[b, rows] = W[rows] @ x[b] for one tile of BLOCK_N rows (program axis 0) and one input row b (axis 1)."""
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    rmask = rows < N
    acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)  # (BLOCK_K,)
        cmask = cols < K
        mask = rmask[:, None] & cmask[None, :]  # (BLOCK_N, BLOCK_K)
        codes = _tile_codes(packed_ptr, rows, k0, K, n_bytes, rmask, K_BITS, BLOCK_N, BLOCK_K, ALIGNED)
        w = _tile_values(code_ptr, absmax_ptr, offset_ptr, codes, rows, cols, mask, K, blocks_per_row,
                         BLOCKSIZE, ONE_BLOCK, ROW_BLOCKS, HAS_OFFSET)  # (BLOCK_N, BLOCK_K)
        xv = tl.load(x_ptr + b * stride_x + cols, mask=cmask, other=0.0).to(tl.float32)  # (BLOCK_K,)
        acc += w * xv[None, :]
    tl.store(y_ptr + b * stride_y + rows, tl.sum(acc, axis=1), mask=rmask)


@triton.jit
def gemm_kernel(packed_ptr, code_ptr, absmax_ptr, offset_ptr, x_ptr, y_ptr, M, N, K, n_bytes, blocks_per_row,
                stride_x, stride_y, K_BITS: tl.constexpr, BLOCKSIZE: tl.constexpr, ONE_BLOCK: tl.constexpr,
                ROW_BLOCKS: tl.constexpr, HAS_OFFSET: tl.constexpr, ALIGNED: tl.constexpr,
                DOT_DTYPE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """y[m, n] = x[m] @ W[n] for a (BLOCK_M, BLOCK_N) tile: dequantized weight tiles, tl.dot, float32 accumulation."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) weight rows = output columns
    ms = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) input rows
    rmask, mmask = rows < N, ms < M
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)  # (BLOCK_K,)
        cmask = cols < K
        mask = rmask[:, None] & cmask[None, :]  # (BLOCK_N, BLOCK_K)
        codes = _tile_codes(packed_ptr, rows, k0, K, n_bytes, rmask, K_BITS, BLOCK_N, BLOCK_K, ALIGNED)
        w = _tile_values(code_ptr, absmax_ptr, offset_ptr, codes, rows, cols, mask, K, blocks_per_row,
                         BLOCKSIZE, ONE_BLOCK, ROW_BLOCKS, HAS_OFFSET)  # (BLOCK_N, BLOCK_K)
        xt = tl.load(x_ptr + ms.to(tl.int64)[:, None] * stride_x + cols[None, :],
                     mask=mmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)  # (BLOCK_M, BLOCK_K)
        acc = tl.dot(xt.to(DOT_DTYPE), tl.trans(w.to(DOT_DTYPE)), acc)  # (BLOCK_M, BLOCK_N)
    out = y_ptr + ms.to(tl.int64)[:, None] * stride_y + rows[None, :]
    tl.store(out, acc, mask=mmask[:, None] & rmask[None, :])


@triton.jit
def block_scales_kernel(x_ptr, absmax_ptr, offset_ptr, n, blocksize, CENTERED: tl.constexpr, CHUNK: tl.constexpr):
    """absmax[b] = max |x - offset[b]| over block b (one program per block); offset[b] = midrange when CENTERED."""
    b = tl.program_id(0).to(tl.int64)
    start = b * blocksize
    stop = tl.minimum(start + blocksize, n)
    off = tl.zeros((), tl.float32)
    if CENTERED:
        hi = tl.full((), float("-inf"), tl.float32)
        lo = tl.full((), float("inf"), tl.float32)
        for c0 in range(start, stop, CHUNK):
            idx = c0 + tl.arange(0, CHUNK)  # (CHUNK,) int64
            mask = idx < stop
            v = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
            hi = tl.maximum(hi, tl.max(tl.where(mask, v, float("-inf")), axis=0))
            lo = tl.minimum(lo, tl.min(tl.where(mask, v, float("inf")), axis=0))
        off = (hi + lo) * 0.5
    amax = tl.zeros((), tl.float32)
    for c0 in range(start, stop, CHUNK):
        idx = c0 + tl.arange(0, CHUNK)
        mask = idx < stop
        v = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.max(tl.where(mask, tl.abs(v - off), 0.0), axis=0))
    tl.store(absmax_ptr + b, amax)
    tl.store(offset_ptr + b, off)


@triton.jit
def quantize_kernel(x_ptr, mids_ptr, absmax_ptr, offset_ptr, packed_ptr, n, n_bytes, blocksize, n_mids,
                    K_BITS: tl.constexpr, BLOCK: tl.constexpr):
    """Codes of BLOCK elements (boundaries below (x - offset) / absmax), packed 8 codes to K_BITS bytes."""
    pid = tl.program_id(0).to(tl.int64)
    idx = pid * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) int64 flat element index
    mask = idx < n
    v = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
    block = idx // blocksize
    off = tl.load(offset_ptr + block, mask=mask, other=0.0)
    amax = tl.load(absmax_ptr + block, mask=mask, other=1.0)
    normed = tl.math.div_rn(v - off, tl.where(amax > 0, amax, 1.0))  # (BLOCK,) IEEE division
    count = tl.zeros((BLOCK,), tl.int32)
    for j in range(n_mids):  # ascending boundaries: code = how many lie strictly below
        count += (normed > tl.load(mids_ptr + j)).to(tl.int32)
    codes = tl.reshape(tl.where(mask, count, 0).to(tl.int64), (BLOCK // 8, 8))  # (G, 8) codes past n pack as 0
    shifts = (K_BITS * (7 - tl.arange(0, 8))).to(tl.int64)  # (8,) code j sits k * (7 - j) bits up
    word = tl.sum(codes << shifts[None, :], axis=1)  # (G,) disjoint bits: the sum is the bitwise or
    groups = pid * (BLOCK // 8) + tl.arange(0, BLOCK // 8)  # (G,) int64
    for c in tl.static_range(K_BITS):
        byte = groups * K_BITS + c  # (G,) byte c of each group, most significant first
        tl.store(packed_ptr + byte, ((word >> (8 * (K_BITS - 1 - c))) & 255).to(tl.uint8), mask=byte < n_bytes)


gemv_autotuned = triton.autotune(GEMV_CONFIGS, key=["N", "K", "K_BITS", "ALIGNED"])(gemv_kernel)
gemm_autotuned = triton.autotune(DOT_CONFIGS, key=["N", "K", "K_BITS", "ALIGNED"])(gemm_kernel)




def _check_backend(backend: str) -> None:
    if backend not in BACKENDS[:2]:
        raise ValueError(f"backend for CUDA tensors must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _scales(code: torch.Tensor, absmax: torch.Tensor, offset: torch.Tensor | None, device: torch.device):
    """code, absmax and offset (absmax again as a dummy pointer when absent) as float32 on device, contiguous."""
    code = code.to(device=device, dtype=torch.float32).contiguous()
    absmax = absmax.to(device=device, dtype=torch.float32).contiguous()
    offset = absmax if offset is None else offset.to(device=device, dtype=torch.float32).contiguous()
    return code, absmax, offset


def _block_args(blocksize: int, numel: int, has_offset: bool, n_cols: int | None = None) -> dict[str, Any]:
    """The scale-indexing constexprs: BLOCKSIZE, ONE_BLOCK, HAS_OFFSET and (with n_cols) ROW_BLOCKS; blocksize as
    Layout resolves it (numel for one block over the whole tensor)."""
    one = blocksize >= numel
    args = {"BLOCKSIZE": 1 if one else blocksize, "ONE_BLOCK": one, "HAS_OFFSET": has_offset}
    if n_cols is not None:
        args["ROW_BLOCKS"] = not one and n_cols % blocksize == 0
    return args


def quantize(
    A: torch.Tensor, code: torch.Tensor, bits: int, blocksize: int | None, centered: bool, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Registry op quantize: (packed, absmax, offset) of the flattened A on A's device, Triton kernels."""
    _check_backend(backend)
    x = A.detach().reshape(-1).float().contiguous()  # (n,)
    n = x.numel()
    block = n if blocksize is None else int(blocksize)
    nb = (n + block - 1) // block
    absmax = torch.empty(nb, dtype=torch.float32, device=x.device)
    offset = torch.empty(nb, dtype=torch.float32, device=x.device)
    block_scales_kernel[(nb,)](x, absmax, offset, n, block, CENTERED=centered, CHUNK=SCALE_CHUNK)
    table = code.to(device=x.device, dtype=torch.float32)
    mids = ((table[:-1] + table[1:]) * 0.5).contiguous()  # (2**k - 1,) decision boundaries
    n_bytes = (n * bits + 7) // 8
    packed = torch.empty(n_bytes, dtype=torch.uint8, device=x.device)
    quantize_kernel[(triton.cdiv(n, QUANT_BLOCK),)](
        x, mids, absmax, offset, packed, n, n_bytes, block, mids.numel(), K_BITS=bits, BLOCK=QUANT_BLOCK
    )
    return packed, absmax, (offset if centered else None)


@layout_op
def dequantize(layout: Layout, dtype: torch.dtype, backend: str) -> torch.Tensor:
    """Registry op dequantize: the (shape) tensor in dtype that packed k-bit codes stand for, on packed's device."""
    _check_backend(backend)
    packed, bits, shape, code, absmax, offset, blocksize = layout
    n = layout.numel
    out = torch.empty(n, dtype=dtype, device=packed.device)  # (n,)
    scales = _scales(code, absmax, offset, packed.device)
    packed = packed.contiguous()
    grid = (triton.cdiv(n, DEQUANT_BLOCK),)
    dequantize_kernel[grid](
        packed, *scales, out, n, packed.numel(), K_BITS=bits, BLOCK=DEQUANT_BLOCK,
        **_block_args(blocksize, n, offset is not None),
    )
    return out.reshape(shape)


def _launch(layout: Layout, x: torch.Tensor, backend: str, dot: bool) -> torch.Tensor:
    """y = W @ x in float32 for x (K,) -> (N,) or (B, K) -> (B, N): tl.dot tiles when dot and B > 1, else the
    batch-1 kernel once per row of x."""
    _check_backend(backend)
    packed, bits, (n_rows, n_cols), code, absmax, offset, blocksize = layout
    squeeze = x.ndim == 1
    x2 = (x.reshape(1, -1) if squeeze else x).contiguous()  # (B, K)
    if x2.dtype not in DOT_DTYPES:
        x2 = x2.float()
    batch = x2.shape[0]
    y = torch.empty(batch, n_rows, dtype=torch.float32, device=x2.device)  # (B, N)
    scales = _scales(code, absmax, offset, packed.device)
    packed = packed.contiguous()
    blocks = _block_args(blocksize, n_rows * n_cols, offset is not None, n_cols)
    per_row = n_cols // blocks["BLOCKSIZE"] if blocks["ROW_BLOCKS"] else 0
    common = (packed, *scales, x2, y)
    flags = {"K_BITS": bits, "ALIGNED": n_cols % 8 == 0, **blocks}
    tuned = packed.device.type == "cuda"
    if batch == 1 or not dot:
        kernel = gemv_autotuned if tuned else gemv_kernel

        def grid(meta: dict[str, Any]) -> tuple[int, int]:
            return (triton.cdiv(n_rows, meta["BLOCK_N"]), batch)

        extra = {} if tuned else GEMV_DEFAULT
        kernel[grid](*common, n_rows, n_cols, packed.numel(), per_row, x2.stride(0), y.stride(0), **flags, **extra)
    else:
        kernel = gemm_autotuned if tuned else gemm_kernel

        def grid(meta: dict[str, Any]) -> tuple[int, int]:
            return (triton.cdiv(n_rows, meta["BLOCK_N"]), triton.cdiv(batch, meta["BLOCK_M"]))

        extra = {} if tuned else DOT_DEFAULT
        kernel[grid](
            *common, batch, n_rows, n_cols, packed.numel(), per_row, x2.stride(0), y.stride(0),
            DOT_DTYPE=DOT_DTYPES[x2.dtype], **flags, **extra,
        )
    return y.reshape(n_rows) if squeeze else y


@layout_op
def gemv(layout: Layout, x: torch.Tensor, backend: str) -> torch.Tensor:
    """Registry op gemv: the fused dequantize-GEMV, one program row per row of x (memory-bound at batch 1)."""
    return _launch(layout, x, backend, dot=False)


@layout_op
def matmul(layout: Layout, x: torch.Tensor, backend: str) -> torch.Tensor:
    """Registry op matmul: dequantized (BLOCK_N, BLOCK_K) weight tiles through tl.dot for a small batch of rows."""
    return _launch(layout, x, backend, dot=True)
