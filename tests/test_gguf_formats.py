"""GGUF block formats (mini_llm.quant.gguf_formats, kquants) against the `gguf` package and llama.cpp's C code.

References: `gguf.quants` (llama.cpp's numpy port) for every dequantization and for Q4_0/Q4_1/Q8_0 quantization;
for the k-quant quantizers, which `gguf` lacks, a scalar line-by-line transliteration of ggml-quants.c's
``quantize_row_q*_K_ref`` below (np.float32 scalars, ``nearest_int`` by its float trick), an error budget against
float64 round-to-nearest, and re-quantization of dequantized bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mini_llm.quant.gguf_formats import GGUF_TYPES, gguf_bits_per_weight, gguf_dequantize, gguf_quantize

gguf = pytest.importorskip("gguf")
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize as gguf_deq  # noqa: E402
from gguf.quants import quantize as gguf_q  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ("q4_0", "q4_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
KQUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
FP16_OFFSETS = {"q4_0": [0], "q4_1": [0, 2], "q8_0": [0], "q2_k": [80, 82], "q3_k": [108], "q4_k": [0, 2],
                "q5_k": [0, 2], "q6_k": [208]}
f32 = np.float32


def qtype(name: str) -> GGMLQuantizationType:
    return getattr(GGMLQuantizationType, name.upper())


def random_blocks(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random blocks of the format, the fp16 scale fields set to finite values (some subnormal or zero)."""
    blocks = rng.integers(0, 256, (n, GGML_QUANT_SIZES[qtype(name)][1]), dtype=np.uint8)
    for offset in FP16_OFFSETS[name]:
        scales = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 3, n)).astype(np.float16)
        scales[:2] = 0
        blocks[:, offset:offset + 2] = scales.reshape(-1, 1).view(np.uint8)
    return blocks


def weights(rng: np.random.Generator, rows: int = 8, cols: int = 512) -> np.ndarray:
    """Gaussian weights with a few outliers, a constant block and an all-zero block."""
    W = rng.standard_normal((rows, cols)).astype(np.float32)
    W[0, :256] = 0.0
    W[1, :256] = 0.75
    W[2, 5] = 40.0
    W[3] = -np.abs(W[3])
    return W


