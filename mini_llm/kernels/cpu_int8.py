"""4-bit GEMV on int8 activations with integer dot products, the technique of llama.cpp's q4_0 x q8_0 on x86.

The float kernels of mini_llm.kernels.cpu_simd look every code up as a float32 and multiply it by x in float32:
16 products per ``vpermps`` + ``vfmadd`` (AVX2: 8 per two ``vpermps``, a blend and an FMA). Here x is first
quantized to int8 in runs of 64 (one float scale per run, round to nearest), the 16-value code table to int8
(``round(127 * table / max|table|)``), and the products are summed as integers:

- decode: 32 bytes hold 64 codes; their high nibbles (even elements) and low nibbles (odd elements) are looked up
  apart, and x is permuted the same way when it is quantized (``ACTIVATION_ORDER``);
- look-up: ``vpshufb`` picks a byte from a 16-byte table in every 128-bit lane, 32 or 64 look-ups at once;
- dot, AVX-512 VNNI (``HAS_VNNI``): one ``vpdpbusd`` multiplies 64 unsigned by 64 signed bytes and sums them in
  fours into 16 int32 lanes; the table is stored as ``int8 + 128`` (1..255) and the excess ``128 * sum(x_int8)``
  is subtracted per lane (precomputed with x, ``corrections``);
- dot, AVX2 (no VNNI): llama.cpp's sign trick per 32 codes, ``vpmaddubsw(|x|, sign(w, x))`` (pairs into int16,
  at most 2 * 127 * 127: no saturation) and ``vpmaddwd`` with ones (pairs into 8 int32 lanes);
- scale: each run's int32 lanes become float32, scaled by the run's activation scale (times the table's scale) and
  the block's absmax, and accumulated in four registers.

The results differ from the float kernels by the rounding of x and of the table to int8 (measured in
benchmarks/bench_kbit_gemv.py, column "relative error"); they equal, up to float32 summation order, the float64
product of the int8-rounded table and x that ``reference_gemv`` computes. MINI_LLM_NO_VNNI=1 turns VNNI off (then
AVX2 runs); MINI_LLM_NO_AVX512=1 turns it off too. Reached through the CPU gemv's backend 'int8'.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from mini_llm.kernels.cpu_simd import (
    _F32,
    _I8,
    _I32,
    _I64,
    _V16I,
    _V64B,
    HAS_AVX2,
    HAS_AVX512,
    PREFETCH_BYTES,
    _prefetch_function,
    _vector_load,
    host_has,
)

# the AVX-512 kernels are on and the CPU has AVX-512 BW and VNNI
HAS_VNNI = HAS_AVX512 and host_has(("avx512vnni", "avx512bw"), "MINI_LLM_NO_VNNI")
HAS_INT8_DOT = HAS_VNNI or HAS_AVX2  # the kernel runs: VNNI where present, else AVX2's vpmaddubsw
DOT_PATH = "VNNI" if HAS_VNNI else "AVX2" if HAS_AVX2 else "none"  # which integer dot product it uses
RUN = 64  # activations share one int8 scale per run of 64; the kernel multiplies 64 codes per vpdpbusd
ACTIVATION_ORDER = np.arange(RUN).reshape(RUN // 2, 2).T.reshape(-1)  # (64,) even elements, then odd ones
_V32B = ir.VectorType(_I8, 32)
UNROLL = 4  # runs per loop step, each into its own accumulator (the FMA chains of 4 runs overlap)


def int8_table(table: np.ndarray) -> tuple[np.ndarray, float]:
    """(lanes, scale): the 16-value table rounded to int8 steps of scale = max|table| / 127, stored as int8 + 128 in
    uint8 and repeated in each of the 4 128-bit lanes (64 bytes) for vpshufb; table[i] ~ (lanes[i] - 128) * scale."""
    table = np.asarray(table, dtype=np.float64).reshape(-1)
    if table.size > 16:
        raise ValueError(f"the int8-activation kernel takes a code table of at most 16 values, got {table.size}")
    top = float(np.max(np.abs(table)))
    scale = top / 127.0 if top > 0 else 1.0
    steps = np.rint(table / scale).astype(np.int64)  # (<= 16,) in -127..127
    padded = np.concatenate([steps, np.zeros(16 - steps.size, dtype=np.int64)])
    return np.tile((padded + 128).astype(np.uint8), 4), scale


@njit(cache=True)
def quantize_activations(x, order, table_scale):  # pragma: no cover - compiled
    """x (B, K) float32 -> (q (B, K) int8, scales (B, K / 64) float32, corrections (B, K / 64 * 16) int32).

    Run j of row b (x[b, 64 j: 64 j + 64]) is permuted by order and rounded to q = rint(x * 127 / max|run|);
    scales[b, j] = max|run| / 127 * table_scale; corrections[b, 16 j + lane] = 128 * (sum of the lane's 4 q values).
    A run holding NaN or Inf gets q = 0 and scale NaN, so that its outputs are NaN as with float activations.
    """
    batch, n_cols = x.shape
    n_runs = n_cols // 64
    q = np.empty((batch, n_cols), dtype=np.int8)
    scales = np.empty((batch, n_runs), dtype=np.float32)
    corrections = np.empty((batch, n_runs * 16), dtype=np.int32)
    for b in range(batch):
        for j in range(n_runs):
            start = 64 * j
            top = np.float32(0.0)
            finite = True
            for i in range(64):
                value = x[b, start + i]
                finite = finite and np.isfinite(value)
                top = max(top, abs(value))
            if not finite:
                top = np.float32(np.nan)
            inverse = np.float32(127.0) / top if top > 0 else np.float32(0.0)  # NaN > 0 is False: q = 0
            scales[b, j] = np.float32(top / np.float32(127.0) * np.float32(table_scale))
            for lane in range(16):
                total = 0
                for i in range(4 * lane, 4 * lane + 4):
                    value = np.int32(np.rint(x[b, start + order[i]] * inverse))
                    q[b, start + i] = value
                    total += value
                corrections[b, 16 * j + lane] = 128 * total
    return q, scales, corrections


def reference_gemv(packed_codes: np.ndarray, table: np.ndarray, absmax: np.ndarray, blocksize: int,
                   x: np.ndarray) -> np.ndarray:
    """The float64 product the kernel computes: codes (N, K) looked up in the int8-rounded table, times x rounded to
    int8 per run of 64 like quantize_activations, scaled per block by absmax (N, K / blocksize). x (B, K) -> (B, N)."""
    lanes, table_scale = int8_table(table)
    weights = (lanes[:16].astype(np.float64) - 128.0)[packed_codes] * table_scale  # (N, K)
    n_rows, n_cols = packed_codes.shape
    weights = weights.reshape(n_rows, n_cols // blocksize, blocksize) * np.asarray(absmax, np.float64).reshape(
        n_rows, n_cols // blocksize, 1)
    runs = np.asarray(x, dtype=np.float32).reshape(x.shape[0], n_cols // RUN, RUN)  # (B, K / 64, 64)
    top = np.abs(runs).max(axis=2, keepdims=True)
    inverse = np.where(top > 0, np.float32(127.0) / np.where(top > 0, top, 1), np.float32(0.0)).astype(np.float32)
    rounded = np.rint(runs * inverse).astype(np.float64) * (top.astype(np.float64) / 127.0)  # (B, K / 64, 64)
    return rounded.reshape(x.shape[0], n_cols) @ weights.reshape(n_rows, n_cols).T


def applies(bits: int, n_cols: int, blocksize: int, table_size: int) -> bool:
    """Whether the int8-activation kernel handles this case: the CPU has VNNI or AVX2, k = 4 with at most 16 table
    values, rows of whole runs (K a multiple of 64) and blocks of whole runs inside rows (blocksize 64 times a power
    of two that divides K, or one block per row)."""
    if not HAS_INT8_DOT or bits != 4 or table_size > 16 or n_cols % RUN:
        return False
    runs = blocksize // RUN
    return blocksize % n_cols == 0 or (n_cols % blocksize == 0 and blocksize % RUN == 0 and runs & (runs - 1) == 0)


def _vnni_dots(builder: ir.IRBuilder, lookup_table: ir.Value, corrections: ir.Value):
    """(dots(high, low, x_run, global_run) -> <16 x i32>, 16) with AVX-512 VNNI: one vpshufb looks the 64 codes up
    as int8 + 128, one vpdpbusd multiplies them by the 64 int8 activations, the run's 128 * sum(x) is subtracted."""
    module = builder.module
    shuffle_bytes = cgutils.get_or_insert_function(
        module, ir.FunctionType(_V64B, [_V64B, _V64B]), "llvm.x86.avx512.pshuf.b.512"
    )
    dot_bytes = cgutils.get_or_insert_function(
        module, ir.FunctionType(_V16I, [_V16I] * 3), "llvm.x86.avx512.vpdpbusd.512"
    )
    zero = ir.Constant(_V16I, [0] * 16)
    corrections_bytes = builder.bitcast(corrections, _I8.as_pointer())  # read as 64-byte vectors

    def dots(high, low, x_run, global_run):
        codes = builder.shuffle_vector(high, low, ir.Constant(ir.VectorType(_I32, 64), list(range(64))))
        weights = builder.call(shuffle_bytes, [lookup_table, codes])  # int8 + 128, as unsigned bytes
        summed = builder.call(dot_bytes, [zero, builder.bitcast(weights, _V16I), builder.bitcast(x_run, _V16I)])
        excess = _vector_load(builder, corrections_bytes, builder.mul(global_run, ir.Constant(_I64, 64)), _V64B)
        return builder.sub(summed, builder.bitcast(excess, _V16I))

    return dots, 16


def _avx2_dots(builder: ir.IRBuilder, lookup_table: ir.Value, corrections: ir.Value):
    """(dots(high, low, x_run, global_run) -> <8 x i32>, 8) with AVX2, llama.cpp's sign trick: per 32 codes a
    vpshufb looks them up as signed int8, vpmaddubsw multiplies |x| (unsigned, <= 127) by the values carrying x's
    sign (vpsignb) and adds pairs into int16 (at most 2 * 127 * 127, no saturation), vpmaddwd adds pairs into int32."""
    del corrections  # the sign trick needs no correction
    module = builder.module
    v32b, v16h, v8i = _V32B, ir.VectorType(ir.IntType(16), 16), ir.VectorType(_I32, 8)
    shuffle_bytes = cgutils.get_or_insert_function(module, ir.FunctionType(v32b, [v32b, v32b]),
                                                   "llvm.x86.avx2.pshuf.b")
    sign_bytes = cgutils.get_or_insert_function(module, ir.FunctionType(v32b, [v32b, v32b]),
                                                "llvm.x86.avx2.psign.b")
    absolute = cgutils.get_or_insert_function(module, ir.FunctionType(v32b, [v32b, ir.IntType(1)]), "llvm.abs.v32i8")
    multiply_add_bytes = cgutils.get_or_insert_function(module, ir.FunctionType(v16h, [v32b, v32b]),
                                                        "llvm.x86.avx2.pmadd.ub.sw")
    multiply_add_words = cgutils.get_or_insert_function(module, ir.FunctionType(v8i, [v16h, v16h]),
                                                        "llvm.x86.avx2.pmadd.wd")
    table = builder.shuffle_vector(lookup_table, lookup_table, ir.Constant(ir.VectorType(_I32, 32), list(range(32))))
    table = builder.xor(table, ir.Constant(v32b, [128] * 32))  # int8 + 128 back to int8
    ones = ir.Constant(v16h, [1] * 16)

    def half(codes, x_half):
        weights = builder.call(shuffle_bytes, [table, codes])  # (32,) int8 code values
        magnitudes = builder.call(absolute, [x_half, ir.Constant(ir.IntType(1), 0)])
        signed = builder.call(sign_bytes, [weights, x_half])
        return builder.call(multiply_add_words, [builder.call(multiply_add_bytes, [magnitudes, signed]), ones])

    def dots(high, low, x_run, global_run):
        x_even = builder.shuffle_vector(x_run, x_run, ir.Constant(ir.VectorType(_I32, 32), list(range(32))))
        x_odd = builder.shuffle_vector(x_run, x_run, ir.Constant(ir.VectorType(_I32, 32), list(range(32, 64))))
        return builder.add(half(high, x_even), half(low, x_odd))

    return dots, 8


def _make_row_dot():
    """An intrinsic row_dot(packed, byte_off, q, q_off, scales, run_off, corrections, absmax, blk_off, n_runs,
    block_shift, table) -> float32: the sum over the row's n_runs runs of 64 codes (from packed[byte_off]) dotted
    with q (from q[q_off]; run scales from scales[run_off], corrections from corrections[16 * run_off]), run r scaled
    by absmax[blk_off + (r >> block_shift)] (2**block_shift runs per block)."""

    @intrinsic
    def row_dot(typingctx, packed, byte_off, q, q_off, scales, run_off, corrections, absmax, blk_off, n_runs,
                block_shift, table):
        sig = types.float32(packed, byte_off, q, q_off, scales, run_off, corrections, absmax, blk_off, n_runs,
                            block_shift, table)

        def codegen(context, builder, signature, args):
            (pk_arr, byte_off_v, q_arr, q_off_v, sc_arr, run_off_v, co_arr, am_arr, blk_off_v, total_runs, shift_v,
             tb_arr) = args
            arg_types = signature.args

            def data(i, value):
                return context.make_array(arg_types[i])(context, builder, value).data

            pk, qp, sc, am = data(0, pk_arr), data(2, q_arr), data(4, sc_arr), data(7, am_arr)
            module = builder.module
            lookup_table = _vector_load(builder, data(11, tb_arr), ir.Constant(_I64, 0), _V64B)
            int_dots, lanes = (_vnni_dots if HAS_VNNI else _avx2_dots)(builder, lookup_table, data(6, co_arr))
            vector_f = ir.VectorType(_F32, lanes)
            fma = cgutils.get_or_insert_function(module, ir.FunctionType(vector_f, [vector_f] * 3),
                                                 f"llvm.fma.v{lanes}f32")
            prefetch = _prefetch_function(module)
            zero = ir.Constant(vector_f, [0.0] * lanes)
            accs = [cgutils.alloca_once_value(builder, zero) for _ in range(UNROLL)]
            prefetch_args = [ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)]  # read, keep, data

            def emit_run(run, target):
                """Add run `run` of the row (64 codes) times its activations, scaled, into the accumulator target."""
                byte = builder.add(byte_off_v, builder.mul(run, ir.Constant(_I64, 32)))
                raw = _vector_load(builder, pk, byte, _V32B)
                high = builder.lshr(raw, ir.Constant(_V32B, [4] * 32))  # even elements
                low = builder.and_(raw, ir.Constant(_V32B, [15] * 32))  # odd elements
                x_run = _vector_load(builder, qp, builder.add(q_off_v, builder.mul(run, ir.Constant(_I64, 64))), _V64B)
                global_run = builder.add(run_off_v, run)
                dots = int_dots(high, low, x_run, global_run)  # (lanes,) int32: sums of int8 products
                block = builder.add(blk_off_v, builder.lshr(run, shift_v))
                run_scale = builder.load(builder.gep(sc, [global_run]))
                scale = builder.fmul(run_scale, builder.load(builder.gep(am, [block])))
                splat = builder.insert_element(ir.Constant(vector_f, ir.Undefined), scale, ir.Constant(_I32, 0))
                splat = builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))
                builder.store(builder.call(fma, [builder.sitofp(dots, vector_f), splat, builder.load(target)]), target)

            groups = builder.udiv(total_runs, ir.Constant(_I64, UNROLL))
            with cgutils.for_range(builder, groups) as group_loop:  # UNROLL runs, one accumulator each
                first = builder.mul(group_loop.index, ir.Constant(_I64, UNROLL))
                ahead = builder.add(builder.add(byte_off_v, builder.mul(first, ir.Constant(_I64, 32))),
                                    ir.Constant(_I64, PREFETCH_BYTES))  # never faults, even past the end
                builder.call(prefetch, [builder.gep(pk, [ahead]), *prefetch_args])
                for i in range(UNROLL):
                    emit_run(builder.add(first, ir.Constant(_I64, i)), accs[i])
            done = builder.mul(groups, ir.Constant(_I64, UNROLL))
            with cgutils.for_range(builder, builder.sub(total_runs, done)) as tail_loop:  # the last runs
                emit_run(builder.add(done, tail_loop.index), accs[0])
            acc = builder.fadd(builder.fadd(builder.load(accs[0]), builder.load(accs[1])),
                               builder.fadd(builder.load(accs[2]), builder.load(accs[3])))
            reduce_add = cgutils.get_or_insert_function(
                module, ir.FunctionType(_F32, [_F32, vector_f]), f"llvm.vector.reduce.fadd.v{lanes}f32"
            )
            return builder.call(reduce_add, [ir.Constant(_F32, 0.0), acc])

        return sig, codegen

    return row_dot


