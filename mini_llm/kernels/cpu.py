"""Numba CPU kernels: quantize to the nearest code, pack/unpack for every k in 2..8, dequantize, and k-bit GEMV.

Two layers. The ``*_array`` functions, ``pack`` and ``unpack`` work on numpy arrays in the layout described in
mini_llm.kernels.reference. ``quantize``, ``dequantize``, ``gemv`` and ``matmul`` wrap them with the signatures of the
kernel registry (mini_llm.kernels.registry, which registers them for "cpu" and checks their arguments first) on
torch tensors. The GEMV has three backends: ``simd`` (explicit AVX-512 or AVX2 vectors from
mini_llm.kernels.cpu_simd), ``portable`` (plain Numba, any CPU and any shape) and ``int8`` (x rounded to int8 and
multiplied by integer dot products, mini_llm.kernels.cpu_int8: k = 4 on a CPU with AVX-512 VNNI or AVX2, a small
extra error for speed, never chosen by ``auto``). ``auto`` picks simd where it applies; at small batches every backend
decodes a weight row once for all rows of x, so matmul is gemv.
"""

from __future__ import annotations

import os

import numba
import numpy as np
import torch
from numba import njit, prange

from mini_llm.kernels import cpu_int8, cpu_simd
from mini_llm.kernels.layout import Layout, layout_op
from mini_llm.kernels.reference import n_blocks, packed_nbytes

# The omp threading layer starts a parallel region in microseconds (workqueue: ~100 µs); tbb if present is fine too.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

BACKENDS = ("auto", "simd", "portable", "int8")


TILE = 4096  # elements per work item of the quantizer: a multiple of every block size, small enough for L1


@njit(parallel=True, cache=True)
def _block_scales(x, blocksize, centered, absmax, offset):  # pragma: no cover - compiled
    """absmax (and with centering the midrange offset) of every block."""
    n = x.size
    for b in prange(absmax.size):
        start = b * blocksize
        stop = min(n, start + blocksize)
        off = np.float32(0.0)
        if centered:
            hi = x[start]
            lo = x[start]
            for i in range(start, stop):
                hi = max(hi, x[i])
                lo = min(lo, x[i])
            off = np.float32((hi + lo) * np.float32(0.5))
        amax = np.float32(0.0)
        for i in range(start, stop):
            amax = max(amax, abs(np.float32(x[i] - off)))
        absmax[b] = amax
        offset[b] = off


@njit(parallel=True, cache=True)
def _nearest_codes(x, mids, bits, blocksize, absmax, offset, codes):  # pragma: no cover - compiled
    """codes[i] = number of midpoints below (x[i] - offset) / absmax, tile by tile of TILE elements.

    Up to 5 bits the count is a vectorised scan over all midpoints; above, a branch-free binary search.
    """
    n = x.size
    n_tiles = (n + TILE - 1) // TILE
    n_mids = mids.size
    half = 1 << (bits - 1)
    for t in prange(n_tiles):
        start = t * TILE
        stop = min(n, start + TILE)
        v = np.empty(stop - start, dtype=np.float32)
        seg = start
        while seg < stop:  # one block (or the part of a whole-tensor block inside this tile) at a time
            b = seg // blocksize
            seg_stop = min(stop, (b + 1) * blocksize)
            off = offset[b]
            scale = absmax[b] if absmax[b] > 0 else np.float32(1.0)
            for i in range(seg, seg_stop):
                v[i - start] = np.float32(np.float32(x[i] - off) / scale)
            seg = seg_stop
        if bits <= 5:
            count = np.zeros(stop - start, dtype=np.int32)
            for j in range(n_mids):
                m = mids[j]
                for i in range(stop - start):
                    count[i] += np.int32(v[i] > m)
            for i in range(stop - start):
                codes[start + i] = count[i]
        else:
            for i in range(stop - start):
                idx = 0
                step = half
                while step > 0:
                    idx += step * np.int32(v[i] > mids[idx + step - 1])
                    step >>= 1
                codes[start + i] = idx


