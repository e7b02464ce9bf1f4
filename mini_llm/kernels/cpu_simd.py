"""AVX-512 and AVX2 k-bit GEMV for Numba: LLVM IR intrinsics that decode 32 codes at a time and look them up in
registers.

Plain Numba turns a table lookup ``table[code]`` into a gather, which is no faster than reading float32 weights.
Here a Numba ``@intrinsic`` emits the whole row loop as explicit 16-lane vectors:

- decode: 4-bit codes come from the two nibbles of 16 bytes (x is de-interleaved to match); 3-bit codes 128 at a
  time, each dword lane holding one 24-bit group of 8 codes and 8 fixed shifts giving 16 codes each (x permuted
  to match); other k from a byte shuffle and a per-lane shift of the 4*k bytes that hold 32 codes;
- look-up: a table of up to 16 values sits in one register and ``vpermps`` picks 16 values at once; 32 values
  (k = 5) use the two-register ``vpermi2ps``; above, an affine table (the int codebook) is ``code * step + base``;
  a table of up to 256 values (k = 6..8, e.g. NF8) is split into its 4 byte planes (byte j of every float32),
  each looked up for 64 codes at once by the byte permute ``vpermi2b`` (128 entries per two registers, the
  code's top bit picking one of two halves), and the 4 planes are interleaved back into float32 (AVX-512 VBMI);
- each block accumulates code values times x in two vector registers, scaled by the block's absmax at its end.

On a CPU with AVX2 and FMA but no AVX-512 (``HAS_AVX2``) the same kernels run: LLVM splits each 16-lane vector into
two 8-lane halves, and the register look-up becomes two (or four) 8-entry ``vpermps`` per half with index bit 3 (and
4) choosing between them; the byte-plane look-up and the 3-bit group walk need AVX-512 VBMI and are left out.
MINI_LLM_NO_AVX512=1 turns AVX-512 off (then AVX2 is used), MINI_LLM_NO_AVX2=1 AVX2; the portable Numba kernel in
mini_llm.kernels.cpu serves every other case and is what these are tested against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


def host_has(features: tuple[str, ...], switch: str) -> bool:
    """True when the host CPU reports every one of features (LLVM's names) and the environment variable switch is
    unset or 0."""
    if os.environ.get(switch, "") not in ("", "0"):
        return False
    try:
        reported = llvm_binding.get_host_cpu_features()
    except RuntimeError:  # feature detection is unavailable on this platform
        return False
    return all(reported.get(name, False) for name in features)


HAS_AVX512 = host_has(("avx512f",), "MINI_LLM_NO_AVX512")
HAS_AVX2 = host_has(("avx2", "fma"), "MINI_LLM_NO_AVX2")  # x86 since 2013
HAS_SIMD = HAS_AVX512 or HAS_AVX2  # the row kernels run: 16-lane vectors, split in two by LLVM on AVX2
# the AVX-512 kernels are on and the CPU also has AVX-512 VBMI (the byte permute vpermi2b)
HAS_VBMI = HAS_AVX512 and host_has(("avx512vbmi",), "MINI_LLM_NO_AVX512")
PREFETCH_BYTES = 4096  # the row kernels prefetch packed this far ahead, once per block or step (k = 8 ~0.7 -> 0.6 ms)

_F32 = ir.FloatType()
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_F64 = ir.DoubleType()
_V16F = ir.VectorType(_F32, 16)
_V8F = ir.VectorType(_F32, 8)
_V8I = ir.VectorType(_I32, 8)
_V8D = ir.VectorType(_F64, 8)
_V16I = ir.VectorType(_I32, 16)
_V64B = ir.VectorType(_I8, 64)
_V32H = ir.VectorType(ir.IntType(16), 32)


_CACHE_LIMIT = 256  # (bits, table) pairs remembered by lookup_mode and kernel_table
_MODES: dict[tuple[int, bytes], str | None] = {}
_TABLES: dict[tuple[int, str, bytes], np.ndarray] = {}


def lookup_mode(bits: int, table: np.ndarray) -> str | None:
    """How the SIMD kernel looks codes up: 'permute' (k <= 4: <= 16 values in one register), 'affine' (k >= 5 with
    an evenly spaced table), 'permute2' (32 values), 'bytes' (k >= 6 with an arbitrary table, on a CPU with AVX-512
    VBMI), or None (left to the portable kernel). Remembered per (bits, table): the test costs ~20 µs, 4% of a
    4096x4096 GEMV."""
    key = (bits, np.ascontiguousarray(table, dtype=np.float32).tobytes())
    if key not in _MODES:
        if len(_MODES) >= _CACHE_LIMIT:
            _MODES.clear()
        _MODES[key] = _lookup_mode(bits, table)
    return _MODES[key]


def is_affine(table: np.ndarray) -> bool:
    """Whether the table is evenly spaced and increasing (value = table[0] + code * step), e.g. the int codebook."""
    return lookup_mode(8, table) == "affine"


def _lookup_mode(bits: int, table: np.ndarray) -> str | None:
    """lookup_mode without the cache."""
    table = np.asarray(table, dtype=np.float64)
    steps = np.diff(table)
    affine = table.size > 1 and np.allclose(steps, steps[0], rtol=1e-4, atol=0.0) and steps[0] > 0
    if bits <= 4 and (HAS_AVX512 or not affine):  # AVX-512: one vpermps per 16 codes, cheaper than code * step + base
        return "permute"
    if affine:  # AVX2 needs two vpermps and a blend per 8 codes of a 16-value table: the affine form is cheaper
        return "affine"
    if bits == 5:
        return "permute2"
    if HAS_VBMI:
        return "bytes"
    return None


def chunk_codes(mode: str) -> int:
    """Codes the kernel decodes per step: 64 for the byte-plane look-up, 32 otherwise."""
    return 64 if mode == "bytes" else 32


def _byte_lane_order() -> np.ndarray:
    """order[16 * v + lane] = which of 64 codes the byte-plane look-up leaves in lane `lane` of float32 vector v.

    The 4 planes are interleaved with in-lane unpacks (bytes to words, words to dwords), which keep every 128-bit
    lane apart; x is permuted the same way instead of shuffling the weights back.
    """
    codes = np.arange(64).reshape(4, 16)  # (128-bit lane, byte in lane)
    halves = [codes[:, :8], codes[:, 8:]]  # unpack lo / hi bytes: 8 words per lane
    vectors = []
    for words in halves:  # (4, 8) codes as 16-bit words
        vectors.append(words[:, :4].reshape(-1))  # unpack lo words: 4 dwords per lane
        vectors.append(words[:, 4:].reshape(-1))
    return np.concatenate(vectors)


BYTE_LANE_ORDER = _byte_lane_order()  # (64,)


def kernel_table(bits: int, table: np.ndarray, mode: str) -> np.ndarray:
    """The float32 table the kernel loads: 2**k values repeated to fill 16 or 32, (base, step) for an affine table,
    or the 4 byte planes of 256 values for 'bytes'. Remembered per (bits, mode, table); do not modify it."""
    key = (bits, mode, np.ascontiguousarray(table, dtype=np.float32).tobytes())
    if key not in _TABLES:
        if len(_TABLES) >= _CACHE_LIMIT:
            _TABLES.clear()
        _TABLES[key] = _kernel_table(bits, table, mode)
    return _TABLES[key]


def _kernel_table(bits: int, table: np.ndarray, mode: str) -> np.ndarray:
    """kernel_table without the cache."""
    table = np.asarray(table, dtype=np.float32)
    if mode == "affine":
        return np.array([table[0], (float(table[-1]) - float(table[0])) / (table.size - 1)], dtype=np.float32)
    if mode == "bytes":  # (4, 256) byte planes, plane j = byte j (little-endian) of each float32, held as float32
        padded = np.concatenate([table, np.zeros(256 - table.size, dtype=np.float32)])
        return np.ascontiguousarray(padded.view(np.uint8).reshape(256, 4).T).reshape(-1).view(np.float32)
    size = 16 if mode == "permute" else 32
    padded = np.concatenate([table, np.zeros(2**bits - table.size, dtype=np.float32)])  # (2**k,)
    return np.tile(padded, size // 2**bits)  # codes come unmasked (index bits above k are don't-care)


def _splat(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    vec = builder.insert_element(ir.Constant(_V16F, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(vec, vec, ir.Constant(_V16I, [0] * 16))


def _vector_load(builder: ir.IRBuilder, base: ir.Value, index: ir.Value, vec_type: ir.VectorType) -> ir.Value:
    """Load vec_type from &base[index] (unaligned)."""
    pointer = builder.bitcast(builder.gep(base, [index]), vec_type.as_pointer())
    return builder.load(pointer, align=1)


def _decode_general(builder: ir.IRBuilder, raw: ir.Value, bits: int, half: int, masked: bool = True) -> ir.Value:
    """Codes 16*half .. 16*half+15 of the 32 codes held in raw (<4*bits x i8>), as <16 x i32>.

    A code spans at most two bytes, put in each dword as a big-endian 16-bit word and shifted right so that the code
    ends at bit 0. Up to k = 4 (or without VBMI) this is two zero-extending byte shuffles (LLVM makes them vpermt2b
    against zero); above, one byte shuffle (vpermb) fills the dword's two low bytes and leaves don't-care copies in
    the upper two, which the shift moves above the code. masked=False skips the final `& (2**k - 1)` for a look-up
    that ignores the higher index bits (vpermps reads bits 0..3 of an index, vpermi2ps bits 0..4; the table is tiled
    to match).
    """
    lanes = range(16 * half, 16 * half + 16)
    firsts = [(lane * bits) >> 3 for lane in lanes]
    seconds = [min(first + 1, 4 * bits - 1) for first in firsts]  # unused when the code ends inside its first byte
    shifts = ir.Constant(_V16I, [16 - ((lane * bits) & 7) - bits for lane in lanes])
    if bits <= 4 or not HAS_VBMI:
        byte0 = builder.zext(builder.shuffle_vector(raw, raw, ir.Constant(_V16I, firsts)), _V16I)
        byte1 = builder.zext(builder.shuffle_vector(raw, raw, ir.Constant(_V16I, seconds)), _V16I)
        words = builder.or_(builder.shl(byte0, ir.Constant(_V16I, [8] * 16)), byte1)
    else:
        order = [i for first, second in zip(firsts, seconds, strict=True) for i in (second, first, first, first)]
        words = builder.bitcast(builder.shuffle_vector(raw, raw, ir.Constant(ir.VectorType(_I32, 64), order)), _V16I)
    words = builder.lshr(words, shifts)
    if not masked:
        return words
    return builder.and_(words, ir.Constant(_V16I, [(1 << bits) - 1] * 16))


def _unpack_lanes(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, width: int, high: bool) -> ir.Value:
    """x86 unpack lo/hi within each 128-bit lane of two vectors of `width` lanes (punpck[lh]bw / punpck[lh]wd)."""
    per_lane = width // 4  # elements per 128-bit lane
    first = per_lane // 2 if high else 0
    mask = []
    for lane in range(4):
        for i in range(first, first + per_lane // 2):
            mask += [lane * per_lane + i, width + lane * per_lane + i]
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, width), mask))


def _codes64(builder: ir.IRBuilder, pk: ir.Value, byte: ir.Value, bits: int) -> ir.Value:
    """The 64 codes (<64 x i8>) that start at packed[byte]: one load at k = 8, two general decodes below."""
    if bits == 8:
        return _vector_load(builder, pk, byte, _V64B)
    parts = []
    for half in range(2):
        start = builder.add(byte, ir.Constant(_I64, 4 * bits * half))
        raw = _vector_load(builder, pk, start, ir.VectorType(_I8, 4 * bits))
        for quarter in range(2):
            parts.append(builder.trunc(_decode_general(builder, raw, bits, quarter), ir.VectorType(_I8, 16)))
    lo = builder.shuffle_vector(parts[0], parts[1], ir.Constant(ir.VectorType(_I32, 32), list(range(32))))
    hi = builder.shuffle_vector(parts[2], parts[3], ir.Constant(ir.VectorType(_I32, 32), list(range(32))))
    return builder.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(_I32, 64), list(range(64))))


def _byte_lookup(
    builder: ir.IRBuilder, permute_b: ir.Function, planes: list[ir.Value], codes: ir.Value, bits: int
) -> list[ir.Value]:
    """table[code] for 64 codes as 4 <16 x float> vectors, lanes in BYTE_LANE_ORDER.

    planes[4 * j + q] holds bytes 64q .. 64q+63 of byte plane j; vpermi2b looks 64 codes up in 128 entries (two
    registers) by their low 7 bits, and at k = 8 the top bit (the sign of the byte) picks the upper half.
    """
    top = builder.icmp_signed("<", codes, ir.Constant(_V64B, [0] * 64)) if bits == 8 else None
    looked = []
    for j in range(4):
        value = builder.call(permute_b, [planes[4 * j], codes, planes[4 * j + 1]])
        if top is not None:
            upper = builder.call(permute_b, [planes[4 * j + 2], codes, planes[4 * j + 3]])
            value = builder.select(top, upper, value)
        looked.append(value)
    vectors = []
    for high_bytes in (False, True):
        w01 = builder.bitcast(_unpack_lanes(builder, looked[0], looked[1], 64, high_bytes), _V32H)
        w23 = builder.bitcast(_unpack_lanes(builder, looked[2], looked[3], 64, high_bytes), _V32H)
        for high_words in (False, True):
            vectors.append(builder.bitcast(_unpack_lanes(builder, w01, w23, 32, high_words), _V16F))
    return vectors


def _register_lookup(builder: ir.IRBuilder, tb: ir.Value, fma: ir.Function, mode: str):
    """lookup(codes) -> 16 floats for 16 int32 codes: 'permute' (vpermps, 16-entry table in one register),
    'permute2' (vpermi2ps, 32 entries in two) or 'affine' (table[0] + code * table[1])."""
    module = builder.module
    if mode in ("permute", "permute2") and not HAS_AVX512:
        return _avx2_lookup(builder, tb, 16 if mode == "permute" else 32)
    if mode == "permute":
        permute = cgutils.get_or_insert_function(
            module, ir.FunctionType(_V16F, [_V16F, _V16I]), "llvm.x86.avx512.permvar.sf.512"
        )
        table_lo = _vector_load(builder, tb, ir.Constant(_I64, 0), _V16F)
        return lambda codes: builder.call(permute, [table_lo, codes])
    if mode == "permute2":
        permute2 = cgutils.get_or_insert_function(
            module, ir.FunctionType(_V16F, [_V16F, _V16I, _V16F]), "llvm.x86.avx512.vpermi2var.ps.512"
        )
        table_lo = _vector_load(builder, tb, ir.Constant(_I64, 0), _V16F)
        table_hi = _vector_load(builder, tb, ir.Constant(_I64, 16), _V16F)
        return lambda codes: builder.call(permute2, [table_lo, codes, table_hi])
    base = _splat(builder, builder.load(builder.gep(tb, [ir.Constant(_I64, 0)])))
    step = _splat(builder, builder.load(builder.gep(tb, [ir.Constant(_I64, 1)])))

    def affine(codes: ir.Value) -> ir.Value:
        return builder.call(fma, [builder.uitofp(codes, _V16F), step, base])

    return affine


def _avx2_lookup(builder: ir.IRBuilder, tb: ir.Value, size: int):
    """lookup(codes) -> 16 floats for 16 int32 codes with AVX2: each half of 8 codes looks up every 8-entry part of
    the table (size 16 or 32) with vpermps (which reads index bits 0..2), and bits 3 (and 4) select among them."""
    permute = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_V8F, [_V8F, _V8I]), "llvm.x86.avx2.permps"
    )
    parts = [_vector_load(builder, tb, ir.Constant(_I64, 8 * i), _V8F) for i in range(size // 8)]
    zero = ir.Constant(_V8I, [0] * 8)

    def half(codes: ir.Value) -> ir.Value:
        looked = [builder.call(permute, [part, codes]) for part in parts]
        bit = 3
        while len(looked) > 1:  # pair up the parts by the next index bit, moved to the sign bit (one vblendvps)
            moved = builder.shl(codes, ir.Constant(_V8I, [31 - bit] * 8))
            chosen = builder.icmp_signed("<", moved, zero)
            looked = [builder.select(chosen, looked[i + 1], looked[i]) for i in range(0, len(looked), 2)]
            bit += 1
        return looked[0]

    def lookup(codes: ir.Value) -> ir.Value:
        low = half(builder.shuffle_vector(codes, codes, ir.Constant(_V8I, list(range(8)))))
        high = half(builder.shuffle_vector(codes, codes, ir.Constant(_V8I, list(range(8, 16)))))
        return builder.shuffle_vector(low, high, ir.Constant(_V16I, list(range(16))))

    return lookup


def _prefetch_function(module: ir.Module) -> ir.Function:
    """llvm.prefetch (address, read/write, locality, data/instruction cache)."""
    return cgutils.get_or_insert_function(
        module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer(), _I32, _I32, _I32]), "llvm.prefetch.p0"
    )


def _horizontal_sum(builder: ir.IRBuilder, module: ir.Module, vector: ir.Value) -> ir.Value:
    """The float32 sum of the 16 lanes of vector (llvm.vector.reduce.fadd)."""
    reduce_add = cgutils.get_or_insert_function(
        module, ir.FunctionType(_F32, [_F32, _V16F]), "llvm.vector.reduce.fadd.v16f32"
    )
    return builder.call(reduce_add, [ir.Constant(_F32, 0.0), vector])


def make_row_dot(bits: int, mode: str, unroll: int = 0):
    """An intrinsic row_dot(packed, byte_off, x, x_off, absmax, blk_off, n_blocks, chunks, table) -> float32.

    It returns sum over the row's n_blocks blocks of absmax[blk_off + b] * sum(table[code] * x), where a block is
    `chunks` runs of chunk_codes(mode) codes (32, or 64 for 'bytes') starting at packed[byte_off] and x[x_off]
    (x de-interleaved per 32 at k = 4, permuted per 64 by BYTE_LANE_ORDER for 'bytes').
    """

    @intrinsic
    def row_dot(typingctx, packed, byte_off, x, x_off, absmax, blk_off, nblocks, chunks, table):
        sig = types.float32(packed, byte_off, x, x_off, absmax, blk_off, nblocks, chunks, table)

        def codegen(context, builder, signature, args):
            pk_arr, byte_off_v, x_arr, x_off_v, am_arr, blk_off_v, nblocks_v, chunks_v, tb_arr = args
            arg_types = signature.args
            pk = context.make_array(arg_types[0])(context, builder, pk_arr).data
            xp = context.make_array(arg_types[2])(context, builder, x_arr).data
            am = context.make_array(arg_types[4])(context, builder, am_arr).data
            tb = context.make_array(arg_types[8])(context, builder, tb_arr).data
            module = builder.module
            fma = cgutils.get_or_insert_function(module, ir.FunctionType(_V16F, [_V16F] * 3), "llvm.fma.v16f32")
            if mode == "bytes":
                permute_b = cgutils.get_or_insert_function(
                    module, ir.FunctionType(_V64B, [_V64B] * 3), "llvm.x86.avx512.vpermi2var.qi.512"
                )
                tb_bytes = builder.bitcast(tb, _I8.as_pointer())
                planes = [_vector_load(builder, tb_bytes, ir.Constant(_I64, 64 * i), _V64B) for i in range(16)]
            else:
                lookup = _register_lookup(builder, tb, fma, mode)

            zero = ir.Constant(_V16F, [0.0] * 16)
            acc = cgutils.alloca_once_value(builder, zero)
            acc_a = cgutils.alloca_once_value(builder, zero)
            acc_b = cgutils.alloca_once_value(builder, zero)
            n_codes = chunk_codes(mode)
            # the register permutes read only the index bits they need (kernel_table tiles the table to match)
            unmasked = mode in ("permute", "permute2")
            chunk_bytes = ir.Constant(_I64, n_codes * bits // 8)
            prefetch = _prefetch_function(module)

            def emit_chunk(chunk):
                """Accumulate the chunk-th run of n_codes codes of the row into acc_a and acc_b."""
                byte = builder.add(byte_off_v, builder.mul(chunk, chunk_bytes))
                x_index = builder.add(x_off_v, builder.mul(chunk, ir.Constant(_I64, n_codes)))
                if mode == "bytes":
                    values = _byte_lookup(builder, permute_b, planes, _codes64(builder, pk, byte, bits), bits)
                else:
                    if bits == 4:
                        raw = builder.zext(_vector_load(builder, pk, byte, ir.VectorType(_I8, 16)), _V16I)
                        codes_a = builder.lshr(raw, ir.Constant(_V16I, [4] * 16))  # even elements (high nibbles)
                        codes_b = raw  # odd elements (low nibbles)
                        if not unmasked:
                            codes_b = builder.and_(raw, ir.Constant(_V16I, [15] * 16))
                    else:
                        raw = _vector_load(builder, pk, byte, ir.VectorType(_I8, 4 * bits))
                        codes_a = _decode_general(builder, raw, bits, 0, masked=not unmasked)
                        codes_b = _decode_general(builder, raw, bits, 1, masked=not unmasked)
                    values = [lookup(codes_a), lookup(codes_b)]
                for v, value in enumerate(values):  # 16 codes each, alternating between two accumulators
                    x_v = _vector_load(builder, xp, builder.add(x_index, ir.Constant(_I64, 16 * v)), _V16F)
                    target = acc_a if v % 2 == 0 else acc_b
                    builder.store(builder.call(fma, [value, x_v, builder.load(target)]), target)

            block_bytes = builder.mul(chunks_v, chunk_bytes)
            with cgutils.for_range(builder, nblocks_v) as block_loop:
                block = block_loop.index
                builder.store(zero, acc_a)
                builder.store(zero, acc_b)
                ahead = builder.add(byte_off_v, builder.mul(block, block_bytes))
                ahead = builder.add(ahead, ir.Constant(_I64, PREFETCH_BYTES))  # never faults, even past the end
                read, locality, data = ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)
                builder.call(prefetch, [builder.gep(pk, [ahead]), read, locality, data])
                if unroll:  # blocksize known at compile time: the chunks of a block unrolled, no inner loop
                    for i in range(unroll):
                        emit_chunk(builder.add(builder.mul(block, ir.Constant(_I64, unroll)), ir.Constant(_I64, i)))
                else:
                    with cgutils.for_range(builder, chunks_v) as chunk_loop:
                        emit_chunk(builder.add(builder.mul(block, chunks_v), chunk_loop.index))  # index in the row
                scale = _splat(builder, builder.load(builder.gep(am, [builder.add(blk_off_v, block)])))
                block_sum = builder.fadd(builder.load(acc_a), builder.load(acc_b))
                builder.store(builder.call(fma, [block_sum, scale, builder.load(acc)]), acc)
            return _horizontal_sum(builder, module, builder.load(acc))

        return sig, codegen

    return row_dot


# Lane 2m of a k = 3 step holds group m of 8 codes (the step's first 64 codes, one block), lane 2m + 1 group 8 + m
# (the second block): the two blocks' scales then alternate like one 64-bit broadcast of the adjacent absmax pair.
GROUP3_LANE_GROUPS = [m // 2 + 8 * (m % 2) for m in range(16)]


def _group3_order() -> np.ndarray:
    """order[16 * j + lane] = which of 128 codes the k = 3 group decode leaves in lane `lane` of vector j: code j
    of group GROUP3_LANE_GROUPS[lane] (8 codes, 3 bytes)."""
    return np.arange(128).reshape(16, 8)[GROUP3_LANE_GROUPS].T.reshape(-1)


GROUP3_ORDER = _group3_order()  # (128,)


def make_row_dot_group3(mode: str):
    """row_dot for k = 3 with the same arguments as make_row_dot, decoding 128 codes (48 bytes) per step.

    Every dword lane takes one group of 8 codes (3 bytes) as a 24-bit word (one vpermb for 16 groups); 8 fixed
    shifts then give code j of every group, 16 codes per look-up, with x permuted to GROUP3_ORDER. `absmax` holds one
    scale per 64 codes (even lanes of a step hold its first 64 codes, odd lanes the next), nblocks counts them.
    """

    @intrinsic
    def row_dot(typingctx, packed, byte_off, x, x_off, absmax, blk_off, nblocks, chunks, table):
        sig = types.float32(packed, byte_off, x, x_off, absmax, blk_off, nblocks, chunks, table)

        def codegen(context, builder, signature, args):
            pk_arr, byte_off_v, x_arr, x_off_v, am_arr, blk_off_v, nblocks_v, _, tb_arr = args
            arg_types = signature.args
            packed_struct = context.make_array(arg_types[0])(context, builder, pk_arr)
            pk, n_bytes = packed_struct.data, packed_struct.nitems
            xp = context.make_array(arg_types[2])(context, builder, x_arr).data
            am = context.make_array(arg_types[4])(context, builder, am_arr).data
            tb = context.make_array(arg_types[8])(context, builder, tb_arr).data
            module = builder.module
            fma = cgutils.get_or_insert_function(module, ir.FunctionType(_V16F, [_V16F] * 3), "llvm.fma.v16f32")
            lookup = _register_lookup(builder, tb, fma, mode)  # vpermps reads index bits 0..3: 8 values twice
            prefetch = _prefetch_function(module)
            order = [i for group in GROUP3_LANE_GROUPS for i in (3 * group + 2, 3 * group + 1, 3 * group, 3 * group)]
            order_const = ir.Constant(ir.VectorType(_I32, 64), order)  # little-endian 24-bit big-endian words
            # the last 48 bytes of packed are read by a masked load (no read past its end)
            mask_type = ir.VectorType(ir.IntType(1), 64)
            first48 = ir.Constant(mask_type, [1] * 48 + [0] * 16)
            masked_load = cgutils.get_or_insert_function(
                module,
                ir.FunctionType(_V64B, [_V64B.as_pointer(), _I32, mask_type, _V64B]),
                "llvm.masked.load.v64i8.p0",
            )
            zero = ir.Constant(_V16F, [0.0] * 16)
            acc = cgutils.alloca_once_value(builder, zero)
            steps = builder.lshr(nblocks_v, ir.Constant(_I64, 1))
            with cgutils.for_range(builder, steps) as loop:
                step_i = loop.index
                byte = builder.add(byte_off_v, builder.mul(step_i, ir.Constant(_I64, 48)))
                ahead = builder.add(byte, ir.Constant(_I64, PREFETCH_BYTES))  # never faults, even past the end
                read, locality, data = ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)
                builder.call(prefetch, [builder.gep(pk, [ahead]), read, locality, data])
                pointer = builder.bitcast(builder.gep(pk, [byte]), _V64B.as_pointer())
                fits = builder.icmp_unsigned("<=", builder.add(byte, ir.Constant(_I64, 64)), n_bytes)
                with builder.if_else(fits, likely=True) as (plain, at_end):
                    with plain:  # 64 bytes, 16 of them unused (a masked load is many times slower on Zen 5)
                        raw_plain = builder.load(pointer, align=1)
                        plain_block = builder.block
                    with at_end:  # the last step of packed: only its 48 bytes are read
                        zeros = ir.Constant(_V64B, [0] * 64)
                        raw_end = builder.call(masked_load, [pointer, ir.Constant(_I32, 1), first48, zeros])
                        end_block = builder.block
                raw = builder.phi(_V64B)
                raw.add_incoming(raw_plain, plain_block)
                raw.add_incoming(raw_end, end_block)
                words = builder.bitcast(builder.shuffle_vector(raw, raw, order_const), _V16I)
                x_index = builder.add(x_off_v, builder.mul(step_i, ir.Constant(_I64, 128)))
                partial = []
                for j in range(8):
                    codes = words if j == 7 else builder.lshr(words, ir.Constant(_V16I, [21 - 3 * j] * 16))
                    x_v = _vector_load(builder, xp, builder.add(x_index, ir.Constant(_I64, 16 * j)), _V16F)
                    if j < 4:
                        partial.append(builder.fmul(lookup(codes), x_v))
                    else:
                        partial[j - 4] = builder.call(fma, [lookup(codes), x_v, partial[j - 4]])
                step_sum = builder.fadd(builder.fadd(partial[0], partial[1]), builder.fadd(partial[2], partial[3]))
                first = builder.add(blk_off_v, builder.shl(step_i, ir.Constant(_I64, 1)))
                pair = builder.load(builder.bitcast(builder.gep(am, [first]), _F64.as_pointer()), align=4)
                pairs = builder.insert_element(ir.Constant(_V8D, ir.Undefined), pair, ir.Constant(_I32, 0))
                pairs = builder.shuffle_vector(pairs, pairs, ir.Constant(ir.VectorType(_I32, 8), [0] * 8))
                scale = builder.bitcast(pairs, _V16F)  # (absmax[first], absmax[first + 1]) in even, odd lanes
                builder.store(builder.call(fma, [step_sum, scale, builder.load(acc)]), acc)
            return _horizontal_sum(builder, module, builder.load(acc))

        return sig, codegen

    return row_dot


def layout(bits: int, mode: str, n_cols: int, blocksize: int) -> str:
    """How the kernel walks a row: 'group3' (k = 3 on a CPU with VBMI, 128 codes per step, K a multiple of 128 and
    blocks of whole 64-code halves), 'bytes' (64 codes per step) or 'chunks' (32 codes per step)."""
    if HAS_VBMI and bits == 3 and mode == "permute" and n_cols % 128 == 0 and blocksize % 64 == 0:
        return "group3"
    return "bytes" if mode == "bytes" else "chunks"


def _build_kernel(bits: int, mode: str, walk: str, unroll: int = 0):
    """The parallel Numba GEMV for one (bits, mode, layout, unroll): rows split over threads, each x row dotted with
    it; unroll > 0 compiles for blocks of exactly that many chunks."""
    row_dot = make_row_dot_group3(mode) if walk == "group3" else make_row_dot(bits, mode, unroll)
    n_codes = 64 if walk == "group3" else chunk_codes(mode)  # group3: blocks are the 64-code halves of a step

    @njit(parallel=True, fastmath=True)
    def kernel(packed, x, x_lanes, table, absmax, n_rows, n_cols, blocksize, out):  # pragma: no cover - compiled
        batch = x.shape[0]
        blocks_per_row = n_cols // blocksize
        chunks = blocksize // n_codes
        row_bytes = n_cols * bits // 8
        flat_x = reorder_aligned(x, x_lanes).reshape(-1)  # once, before the threads start
        for r in prange(n_rows):
            for bb in range(batch):
                out[bb, r] = row_dot(
                    packed,
                    r * row_bytes,
                    flat_x,
                    bb * n_cols,
                    absmax,
                    r * blocks_per_row,
                    blocks_per_row,
                    chunks,
                    table,
                )

    return kernel


_KERNELS: dict[tuple[int, str, str, int], object] = {}
UNROLL_CHUNKS = (1, 2, 4)  # chunks per block that get a kernel with the block unrolled (blocks of 32..256 codes)


def _kernel(bits: int, mode: str, walk: str = "chunks", unroll: int = 0):
    """The compiled kernel for (bits, mode, layout, unroll), built on first use."""
    key = (bits, mode, walk, unroll)
    if key not in _KERNELS:
        _KERNELS[key] = _build_kernel(bits, mode, walk, unroll)
    return _KERNELS[key]


NIBBLE_ORDER = np.arange(32).reshape(16, 2).T.reshape(-1)  # (32,) k = 4: even elements, then odd ones
IDENTITY_ORDER = np.arange(16)  # (16,) x as it is


def x_order(bits: int, mode: str, walk: str) -> np.ndarray:
    """order[i] = which x element of a step (order.size elements) the row kernel multiplies in position i."""
    if walk == "group3":  # code j of the lane-th group of 8 sits in lane `lane` of vector j
        return GROUP3_ORDER
    if bits == 4:  # the kernel takes even elements from high nibbles, odd ones from low nibbles
        return NIBBLE_ORDER
    if mode == "bytes":  # the byte-plane look-up leaves the 64 codes of a chunk in BYTE_LANE_ORDER
        return BYTE_LANE_ORDER
    return IDENTITY_ORDER


@njit(cache=True)
def reorder_aligned(x, order):  # pragma: no cover - compiled
    """x (B, K) with each run of order.size elements permuted by order, in a new array starting on a cache line.

    The row kernels read x 64 bytes at a time; from a misaligned x every such load spans two cache lines.
    """
    batch, n_cols = x.shape
    period = order.size
    buffer = np.empty(batch * n_cols + 16, dtype=np.float32)
    start = ((64 - buffer.ctypes.data % 64) % 64) // 4  # numpy and Numba align to at least 4 bytes
    out = buffer[start : start + batch * n_cols].reshape((batch, n_cols))
    for b in range(batch):
        for step in range(0, n_cols, period):
            for i in range(period):
                out[b, step + i] = x[b, step + order[i]]
    return out


@dataclass(frozen=True)
class Plan:
    """The compiled kernel and its constant inputs for one (bits, table, K, blocksize) with blocks inside rows.

    ``kernel(packed, x, x_lanes, table, absmax, n_rows, n_cols, blocksize, out)`` runs with table = ``table``,
    x_lanes = ``x_lanes`` and blocksize = ``blocksize``; its absmax holds each block scale ``repeat`` times (the
    3-bit 'group3' walk takes one scale per 64 codes).
    """

    kernel: Any
    x_lanes: np.ndarray
    table: np.ndarray
    blocksize: int
    repeat: int


def plan(bits: int, table: np.ndarray, n_cols: int, blocksize: int) -> Plan:
    """The Plan for rows of n_cols codes in blocks of blocksize (a divisor of n_cols); the caller checked that the
    SIMD kernel applies (cpu.simd_applies)."""
    mode = lookup_mode(bits, table)
    if mode is None:
        raise ValueError(f"no SIMD look-up for bits={bits} with a non-affine table")
    walk = layout(bits, mode, n_cols, blocksize)
    repeat = blocksize // 64 if walk == "group3" else 1  # group3: one scale per 64 codes
    k_blocksize = blocksize // repeat
    chunks = k_blocksize // chunk_codes(mode)
    unroll = chunks if walk != "group3" and chunks in UNROLL_CHUNKS else 0
    return Plan(_kernel(bits, mode, walk, unroll), x_order(bits, mode, walk), kernel_table(bits, table, mode),
                k_blocksize, repeat)


def gemv(
    packed: np.ndarray, bits: int, shape: tuple[int, int], table: np.ndarray, absmax: np.ndarray,
    offset: np.ndarray | None, blocksize: int, x: np.ndarray, out: np.ndarray,
) -> None:
    """out (B, N) = x (B, K) @ W.T with the SIMD kernel; the caller checked that it applies (cpu.simd_applies)."""
    n_rows, n_cols = shape
    if n_cols % blocksize != 0:  # blocks span whole rows (blocksize a multiple of K): one scale per row
        first_block = np.arange(n_rows, dtype=np.int64) * n_cols // blocksize  # (N,)
        absmax = np.ascontiguousarray(absmax[first_block])
        offset = None if offset is None else np.ascontiguousarray(offset[first_block])
        blocksize = n_cols
    p = plan(bits, table, n_cols, blocksize)
    k_absmax = np.repeat(absmax, p.repeat) if p.repeat > 1 else absmax
    p.kernel(packed, x, p.x_lanes, p.table, k_absmax, n_rows, n_cols, p.blocksize, out)
    if offset is not None:  # sum_b offset[r, b] * sum(x over block b's columns)
        blocks_per_row = n_cols // blocksize
        x_sums = x.reshape(x.shape[0], blocks_per_row, blocksize).sum(axis=2)  # (B, K / blocksize)
        out += x_sums @ offset.reshape(n_rows, blocks_per_row).T  # (B, N)