_row_dot = _make_row_dot()


@njit(parallel=True, fastmath=True)
def _gemv_kernel(packed, q, scales, corrections, table, absmax, n_rows, n_cols, blocksize, out):  # pragma: no cover
    """out (B, N) = int8 x (B, K) @ W.T, rows split over threads; q, scales, corrections from quantize_activations."""
    batch = q.shape[0]
    blocks_per_row = n_cols // blocksize
    n_runs = n_cols // RUN
    block_shift = 63  # one block per row: every run takes scale 0
    if blocks_per_row > 1:  # blocksize a power of two: 2**block_shift runs per block
        block_shift = 0
        while (RUN << block_shift) < blocksize:
            block_shift += 1
    flat_q = q.reshape(-1)
    flat_scales = scales.reshape(-1)
    flat_corrections = corrections.reshape(-1)
    row_bytes = n_cols // 2
    for r in prange(n_rows):
        for bb in range(batch):
            out[bb, r] = _row_dot(packed, r * row_bytes, flat_q, bb * n_cols, flat_scales, bb * n_runs,
                                  flat_corrections, absmax, r * blocks_per_row, n_runs, block_shift, table)


@njit
def _quantize_and_gemv(packed, lanes, table_scale, absmax, blocksize, x, out):  # pragma: no cover - compiled
    """out (B, N) = x (B, K) @ W.T: x quantized to int8, then the parallel kernel (one call from Python)."""
    q, scales, corrections = quantize_activations(x, ACTIVATION_ORDER, table_scale)
    _gemv_kernel(packed, q, scales, corrections, lanes, absmax, out.shape[1], x.shape[1], blocksize, out)