def bits_of(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("name", NAMES)
def test_bits_per_weight_match_the_gguf_block_sizes(name):
    block_size, block_bytes = GGML_QUANT_SIZES[qtype(name)]
    expected = {"q4_0": 4.5, "q4_1": 5.0, "q8_0": 8.5, "q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5,
                "q6_k": 6.5625}[name]
    assert gguf_bits_per_weight(name) == expected == block_bytes * 8 / block_size
    assert (GGUF_TYPES[name].block_size, GGUF_TYPES[name].block_bytes) == (block_size, block_bytes)


@pytest.mark.parametrize("name", NAMES)
def test_dequantize_random_bytes_bit_for_bit_as_gguf(name):
    rng = np.random.default_rng(1)
    block_size = GGML_QUANT_SIZES[qtype(name)][0]
    data = random_blocks(name, 96, rng).reshape(-1)
    expected = gguf_deq(data, qtype(name)).reshape(-1)
    got = gguf_dequantize(data, name, (3, 32 * block_size)).numpy().reshape(-1)
    np.testing.assert_array_equal(bits_of(got), bits_of(expected))


@pytest.mark.parametrize("name", NAMES)
def test_dequantize_quantized_weights_bit_for_bit_as_gguf(name):
    W = weights(np.random.default_rng(2))
    data = gguf_quantize(W, name)
    got = gguf_dequantize(data, name, W.shape).numpy()
    np.testing.assert_array_equal(bits_of(got), bits_of(gguf_deq(data, qtype(name))))


@pytest.mark.parametrize("name", ("q4_0", "q4_1", "q8_0"))
def test_quantize_bytes_equal_gguf(name):
    rng = np.random.default_rng(3)
    W = weights(rng, 16, 256)
    W[4, :32] = np.float32(0.5) * np.arange(-16, 16)  # exact halves: the rounding rules decide
    W[5, :32] = np.where(np.arange(32) % 2, 3.0, -3.0)  # +- ties for the absmax's sign
    W[6] *= 1e-30  # subnormal products
    data = gguf_quantize(torch.from_numpy(W), name)
    np.testing.assert_array_equal(data, gguf_q(W, qtype(name)))
    assert data.shape == (16, 256 // 32 * GGML_QUANT_SIZES[qtype(name)][1]) and data.dtype == np.uint8


def relative_rms(approx: np.ndarray, W: np.ndarray) -> float:
    return float(np.sqrt(((approx.astype(np.float64) - W) ** 2).mean() / (W.astype(np.float64) ** 2).mean()))


def round_to_nearest(W: np.ndarray, bits: int) -> np.ndarray:
    """Symmetric absmax round-to-nearest with 2^(bits-1) - 1 levels a side per block of 32, in float64."""
    x = W.astype(np.float64).reshape(-1, 32)
    top = 2 ** (bits - 1) - 1
    scale = np.abs(x).max(axis=1, keepdims=True) / top
    return (np.clip(np.rint(x / scale), -top, top) * scale).reshape(W.shape)


# relative RMS error budget: at most this factor times round_to_nearest with the format's code bits (measured
# on 64 x 1024 Gaussian weights: Q2_K 0.45, Q3_K 0.66, Q4_K 0.74, Q5_K 0.80, Q6_K 0.81, Q4_0 0.89, Q4_1 0.80)
BUDGET = {"q2_k": (2, 0.55), "q3_k": (3, 0.75), "q4_k": (4, 0.85), "q5_k": (5, 0.9), "q6_k": (6, 0.9),
          "q4_0": (4, 0.95), "q4_1": (4, 0.9), "q8_0": (8, 1.01)}


def test_error_falls_with_bits_and_beats_round_to_nearest():
    W = np.random.default_rng(4).standard_normal((32, 1024)).astype(np.float32)
    errors = {}
    for name, (bits, factor) in BUDGET.items():
        errors[name] = relative_rms(gguf_dequantize(gguf_quantize(W, name), name, W.shape).numpy(), W)
        assert errors[name] <= factor * relative_rms(round_to_nearest(W, bits), W), name
    assert errors["q6_k"] < errors["q5_k"] < errors["q4_k"] < errors["q3_k"] < errors["q2_k"]
    assert errors["q4_k"] < errors["q4_0"]


@pytest.mark.parametrize("name", ("q4_0", "q4_1", "q8_0", "q4_k"))
def test_requantizing_dequantized_bytes_reproduces_them(name):
    W = weights(np.random.default_rng(5))
    data = gguf_quantize(W, name)
    np.testing.assert_array_equal(gguf_quantize(gguf_dequantize(data, name, W.shape), name), data)


@pytest.mark.parametrize("name", KQUANTS)
def test_requantizing_dequantized_weights_stays_close(name):
    """Not a fixed point for every k-quant (the scale search can pick a finer grid), but never worse than W's."""
    W = weights(np.random.default_rng(6))
    once = gguf_dequantize(gguf_quantize(W, name), name, W.shape).numpy()
    twice = gguf_dequantize(gguf_quantize(once, name), name, W.shape).numpy()
    assert relative_rms(twice, once) <= 0.5 * relative_rms(once, W)



def test_api_accepts_torch_numpy_float64_bytes_and_any_case():
    W = weights(np.random.default_rng(8), 4, 256)
    data = gguf_quantize(torch.from_numpy(W).double(), "Q4_K")
    np.testing.assert_array_equal(data, gguf_quantize(W, "q4_k"))
    values = gguf_dequantize(data.tobytes(), "Q4_k", torch.Size([2, 2, 256]))
    np.testing.assert_array_equal(gguf_dequantize(torch.from_numpy(data), "q4_k", (4, 256)).numpy(),
                                  values.numpy().reshape(4, 256))
    assert values.dtype == torch.float32 and values.shape == (2, 2, 256)
    np.testing.assert_array_equal(values.numpy().reshape(4, 256), gguf_dequantize(data, "q4_k", (4, 256)).numpy())


def test_unknown_type_names_the_allowed_ones():
    with pytest.raises(ValueError, match="type_name must be one of q4_0, q4_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k"):
        gguf_quantize(torch.ones(32), "q5_0")
    with pytest.raises(ValueError, match="type_name must be one of"):
        gguf_bits_per_weight(4)


@pytest.mark.parametrize(("name", "length"), [("q4_0", 48), ("q4_k", 128), ("q6_k", 300)])
def test_rows_must_split_into_whole_blocks(name, length):
    block = GGML_QUANT_SIZES[qtype(name)][0]
    with pytest.raises(ValueError, match=f"W's last dimension must be a multiple of {name}'s block size {block}, "
                                         f"got {length}"):
        gguf_quantize(torch.ones(2, length), name)
    with pytest.raises(ValueError, match=f"shape's last dimension .* got {length}"):
        gguf_dequantize(np.zeros(10_000, np.uint8), name, (2, length))


def test_truncated_or_padded_bytes_say_how_many_were_expected():
    data = gguf_quantize(torch.randn(3, 256), "q5_k")
    with pytest.raises(ValueError, match=r"data must hold 528 bytes for a q5_k tensor of shape \(3, 256\), got 527"):
        gguf_dequantize(data.reshape(-1)[:-1], "q5_k", (3, 256))
    with pytest.raises(ValueError, match="must hold 528 bytes .* got 529"):
        gguf_dequantize(np.zeros(529, np.uint8), "q5_k", (3, 256))
    with pytest.raises(TypeError, match="data must be a uint8 numpy array, uint8 torch tensor or bytes, got float32"):
        gguf_dequantize(np.zeros(528, np.float32), "q5_k", (3, 256))
    with pytest.raises(ValueError, match="shape must be a non-empty tuple of positive integers"):
        gguf_dequantize(data, "q5_k", (0, 256))


@pytest.mark.parametrize(
    ("W", "match"),
    [
        (torch.tensor([float("nan")] * 32), "W must be finite"),
        (torch.zeros(0, 32), "W must not be empty"),
        (torch.ones(32, dtype=torch.int32), "W must be a floating-point tensor"),
        (torch.full((32,), 1e6), "too large for q4_1's float16 block scales"),
        (torch.tensor(1.0), "W must have at least one dimension"),
    ],
)
def test_bad_weights_are_refused(W, match):
    with pytest.raises(ValueError, match=match):
        gguf_quantize(W, "q4_1")


# ---- ggml-quants.c's quantize_row_q*_K_ref, transliterated loop by loop in float32 scalars -----------------------


def nearest_int(value) -> int:
    """ggml's nearest_int: add 1.5 * 2^23 in float32 and read the low mantissa bits."""
    bits = int(np.array(f32(value) + f32(12582912.0), dtype=np.float32).view(np.int32))
    return (bits & 0x007FFFFF) - 0x00400000


def int8(value: int) -> int:
    """A C int stored in an int8_t: modulo 256, signed."""
    value &= 0xFF
    return value - 256 if value > 127 else value


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def fp16(value) -> tuple[float, bytes]:
    """GGML_FP32_TO_FP16 then back: the float32 value and the two stored bytes."""
    h = np.float16(value)
    return f32(h), h.tobytes()


def c_make_qkx2(nmax, x, weights, rmin, rdelta, nstep, use_mad):
    n = len(x)
    lo, hi, sum_w = x[0], x[0], weights[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        lo, hi = min(lo, x[i]), max(hi, x[i])
        sum_w += weights[i]
        sum_x += weights[i] * x[i]
    lo = f32(0) if lo > 0 else lo
    if hi == lo:
        return f32(0), -lo, [0] * n
    iscale = nmax / (hi - lo)
    scale, best, L = 1 / iscale, f32(0), [0] * n
    for i in range(n):
        L[i] = clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax)
        diff = scale * L[i] + lo - x[i]
        best += weights[i] * (abs(diff) if use_mad else diff * diff)
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * step + nmax) / (hi - lo)
        aux = [clamp(nearest_int(iscale * (v - lo)), 0, nmax) for v in x]
        sum_l = sum_l2 = sum_xl = f32(0)
        for i in range(n):
            w = weights[i]
            sum_l += w * aux[i]
            sum_l2 += w * aux[i] * aux[i]
            sum_xl += w * aux[i] * x[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min, this_scale = f32(0), sum_xl / sum_l2
            error = f32(0)
            for i in range(n):
                diff = this_scale * aux[i] + this_min - x[i]
                error += weights[i] * (abs(diff) if use_mad else diff * diff)
            if error < best:
                L, best, scale, lo = aux, error, this_scale, this_min
    return scale, -lo, L


def c_absmax(x):
    signed, amax = f32(0), f32(0)
    for v in x:
        if abs(v) > amax:
            amax, signed = abs(v), v
    return signed, amax


def c_make_qx(nmax, x):
    signed, amax = c_absmax(x)
    if amax < f32(1e-15):
        return f32(0), [0] * len(x)

    def fit(iscale):
        levels = [clamp(nearest_int(iscale * v), -nmax, nmax - 1) for v in x]
        sumlx = suml2 = f32(0)
        for v, lv in zip(x, levels, strict=True):
            w = v * v
            sumlx += w * v * lv
            suml2 += w * lv * lv
        return levels, sumlx, suml2

    levels, sumlx, suml2 = fit(-nmax / signed)
    L = [lv + nmax for lv in levels]
    scale = sumlx / suml2 if suml2 else f32(0)
    best = scale * sumlx
    for step in range(-9, 10):
        if step:
            levels, sumlx, suml2 = fit(-(nmax + f32(0.1) * step) / signed)
            if suml2 > 0 and sumlx * sumlx > best * suml2:
                L = [lv + nmax for lv in levels]
                scale = sumlx / suml2
                best = scale * sumlx
    return scale, L


def c_make_q3(nmax, x):
    signed, amax = c_absmax(x)
    if amax < f32(1e-15):
        return f32(0), [0] * len(x)
    iscale = -nmax / signed
    L = [clamp(nearest_int(iscale * v), -nmax, nmax - 1) for v in x]
    sumlx = suml2 = f32(0)
    for v, lv in zip(x, L, strict=True):
        sumlx += v * v * v * lv
        suml2 += v * v * lv * lv
    for _ in range(5):
        changed = 0
        for i, v in enumerate(x):
            w = v * v
            slx = sumlx - w * v * L[i]
            if slx > 0:
                sl2 = suml2 - w * L[i] * L[i]
                new = clamp(nearest_int(v * sl2 / slx), -nmax, nmax - 1)
                if new != L[i]:
                    slx += w * v * new
                    sl2 += w * new * new
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i], sumlx, suml2 = new, slx, sl2
                        changed += 1
        if not changed:
            break
    return (sumlx / suml2 if suml2 > 0 else f32(0)), [lv + nmax for lv in L]


def pack_2bit(L) -> list[int]:
    return [L[j + i] | (L[j + i + 32] << 2) | (L[j + i + 64] << 4) | (L[j + i + 96] << 6)
            for j in (0, 128) for i in range(32)]


def c_q2_k(x) -> bytes:
    L, scales, mins = [], [], []
    for j in range(16):
        s, m, sub = c_make_qkx2(3, x[16 * j:16 * j + 16], [abs(v) for v in x[16 * j:16 * j + 16]],
                                f32(-0.5), f32(0.1), 15, True)
        scales.append(s)
        mins.append(m)
        L += sub
    max_scale, max_min = max([f32(0)] + scales), max([f32(0)] + mins)
    sc = [0] * 16
    d, d_bytes = fp16(max_scale / 15) if max_scale > 0 else fp16(0)
    if max_scale > 0:
        sc = [nearest_int((15 / max_scale) * s) & 0xFF for s in scales]
    dmin, dmin_bytes = fp16(max_min / 15) if max_min > 0 else fp16(0)
    if max_min > 0:
        sc = [(c | (nearest_int((15 / max_min) * m) << 4)) & 0xFF for c, m in zip(sc, mins, strict=True)]
    for j in range(16):
        dj = d * (sc[j] & 0xF)
        if dj:
            for i in range(16 * j, 16 * j + 16):
                L[i] = clamp(nearest_int((x[i] + dmin * (sc[j] >> 4)) / dj), 0, 3)
    return bytes(sc + pack_2bit(L)) + d_bytes + dmin_bytes


def c_q3_k(x) -> bytes:
    L, scales = [], []
    for j in range(16):
        s, sub = c_make_q3(4, x[16 * j:16 * j + 16])
        scales.append(s)
        L += sub
    max_scale, _ = c_absmax(scales)
    sc = [0] * 12
    d, d_bytes = fp16(0)
    if max_scale:
        iscale = -32 / max_scale
        for j in range(16):
            lv = clamp(int8(nearest_int(iscale * scales[j])), -32, 31) + 32
            sc[j % 8] |= (lv & 0xF) << (4 * (j // 8))
            sc[j % 4 + 8] |= (lv >> 4) << (2 * (j // 4))
        d, d_bytes = fp16(1 / iscale)
    for j in range(16):
        low = (sc[j % 8] >> (4 * (j // 8))) & 0xF
        dj = d * ((low | (((sc[8 + j % 4] >> (2 * (j // 4))) & 3) << 4)) - 32)
        if dj:
            for i in range(16 * j, 16 * j + 16):
                L[i] = clamp(nearest_int(x[i] / dj), -4, 3) + 4
    hmask = [0] * 32
    for i in range(256):
        if L[i] > 3:
            hmask[i % 32] |= 1 << (i // 32)
            L[i] -= 4
    return bytes(hmask + pack_2bit(L) + sc) + d_bytes


def c_k4(x, nmax, rmin, nstep):
    """The common part of quantize_row_q4_K_ref and q5_K: -> (d, dmin and scale bytes, codes)."""
    L, scales, mins = [], [], []
    for j in range(8):
        sub = x[32 * j:32 * j + 32]
        sum_x2 = f32(0)
        for v in sub:
            sum_x2 += v * v
        av_x = np.sqrt(sum_x2 / 32, dtype=np.float32)
        s, m, codes = c_make_qkx2(nmax, sub, [av_x + abs(v) for v in sub], f32(rmin), f32(0.1), nstep, False)
        scales.append(s)
        mins.append(m)
        L += codes
    max_scale, max_min = max([f32(0)] + scales), max([f32(0)] + mins)
    inv_scale = 63 / max_scale if max_scale > 0 else f32(0)
    inv_min = 63 / max_min if max_min > 0 else f32(0)
    sc = [0] * 12
    ls = [min(63, nearest_int(inv_scale * s) & 0xFF) for s in scales]
    lm = [min(63, nearest_int(inv_min * m) & 0xFF) for m in mins]
    for j in range(8):
        if j < 4:
            sc[j], sc[j + 4] = ls[j], lm[j]
        else:
            sc[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
            sc[j - 4] |= (ls[j] >> 4) << 6
            sc[j] |= (lm[j] >> 4) << 6
    d, d_bytes = fp16(max_scale / 63)
    dmin, dmin_bytes = fp16(max_min / 63)
    for j in range(8):
        dj = d * ls[j]
        if dj:
            for i in range(32 * j, 32 * j + 32):
                L[i] = clamp(nearest_int((x[i] + dmin * lm[j]) / dj), 0, nmax)
    return d_bytes + dmin_bytes + bytes(sc), L


def c_q4_k(x) -> bytes:
    head, L = c_k4(x, 15, -1.0, 20)
    return head + bytes(L[j + i] | (L[j + i + 32] << 4) for j in range(0, 256, 64) for i in range(32))


def c_q5_k(x) -> bytes:
    head, L = c_k4(x, 31, -0.5, 15)
    qh, ql = [0] * 32, []
    for n, shift in zip(range(0, 256, 64), range(0, 8, 2), strict=True):
        for j in range(32):
            l1, l2 = L[n + j], L[n + j + 32]
            qh[j] |= ((l1 > 15) << shift) | ((l2 > 15) << (shift + 1))
            ql.append((l1 & 0xF) | ((l2 & 0xF) << 4))
    return head + bytes(qh + ql)


def c_q6_k(x) -> bytes:
    L, scales = [], []
    for j in range(16):
        s, sub = c_make_qx(32, x[16 * j:16 * j + 16])
        scales.append(s)
        L += sub
    max_scale, max_abs = c_absmax(scales)
    if max_abs < f32(1e-15):
        return bytes(210)
    iscale = -128 / max_scale
    d, d_bytes = fp16(1 / iscale)
    sc = [int8(min(127, nearest_int(iscale * s))) for s in scales]
    for j in range(16):
        dj = d * sc[j]
        if dj:
            for i in range(16 * j, 16 * j + 16):
                L[i] = clamp(nearest_int(x[i] / dj), -32, 31) + 32
    ql, qh = [0] * 128, [0] * 64
    for h in range(2):
        for i in range(32):
            q = [L[128 * h + 32 * k + i] for k in range(4)]
            ql[64 * h + i] = (q[0] & 0xF) | ((q[2] & 0xF) << 4)
            ql[64 * h + 32 + i] = (q[1] & 0xF) | ((q[3] & 0xF) << 4)
            qh[32 * h + i] = sum((q[k] >> 4) << (2 * k) for k in range(4))
    return bytes(ql + qh) + np.array(sc, dtype=np.int8).tobytes() + d_bytes


C_REFERENCE = {"q2_k": c_q2_k, "q3_k": c_q3_k, "q4_k": c_q4_k, "q5_k": c_q5_k, "q6_k": c_q6_k}


@pytest.mark.parametrize("name", KQUANTS)
def test_kquant_bytes_equal_the_transliterated_c_reference(name):
    rng = np.random.default_rng(7)
    W = np.concatenate([rng.standard_normal((6, 256)), rng.standard_t(3, (4, 256)) * 0.02]).astype(np.float32)
    W[0] = 0.0
    W[1] = 0.75
    W[2, 17] = 25.0
    W[3] = np.abs(W[3])  # all positive: the mins clip to zero
    W[4, :128] *= 1e-3  # sub-blocks of very different scales
    W[5] = -0.3  # constant and negative
    W[6] *= 1e-20  # squares underflow float32
    data = gguf_quantize(W, name)
    for row in range(W.shape[0]):
        expected = C_REFERENCE[name]([f32(v) for v in W[row]])
        assert data[row].tobytes() == expected, (name, row)


# ---- the Q4_K GEMV (mini_llm.kernels.kquant_cpu) against dequantize-then-matmul in float64 ----------------------


def test_q4_k_gemv_matches_dequantized_matmul_in_float64():
    from mini_llm.kernels.kquant_cpu import gemv_q4_k

    rng = np.random.default_rng(9)
    quantized = gguf_quantize(weights(rng, 24, 512), "q4_k")
    raw = random_blocks("q4_k", 48, rng)  # random codes, scales and (some subnormal or zero) fp16 d, dmin
    x = torch.from_numpy(rng.standard_normal((2, 3, 512)).astype(np.float32))
    for data in (quantized, raw):
        W = gguf_dequantize(data, "q4_k", (24, 512)).double()  # (out, in)
        expected = x.double() @ W.T  # (2, 3, out)
        got = gemv_q4_k(data, (24, 512), x)
        assert got.dtype == torch.float32 and got.shape == (2, 3, 24)
        bound = 1e-6 * (x.double().abs() @ W.abs().T) + 1e-30
        assert bool(((got.double() - expected).abs() <= bound).all())
        single = gemv_q4_k(data, (24, 512), x[1, 2])
        assert single.shape == (24,)
        assert bool(((single.double() - expected[1, 2]).abs() <= bound[1, 2]).all())


def test_q4_k_gemv_refuses_bad_arguments():
    from mini_llm.kernels.kquant_cpu import gemv_q4_k

    data = gguf_quantize(torch.randn(4, 256), "q4_k")
    with pytest.raises(ValueError, match="data must hold 576 bytes .* got 575"):
        gemv_q4_k(data.reshape(-1)[:-1], (4, 256), torch.randn(256))
    with pytest.raises(ValueError, match="in_features must be a multiple of Q4_K's block size 256, got 128"):
        gemv_q4_k(data, (8, 128), torch.randn(128))
    with pytest.raises(ValueError, match="x must end in in_features=256, got shape"):
        gemv_q4_k(data, (4, 256), torch.randn(3, 255))
    with pytest.raises(TypeError, match="x must be a floating-point torch tensor"):
        gemv_q4_k(data, (4, 256), torch.ones(256, dtype=torch.int64))
