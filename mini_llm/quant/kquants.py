"""llama.cpp's k-quants (Q2_K..Q6_K): 256-element super-blocks with quantized sub-block scales and fp16 scales.

A port of ggml-quants.c (``dequantize_row_*`` and ``quantize_row_*_ref``, the reference algorithms without an
importance matrix) to vectorised numpy over all blocks at once. Every function takes or returns the raw block
bytes as a (n_blocks, block_bytes) uint8 array and float32 values as (n_blocks, 256). The arithmetic is float32
in the C code's order (sums accumulate left to right, ``nearest_int`` rounds half to even), so dequantization is
bit for bit the reference's. Byte layouts (offsets within one block):

- Q2_K (84): scales[16] (low nibble scale, high nibble min) | qs[64] (2-bit) | d fp16 | dmin fp16
- Q3_K (110): hmask[32] (high bit) | qs[64] (low 2 bits) | scales[12] (16 x 6-bit, offset 32) | d fp16
- Q4_K (144): d fp16 | dmin fp16 | scales[12] (8 x 6-bit scale, 8 x 6-bit min) | qs[128] (4-bit)
- Q5_K (176): d fp16 | dmin fp16 | scales[12] | qh[32] (fifth bit) | qs[128] (low 4 bits)
- Q6_K (210): ql[128] (low 4 bits) | qh[64] (high 2 bits) | scales[16] (int8) | d fp16
"""

from __future__ import annotations

import numpy as np

QK_K = 256  # elements per super-block
EPS = np.float32(1e-15)  # GROUP_MAX_EPS: a sub-block whose absmax is below this is all zero
F32 = np.float32


def half(blocks: np.ndarray, start: int) -> np.ndarray:
    """The fp16 field at byte `start` of each block as float32, shape (n_blocks, 1)."""
    return blocks[:, start:start + 2].copy().view(np.float16).astype(F32)