@njit(parallel=True, cache=True)
def _pack(codes, bits, packed):  # pragma: no cover - compiled
    """Dense MSB-first packing: each group of 8 codes becomes `bits` bytes."""
    n = codes.size
    n_groups = (n + 7) // 8
    nbytes = packed.size
    for g in prange(n_groups):
        word = np.uint64(0)
        for j in range(8):
            i = g * 8 + j
            c = np.uint64(codes[i]) if i < n else np.uint64(0)
            word = (word << np.uint64(bits)) | c
        for j in range(bits):
            byte = g * bits + j
            if byte < nbytes:
                packed[byte] = np.uint8((word >> np.uint64(8 * (bits - 1 - j))) & np.uint64(255))


@njit(inline="always", cache=True)
def _group_word(packed, g, bits, nbytes):  # pragma: no cover - compiled
    """The `bits` bytes of group g (8 codes) as one MSB-first word; bytes past nbytes read as 0."""
    word = np.uint64(0)
    for j in range(bits):
        byte = g * bits + j
        b = np.uint64(packed[byte]) if byte < nbytes else np.uint64(0)
        word = (word << np.uint64(8)) | b
    return word


@njit(parallel=True, cache=True)
def _unpack(packed, bits, codes):  # pragma: no cover - compiled
    """Inverse of _pack: `bits` bytes give 8 codes."""
    n = codes.size
    n_groups = (n + 7) // 8
    nbytes = packed.size
    mask = np.uint64((1 << bits) - 1)
    for g in prange(n_groups):
        word = _group_word(packed, g, bits, nbytes)
        for j in range(8):
            i = g * 8 + j
            if i < n:
                codes[i] = np.uint8((word >> np.uint64(bits * (7 - j))) & mask)


@njit(parallel=True, cache=True)
def _dequantize(packed, bits, table, absmax, offset, blocksize, out):  # pragma: no cover - compiled
    """out[i] = table[code_i] * absmax[i // blocksize] + offset[i // blocksize], decoding 8 codes per group."""
    n = out.size
    n_groups = (n + 7) // 8
    nbytes = packed.size
    mask = np.uint64((1 << bits) - 1)
    for g in prange(n_groups):
        word = _group_word(packed, g, bits, nbytes)
        for j in range(8):
            i = g * 8 + j
            if i < n:
                code = np.int32((word >> np.uint64(bits * (7 - j))) & mask)
                blk = i // blocksize
                out[i] = table[code] * absmax[blk] + offset[blk]