_TABLES: dict[bytes, tuple[np.ndarray, float]] = {}


def _int8_table_cached(table: np.ndarray) -> tuple[np.ndarray, float]:
    """int8_table, remembered per table (10 µs, 4% of a 4096x4096 GEMV); do not modify the result."""
    key = np.ascontiguousarray(table, dtype=np.float32).tobytes()
    if key not in _TABLES:
        if len(_TABLES) >= 256:
            _TABLES.clear()
        _TABLES[key] = int8_table(table)
    return _TABLES[key]


def row_kernel(table: np.ndarray, blocksize: int):
    """A Numba function run(packed, absmax, x (B, K), out (B, N)) that quantizes x to int8 and sets out = x @ W.T
    for k = 4 rows in blocks of blocksize (the caller checked that the kernel applies)."""
    lanes, table_scale = _int8_table_cached(table)

    @njit
    def run(packed, absmax, x, out):  # pragma: no cover - compiled
        _quantize_and_gemv(packed, lanes, table_scale, absmax, blocksize, x, out)

    return run


def gemv(packed: np.ndarray, shape: tuple[int, int], table: np.ndarray, absmax: np.ndarray, blocksize: int,
         x: np.ndarray, out: np.ndarray) -> None:
    """out (B, N) = x (B, K) @ W.T on int8 activations; the caller checked that the kernel applies (applies)."""
    n_rows, n_cols = shape
    if n_cols % blocksize != 0:  # one block spans whole rows: one scale per row
        absmax = np.ascontiguousarray(absmax[np.arange(n_rows, dtype=np.int64) * n_cols // blocksize])
        blocksize = n_cols
    lanes, table_scale = _int8_table_cached(table)
    _quantize_and_gemv(packed, lanes, table_scale, absmax, blocksize, x, out)