def to_half(values: np.ndarray) -> np.ndarray:
    """float32 values (n,) as their fp16 bytes (n, 2), rounded to nearest even like GGML_FP32_TO_FP16."""
    with np.errstate(over="ignore"):  # an overflow to inf is caught by the caller's finiteness check
        return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def seqsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis in float32, left to right like the C loops (numpy's sum is pairwise)."""
    return np.cumsum(a, axis=-1, dtype=F32)[..., -1]


def bit_planes(data: np.ndarray, shifts: list[int], mask: int) -> np.ndarray:
    """(n, k) bytes -> (n, len(shifts), k) fields (data >> shift) & mask."""
    return (data[:, None, :] >> np.array(shifts, dtype=np.uint8)[None, :, None]) & np.uint8(mask)


def unpack_k4(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12 scale bytes of Q4_K/Q5_K -> (scale, min), each (n, 8) uint8 in [0, 63] (get_scale_min_k4)."""
    low, mid, top = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate([low & 63, (top & 0xF) | ((low >> 6) << 4)], axis=1)
    mn = np.concatenate([mid & 63, (top >> 4) | ((mid >> 6) << 4)], axis=1)
    return sc, mn


def pack_k4(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """(n, 8) 6-bit scales and mins -> the 12 scale bytes of Q4_K/Q5_K (the inverse of unpack_k4)."""
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = mn[:, :4] | ((mn[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 0xF) | ((mn[:, 4:] & 0xF) << 4)
    return out


def unpack_q3_scales(scales: np.ndarray) -> np.ndarray:
    """The 12 scale bytes of Q3_K -> (n, 16) signed sub-block scales in [-32, 31]."""
    low = np.concatenate([scales[:, :8] & 0xF, scales[:, :8] >> 4], axis=1)  # (n, 16)
    high = bit_planes(scales[:, 8:12], [0, 2, 4, 6], 3).reshape(-1, 16)  # plane j//4, byte j%4
    return (low | (high << 4)).astype(np.int16) - 32


def pack_q3_scales(levels: np.ndarray) -> np.ndarray:
    """(n, 16) scale levels in [0, 63] -> the 12 scale bytes of Q3_K (the inverse of unpack_q3_scales)."""
    out = np.zeros((levels.shape[0], 12), dtype=np.uint8)
    out[:, :8] = (levels[:, :8] & 0xF) | ((levels[:, 8:] & 0xF) << 4)
    high = (levels >> 4).reshape(-1, 4, 4)  # (n, plane, byte)
    out[:, 8:] = high[:, 0] | (high[:, 1] << 2) | (high[:, 2] << 4) | (high[:, 3] << 6)
    return out


def crumbs(blocks: np.ndarray, start: int) -> np.ndarray:
    """The 64 bytes of 2-bit codes at `start` -> (n, 256): element 128h + 32j + l is byte 32h + l, bits 2j."""
    q = bit_planes(blocks[:, start:start + 64].reshape(-1, 32), [0, 2, 4, 6], 3)  # (2n, 4, 32)
    return q.reshape(-1, QK_K)


def pack_crumbs(L: np.ndarray) -> np.ndarray:
    """(n, 256) codes in [0, 3] -> 64 bytes, the inverse of crumbs."""
    q = L.reshape(-1, 2, 4, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)).reshape(-1, 64)


def nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, 128) bytes -> (n, 256): element 64c + 32h + l is nibble h of byte 32c + l."""
    return bit_planes(qs.reshape(-1, 32), [0, 4], 0xF).reshape(-1, QK_K)


def pack_nibbles(L: np.ndarray) -> np.ndarray:
    """(n, 256) codes in [0, 15] -> 128 bytes, the inverse of nibbles."""
    q = L.reshape(-1, 4, 2, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)


def high_bits(qh: np.ndarray) -> np.ndarray:
    """(n, 32) bytes -> (n, 256) bits: element 32b + l is bit b of byte l."""
    return bit_planes(qh, list(range(8)), 1).reshape(-1, QK_K)


def pack_high_bits(bits: np.ndarray) -> np.ndarray:
    """(n, 256) bits -> 32 bytes, the inverse of high_bits."""
    planes = bits.reshape(-1, 8, 32).astype(np.uint8) << np.arange(8, dtype=np.uint8)[None, :, None]
    return np.bitwise_or.reduce(planes, axis=1)


def per_sub(values: np.ndarray, sub: int) -> np.ndarray:
    """(n, 256/sub) per-sub-block factors -> (n, 256/sub, 1) to broadcast over the sub-block's elements."""
    return values.reshape(values.shape[0], QK_K // sub, 1)


def dequantize_q2_k(blocks: np.ndarray) -> np.ndarray:
    """Q2_K blocks (n, 84) -> (n, 256) float32: d*(sc & 15)*q - dmin*(sc >> 4) per 16 elements."""
    sc = blocks[:, :16]
    dl = per_sub(half(blocks, 80) * (sc & 0xF).astype(F32), 16)
    ml = per_sub(half(blocks, 82) * (sc >> 4).astype(F32), 16)
    q = crumbs(blocks, 16).astype(F32).reshape(-1, 16, 16)
    return (dl * q - ml).reshape(-1, QK_K)


def dequantize_q3_k(blocks: np.ndarray) -> np.ndarray:
    """Q3_K blocks (n, 110) -> (n, 256) float32: d*(sc - 32)*(q - 4 when the hmask bit is clear)."""
    dl = per_sub(half(blocks, 108) * unpack_q3_scales(blocks[:, 96:108]).astype(F32), 16)
    q = crumbs(blocks, 32).astype(np.int16) - 4 * (1 - high_bits(blocks[:, :32]).astype(np.int16))
    return (dl * q.astype(F32).reshape(-1, 16, 16)).reshape(-1, QK_K)


def dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    """Q4_K blocks (n, 144) -> (n, 256) float32: d*sc*q - dmin*m per 32 elements."""
    sc, mn = unpack_k4(blocks[:, 4:16])
    d, dm = per_sub(half(blocks, 0) * sc.astype(F32), 32), per_sub(half(blocks, 2) * mn.astype(F32), 32)
    q = nibbles(blocks[:, 16:144]).astype(F32).reshape(-1, 8, 32)
    return (d * q - dm).reshape(-1, QK_K)


def dequantize_q5_k(blocks: np.ndarray) -> np.ndarray:
    """Q5_K blocks (n, 176) -> (n, 256) float32: as Q4_K with a fifth bit from qh."""
    sc, mn = unpack_k4(blocks[:, 4:16])
    d, dm = per_sub(half(blocks, 0) * sc.astype(F32), 32), per_sub(half(blocks, 2) * mn.astype(F32), 32)
    q = nibbles(blocks[:, 48:176]) | (high_bits(blocks[:, 16:48]) << 4)
    return (d * q.astype(F32).reshape(-1, 8, 32) - dm).reshape(-1, QK_K)


def six_bit_codes(blocks: np.ndarray) -> np.ndarray:
    """Q6_K blocks -> (n, 256) codes in [0, 63]: element 128h + 32k + l from ql[64h + 32(k&1) + l], qh[32h + l]."""
    low = bit_planes(blocks[:, :128].reshape(-1, 64), [0, 4], 0xF)  # (2n, nibble, 64): k = 2*nibble + (l >= 32)
    high = bit_planes(blocks[:, 128:192].reshape(-1, 32), [0, 2, 4, 6], 3)  # (2n, k, 32)
    return (low.reshape(-1, 4, 32) | (high << 4)).reshape(-1, QK_K)


def dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    """Q6_K blocks (n, 210) -> (n, 256) float32: d*sc*(q - 32) per 16 elements, sc int8."""
    d = per_sub(half(blocks, 208) * blocks[:, 192:208].view(np.int8).astype(F32), 16)
    q = six_bit_codes(blocks).astype(np.int16) - 32
    return (d * q.astype(F32).reshape(-1, 16, 16)).reshape(-1, QK_K)


def first_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the signed value of largest magnitude (the first on ties, +0 when all are zero, as in C) and |it|."""
    signed = x[np.arange(x.shape[0]), np.abs(x).argmax(axis=1)]
    signed = np.where(signed == 0, x.dtype.type(0), signed)  # C's running max starts at +0.0 and skips -0.0
    return signed, np.abs(signed)


def make_qkx2_quants(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int,
                     use_mad: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted search for scale and min of codes in [0, nmax] per row of x (m, n) -> (scale, -min, codes (m, n))."""
    with np.errstate(all="ignore"):  # flat rows divide by zero; they are overwritten at the end
        low, high = np.minimum(x.min(axis=1), F32(0)), x.max(axis=1)  # (m,)
        sum_w, sum_x = seqsum(w), seqsum(w * x)

        def codes(iscale: np.ndarray, offset: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(iscale[:, None] * (x - offset[:, None])), 0, nmax)

        def error(scale: np.ndarray, offset: np.ndarray, L: np.ndarray) -> np.ndarray:
            diff = scale[:, None] * L + offset[:, None] - x
            return seqsum(w * (np.abs(diff) if use_mad else diff * diff))

        iscale = F32(nmax) / (high - low)
        scale, offset, L = F32(1) / iscale, low, codes(iscale, low)
        best = error(scale, offset, L)
        for step in range(nstep + 1):  # the C loop moves min as it goes: later steps start from the best so far
            aux = codes((F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / (high - offset), offset)
            sum_l, sum_l2, sum_xl = seqsum(w * aux), seqsum(w * aux * aux), seqsum(w * aux * x)
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            positive = this_min > 0
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
            this_min = np.where(positive, F32(0), this_min)
            current = error(this_scale, this_min, aux)
            better = (D > 0) & (current < best)
            L = np.where(better[:, None], aux, L)
            best, scale, offset = (np.where(better, a, b) for a, b in ((current, best), (this_scale, scale),
                                                                        (this_min, offset)))
        flat = high == low
        L[flat] = 0
        scale[flat] = 0
        offset = np.where(flat, low, offset)
    return scale.astype(F32), (-offset).astype(F32), L


def make_qx_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scale search (rmse_type 1, weights x^2) for codes in [0, 2 nmax) per row of x -> (scale, codes)."""
    signed, amax = first_absmax(x)
    w = x * x
    with np.errstate(all="ignore"):

        def fit(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            levels = np.clip(np.rint(iscale[:, None] * x), -nmax, nmax - 1)
            return levels, seqsum(w * x * levels), seqsum(w * levels * levels)

        L, sumlx, suml2 = fit(F32(-nmax) / signed)
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0))
        best = scale * sumlx
        for step in (s for s in range(-9, 10) if s):
            levels, slx, sl2 = fit(-(F32(nmax) + F32(0.1) * F32(step)) / signed)
            better = (sl2 > 0) & (slx * slx > best * sl2)
            L = np.where(better[:, None], levels, L)
            scale = np.where(better, slx / sl2, scale)
            best = np.where(better, scale * slx, best)
    zero = amax < EPS
    L = L + nmax
    L[zero] = 0
    return np.where(zero, F32(0), scale).astype(F32), L


def make_q3_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric codes refined one element at a time (do_rmse, weights x^2) per row of x -> (scale, codes)."""
    signed, amax = first_absmax(x)
    w = x * x
    with np.errstate(all="ignore"):
        L = np.clip(np.rint((F32(-nmax) / signed)[:, None] * x), -nmax, nmax - 1)
        sumlx, suml2 = seqsum(w * x * L), seqsum(w * L * L)
        for _ in range(5):  # a row whose pass changes nothing stays put, as when the C loop breaks
            changed = False
            for i in range(x.shape[1]):
                xi, wi, li = x[:, i], w[:, i], L[:, i]
                slx = sumlx - wi * xi * li
                sl2 = suml2 - wi * li * li
                new = np.clip(np.rint(xi * sl2 / slx), -nmax, nmax - 1)
                new_slx, new_sl2 = slx + wi * xi * new, sl2 + wi * new * new
                take = (slx > 0) & (new != li) & (new_sl2 > 0)
                take &= new_slx * new_slx * suml2 > sumlx * sumlx * new_sl2
                L[:, i] = np.where(take, new, li)
                sumlx, suml2 = np.where(take, new_slx, sumlx), np.where(take, new_sl2, suml2)
                changed = changed or bool(take.any())
            if not changed:
                break
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0))
    zero = amax < EPS
    L = L + nmax
    L[zero] = 0
    return np.where(zero, F32(0), scale).astype(F32), L


def positive_max(values: np.ndarray) -> np.ndarray:
    """Per row the largest value if positive, else +0.0 (C's running max from 0; a -0.0 min never wins)."""
    top = values.max(axis=1)
    return np.where(top > 0, top, F32(0))


def wrap(values: np.ndarray, signed: bool = False) -> np.ndarray:
    """Rounded float values stored in a C uint8_t (or int8_t): modulo 256, as int64."""
    v = values.astype(np.int64) & 0xFF
    return v - ((v & 0x80) << 1) if signed else v


def requantize(x: np.ndarray, d: np.ndarray, offset: np.ndarray | None, lo: int, hi: int,
               L: np.ndarray) -> np.ndarray:
    """Codes round((x + offset)/d) in [lo, hi] per sub-block (x (n, s, e), d (n, s)); sub-blocks with d == 0 keep L."""
    with np.errstate(all="ignore"):
        shifted = x if offset is None else x + offset[..., None]
        new = np.clip(np.rint(shifted / d[..., None]), lo, hi)
    return np.where(d[..., None] != 0, new, L.reshape(x.shape)).reshape(x.shape[0], QK_K)


def quantize_q2_k(x: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> Q2_K blocks (n, 84) by quantize_row_q2_K_ref."""
    n = x.shape[0]
    sub = x.reshape(-1, 16)
    scales, mins, L = make_qkx2_quants(sub, np.abs(sub), 3, -0.5, 0.1, 15, True)
    scales, mins = scales.reshape(n, 16), mins.reshape(n, 16)
    max_scale, max_min = positive_max(scales), positive_max(mins)
    with np.errstate(divide="ignore"):
        ls = wrap(np.rint(np.where(max_scale > 0, F32(15) / max_scale, F32(0))[:, None] * scales))
        lm = wrap(np.rint(np.where(max_min > 0, F32(15) / max_min, F32(0))[:, None] * mins))
    packed = ((ls | (lm << 4)) & 0xFF).astype(np.uint8)
    d16, dmin16 = to_half(max_scale / F32(15)), to_half(max_min / F32(15))
    d = d16.view(np.float16).astype(F32) * (packed & 0xF).astype(F32)  # (n, 16)
    dm = dmin16.view(np.float16).astype(F32) * (packed >> 4).astype(F32)
    L = requantize(x.reshape(n, 16, 16), d, dm, 0, 3, L)
    return np.concatenate([packed, pack_crumbs(L.astype(np.uint8)), d16, dmin16], axis=1)


def quantize_q3_k(x: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> Q3_K blocks (n, 110) by quantize_row_q3_K_ref."""
    n = x.shape[0]
    scales, L = make_q3_quants(x.reshape(-1, 16), 4)
    scales = scales.reshape(n, 16)
    max_scale, _ = first_absmax(scales)
    nonzero = max_scale != 0
    with np.errstate(divide="ignore"):
        iscale = np.where(nonzero, F32(-32) / max_scale, F32(0))
        d16 = to_half(np.where(nonzero, F32(1) / iscale, F32(0)))
    levels = np.where(nonzero[:, None], np.clip(wrap(np.rint(iscale[:, None] * scales), True), -32, 31) + 32, 0)
    d = d16.view(np.float16).astype(F32) * (levels - 32).astype(F32)  # (n, 16)
    L = requantize(x.reshape(n, 16, 16), d, None, -4, 3, L - 4) + 4
    L = L.astype(np.uint8)
    return np.concatenate([pack_high_bits(L > 3), pack_crumbs(L & 3), pack_q3_scales(levels.astype(np.uint8)), d16],
                          axis=1)


def search_k4(x: np.ndarray, nmax: int, rmin: float, nstep: int) -> tuple[np.ndarray, np.ndarray]:
    """The shared Q4_K/Q5_K steps -> (d, dmin and the 12 scale bytes (n, 16), codes (n, 256) uint8)."""
    n = x.shape[0]
    sub = x.reshape(-1, 32)
    w = np.sqrt(seqsum(sub * sub) / F32(32))[:, None] + np.abs(sub)
    scales, mins, L = make_qkx2_quants(sub, w, nmax, rmin, 0.1, nstep, False)
    scales, mins = scales.reshape(n, 8), mins.reshape(n, 8)
    max_scale, max_min = positive_max(scales), positive_max(mins)
    with np.errstate(divide="ignore"):
        ls = np.minimum(63, wrap(np.rint(np.where(max_scale > 0, F32(63) / max_scale, F32(0))[:, None] * scales)))
        lm = np.minimum(63, wrap(np.rint(np.where(max_min > 0, F32(63) / max_min, F32(0))[:, None] * mins)))
    d16, dmin16 = to_half(max_scale / F32(63)), to_half(max_min / F32(63))
    d = d16.view(np.float16).astype(F32) * ls.astype(F32)  # (n, 8)
    dm = dmin16.view(np.float16).astype(F32) * lm.astype(F32)
    L = requantize(x.reshape(n, 8, 32), d, dm, 0, nmax, L).astype(np.uint8)
    head = np.concatenate([d16, dmin16, pack_k4(ls.astype(np.uint8), lm.astype(np.uint8))], axis=1)
    return head, L


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> Q4_K blocks (n, 144) by quantize_row_q4_K_ref."""
    head, L = search_k4(x, 15, -1.0, 20)
    return np.concatenate([head, pack_nibbles(L)], axis=1)


def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> Q5_K blocks (n, 176) by quantize_row_q5_K_ref."""
    head, L = search_k4(x, 31, -0.5, 15)
    return np.concatenate([head, pack_high_bits(L > 15), pack_nibbles(L & 0xF)], axis=1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """(n, 256) float32 -> Q6_K blocks (n, 210) by quantize_row_q6_K_ref."""
    n = x.shape[0]
    scales, L = make_qx_quants(x.reshape(-1, 16), 32)
    scales = scales.reshape(n, 16)
    max_scale, max_abs = first_absmax(scales)
    zero = max_abs < EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = F32(-128) / max_scale
        d16 = to_half(np.where(zero, F32(0), F32(1) / iscale))
        sc = wrap(np.minimum(127, np.rint(iscale[:, None] * scales)), True)
    sc = np.where(zero[:, None], 0, sc)
    d = d16.view(np.float16).astype(F32) * sc.astype(F32)  # (n, 16)
    L = (requantize(x.reshape(n, 16, 16), d, None, -32, 31, L - 32) + 32).astype(np.uint8)
    L[zero] = 0
    low = (L & 0xF).reshape(n, 2, 4, 32)  # (n, half, k, l)
    ql = np.concatenate([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], axis=2)
    high = (L >> 4).reshape(n, 2, 4, 32)
    qh = high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    return np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), sc.astype(np.int8).view(np.uint8), d16], axis=1)