def _build_portable(bits: int):
    """The portable GEMV for one k: out (B, N) = x (B, K) @ W.T for any shape and block layout.

    k is a compile-time constant (one cached kernel per k), so the byte and code loops unroll to fixed shifts. Each
    row is decoded to codes (k = 8 and 4 byte by byte, other k 8 codes from k bytes when the row starts on a whole
    byte group, code by code otherwise), then looked up (an evenly spaced table is computed, base + code * step) and
    scaled block by block into a float32 row that every x row is dotted with.
    """
    mask = (1 << bits) - 1

    @njit(parallel=True, fastmath=True, cache=True)
    def kernel(packed, n_rows, n_cols, table, affine, absmax, offset, blocksize, x, out):  # pragma: no cover
        batch = x.shape[0]
        nbytes = packed.size
        grouped = n_cols % 8 == 0
        base = table[0]
        step = (table[table.size - 1] - table[0]) / np.float32(max(table.size - 1, 1))
        for r in prange(n_rows):
            codes = np.empty(n_cols, dtype=np.int32)
            row = np.empty(n_cols, dtype=np.float32)
            start = r * n_cols
            # Loops index slices from 0: with `start + c` Numba's negative-index wraparound keeps LLVM from
            # vectorising (8-bit decode 8.8 -> 1.5 ms, affine values 14 -> 2.8 ms at 4096x4096).
            if grouped:
                seg = packed[start * bits // 8 : (start + n_cols) * bits // 8]
                if bits == 8:
                    for c in range(n_cols):
                        codes[c] = np.int32(seg[c])
                elif bits == 4:
                    for h in range(n_cols // 2):
                        byte = np.int32(seg[h])
                        codes[2 * h] = byte >> 4
                        codes[2 * h + 1] = byte & 15
                else:
                    for g in range(n_cols // 8):
                        word = np.uint64(0)
                        for j in range(bits):
                            word = (word << np.uint64(8)) | np.uint64(seg[g * bits + j])
                        for j in range(8):
                            codes[8 * g + j] = np.int32((word >> np.uint64(bits * (7 - j))) & np.uint64(mask))
            else:
                for c in range(n_cols):
                    bit = (start + c) * bits
                    byte = bit >> 3
                    word32 = np.int32(packed[byte]) << 8
                    if byte + 1 < nbytes:
                        word32 |= np.int32(packed[byte + 1])
                    codes[c] = (word32 >> (16 - (bit & 7) - bits)) & mask
            c = 0
            while c < n_cols:  # one block (or the part of a block inside this row) at a time
                blk = (start + c) // blocksize
                stop = min(n_cols, (blk + 1) * blocksize - start)
                s = absmax[blk]
                o = offset[blk]
                block_codes = codes[c:stop]
                block_row = row[c:stop]
                if affine:  # evenly spaced table: (base + code * step) * s + o, no look-up
                    a = step * s
                    b = base * s + o
                    for i in range(stop - c):
                        block_row[i] = np.float32(block_codes[i]) * a + b
                else:
                    for i in range(stop - c):
                        block_row[i] = table[block_codes[i]] * s + o
                c = stop
            for bb in range(batch):
                xb = x[bb]
                acc = np.float32(0.0)
                for i in range(n_cols):
                    acc += row[i] * xb[i]
                out[bb, r] = acc

    return kernel


_PORTABLE: dict[int, object] = {}


def _gemv_portable(packed, bits, n_rows, n_cols, table, absmax, offset, blocksize, x, out):
    """Run the portable GEMV kernel for k = bits (compiled on first use)."""
    if bits not in _PORTABLE:
        _PORTABLE[bits] = _build_portable(bits)
    affine = cpu_simd.is_affine(table)
    _PORTABLE[bits](packed, n_rows, n_cols, table, affine, absmax, offset, blocksize, x, out)


def quantize_array(
    x: np.ndarray, table: np.ndarray, bits: int, blocksize: int, centered: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Blockwise absmax quantization of flat float32 x (n,) to the nearest of table (2**bits,): (codes, absmax, offset).

    offset is None unless centered (then each block is shifted by its midrange before scaling).
    """
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    table = np.ascontiguousarray(table, dtype=np.float32)
    mids = ((table[:-1] + table[1:]) * np.float32(0.5)).astype(np.float32)  # (2**k - 1,) decision boundaries
    nb = n_blocks(x.size, blocksize)
    codes = np.empty(x.size, dtype=np.uint8)
    absmax = np.empty(nb, dtype=np.float32)
    offset = np.empty(nb, dtype=np.float32)
    _block_scales(x, blocksize, centered, absmax, offset)
    _nearest_codes(x, mids, bits, blocksize, absmax, offset, codes)
    return codes, absmax, (offset if centered else None)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack codes (n,) uint8 < 2**bits into the dense MSB-first bit stream (ceil(n*bits/8),) uint8."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8).reshape(-1)
    packed = np.empty(packed_nbytes(codes.size, bits), dtype=np.uint8)
    _pack(codes, bits, packed)
    return packed


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Unpack n codes (n,) uint8 from the dense bit stream."""
    codes = np.empty(n, dtype=np.uint8)
    _unpack(np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1), bits, codes)
    return codes


def _offsets(offset: np.ndarray | None, absmax: np.ndarray) -> np.ndarray:
    return np.zeros_like(absmax) if offset is None else np.ascontiguousarray(offset, dtype=np.float32)


def dequantize_array(
    packed: np.ndarray,
    bits: int,
    n: int,
    table: np.ndarray,
    absmax: np.ndarray,
    offset: np.ndarray | None,
    blocksize: int,
) -> np.ndarray:
    """Flat float32 values (n,) of the packed codes: table[code] * absmax[block] (+ offset[block])."""
    out = np.empty(n, dtype=np.float32)
    absmax = np.ascontiguousarray(absmax, dtype=np.float32)
    _dequantize(
        np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1),
        bits,
        np.ascontiguousarray(table, dtype=np.float32),
        absmax,
        _offsets(offset, absmax),
        blocksize,
        out,
    )
    return out


def simd_applies(bits: int, shape: tuple[int, int], table: np.ndarray, blocksize: int) -> bool:
    """Whether the SIMD GEMV handles this case: the CPU has AVX-512 or AVX2, the table fits a register look-up or is
    affine, rows are whole chunks (32 codes, 64 for the byte-plane look-up of k >= 6), and blocks align with rows
    (blocksize divides K, or K divides blocksize) and hold whole chunks."""
    n_cols = shape[1]
    mode = cpu_simd.lookup_mode(bits, table) if cpu_simd.HAS_SIMD else None
    if mode is None:
        return False
    chunk = cpu_simd.chunk_codes(mode)
    if n_cols % chunk != 0:
        return False
    return blocksize % n_cols == 0 or (n_cols % blocksize == 0 and blocksize % chunk == 0)


def gemv_array(
    packed: np.ndarray, bits: int, shape: tuple[int, int], table: np.ndarray, absmax: np.ndarray,
    offset: np.ndarray | None, blocksize: int, x: np.ndarray, backend: str = "auto",
) -> np.ndarray:
    """y = x @ W.T for the packed (N, K) matrix W; x (K,) gives y (N,), x (B, K) gives y (B, N), float32.

    Batch 1 is the fused dequantize-GEMV; a small batch decodes each row once and reuses it from L1 for every x row.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, reference, got {backend!r}")
    n_rows, n_cols = shape
    squeeze = x.ndim == 1
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, n_cols)  # (B, K)
    packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    table = np.ascontiguousarray(table, dtype=np.float32)
    absmax = np.ascontiguousarray(absmax, dtype=np.float32)
    use_simd = simd_applies(bits, shape, table, blocksize)
    if backend == "simd" and not use_simd:
        raise ValueError(
            "backend 'simd' needs a CPU with AVX-512 or AVX2, K a multiple of 32, blocks aligned with rows and "
            "bits <= 5 or an affine int table (k >= 6 with another table: AVX-512 VBMI, K and blocksize multiples "
            "of 64); "
            f"got bits={bits}, shape={shape}, blocksize={blocksize}, "
            f"AVX-512={cpu_simd.HAS_AVX512}, AVX2={cpu_simd.HAS_AVX2}"
        )
    out = np.empty((x2.shape[0], n_rows), dtype=np.float32)  # (B, N)
    if backend == "int8":
        check_int8_applies(bits, n_cols, blocksize, table, offset)
        cpu_int8.gemv(packed, shape, table, absmax, blocksize, x2, out)
    elif use_simd and backend != "portable":
        cpu_simd.gemv(packed, bits, shape, table, absmax, offset, blocksize, x2, out)
    else:
        _gemv_portable(packed, bits, n_rows, n_cols, table, absmax, _offsets(offset, absmax), blocksize, x2, out)
    return out[0] if squeeze else out


def check_int8_applies(bits: int, n_cols: int, blocksize: int, table: np.ndarray, offset: np.ndarray | None) -> None:
    """ValueError naming what backend 'int8' needs when its kernel does not apply to this case."""
    if offset is not None or not cpu_int8.applies(bits, n_cols, blocksize, table.size):
        raise ValueError(
            "backend 'int8' needs a CPU with AVX-512 VNNI or AVX2, bits=4 with at most 16 code values, no centred "
            "blocks, K a multiple of 64 and blocks of 64 times a power of two inside rows (or one block per row); "
            f"got bits={bits}, K={n_cols}, blocksize={blocksize}, centered={offset is not None}, "
            f"int8 dot products={cpu_int8.DOT_PATH}"
        )


_ROW_KERNELS: dict[tuple, tuple[object, int]] = {}


def row_kernel(bits: int, table: np.ndarray, n_cols: int, blocksize: int, backend: str = "auto") -> tuple[object, int]:
    """(run, repeat): a Numba function run(packed, absmax, x (B, K), out (B, N)) that sets out = x @ W.T for W's rows of
    n_cols codes in blocks of blocksize (a divisor of n_cols, no offsets), callable from Python and from other Numba
    code (a whole decode step); absmax must hold each block scale repeat times. The kernels of gemv_array: int8
    for backend 'int8', else simd where it applies (unless backend is 'portable'), portable otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if blocksize <= 0 or n_cols % blocksize:
        raise ValueError(f"blocksize must divide the row length {n_cols}, got {blocksize}")
    table = np.ascontiguousarray(table, dtype=np.float32)
    if backend == "int8":  # checked before the cache: a kernel built earlier must not skip the check
        check_int8_applies(bits, n_cols, blocksize, table, None)
    key = (bits, table.tobytes(), n_cols, blocksize, backend)
    if key not in _ROW_KERNELS:
        _ROW_KERNELS[key] = _build_row_kernel(bits, table, n_cols, blocksize, backend)
    return _ROW_KERNELS[key]


def _build_row_kernel(bits: int, table: np.ndarray, n_cols: int, blocksize: int, backend: str) -> tuple[object, int]:
    """row_kernel without the cache: the kernel with its constant inputs bound in a small Numba closure."""
    if backend == "int8":
        return cpu_int8.row_kernel(table, blocksize), 1
    use_simd = simd_applies(bits, (1, n_cols), table, blocksize)
    if backend == "simd" and not use_simd:
        raise ValueError(f"backend 'simd' does not apply to bits={bits}, K={n_cols}, blocksize={blocksize} here")
    if use_simd and backend != "portable":
        p = cpu_simd.plan(bits, table, n_cols, blocksize)
        kernel, x_lanes, k_table, k_blocksize = p.kernel, p.x_lanes, p.table, p.blocksize

        @njit
        def run_simd(packed, absmax, x, out):  # pragma: no cover - compiled
            kernel(packed, x, x_lanes, k_table, absmax, out.shape[1], x.shape[1], k_blocksize, out)

        return run_simd, p.repeat
    if bits not in _PORTABLE:
        _PORTABLE[bits] = _build_portable(bits)
    portable, affine = _PORTABLE[bits], cpu_simd.is_affine(table)

    @njit
    def run_portable(packed, absmax, x, out):  # pragma: no cover - compiled
        offset = np.zeros_like(absmax)
        portable(packed, out.shape[1], x.shape[1], table, affine, absmax, offset, blocksize, x, out)

    return run_portable, 1


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """t as a float32 or uint8 numpy array (shared memory when t is a CPU tensor without grad)."""
    if t is None:
        return None
    try:
        return t.numpy()  # the common case, ~4x cheaper than the general conversion below
    except (RuntimeError, TypeError):  # requires grad, or not on the CPU
        return t.detach().cpu().numpy()


def _scales(code: torch.Tensor, absmax: torch.Tensor, offset: torch.Tensor | None):
    """The code table, absmax and offset (None when not centred) as float32 numpy arrays."""
    return _numpy(code.float()), _numpy(absmax.float()), _numpy(None if offset is None else offset.float())


def _auto_only(backend: str) -> None:
    if backend != "auto":
        raise ValueError(f"backend for the Numba quantize and dequantize must be auto or reference, got {backend!r}")


def quantize(
    A: torch.Tensor, code: torch.Tensor, bits: int, blocksize: int | None, centered: bool, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Registry op quantize on the CPU: (packed, absmax, offset) of the flattened A, Numba kernels."""
    _auto_only(backend)
    x = A.detach().reshape(-1).float().numpy()  # (n,) float32
    codes, absmax, offset = quantize_array(x, _numpy(code.float()), bits, x.size if blocksize is None else blocksize,
                                           centered)
    return (
        torch.from_numpy(pack(codes, bits)),
        torch.from_numpy(absmax),
        None if offset is None else torch.from_numpy(offset),
    )


@layout_op
def dequantize(layout: Layout, dtype: torch.dtype, backend: str) -> torch.Tensor:
    """Registry op dequantize on the CPU (Numba), reshaped to shape and cast to dtype."""
    _auto_only(backend)
    packed, bits, shape, code, absmax, offset, blocksize = layout
    values = dequantize_array(_numpy(packed), bits, layout.numel, *_scales(code, absmax, offset), blocksize)
    return torch.from_numpy(values).reshape(shape).to(dtype)


@layout_op
def gemv(layout: Layout, x: torch.Tensor, backend: str) -> torch.Tensor:
    """Registry ops gemv and matmul on the CPU: y = W @ x in float32 (backend 'auto', 'simd', 'portable' or 'int8')."""
    packed, bits, shape, code, absmax, offset, blocksize = layout
    y = gemv_array(
        _numpy(packed), bits, shape, *_scales(code, absmax, offset), blocksize, x.detach().float().contiguous().numpy(),
        backend=backend,
    )
    return torch.from_numpy(y)


matmul = gemv  # the small-batch path is the same kernel: each decoded row is reused from L1 for every row of x
