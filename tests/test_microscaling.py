"""Microscaling formats (OCP MX v1.0, NVFP4) against hand-written tables, hand-worked blocks, torch's float8 casts
and a float64 numpy reference that follows the specification text block by block."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mini_llm import kernels
from mini_llm.quant import dequantize, dequantize_reference, load_quantized, save_quantized
from mini_llm.quant.microscaling import (
    E2M1,
    E2M3,
    E3M2,
    E4M3,
    FORMATS,
    MXState,
    decode_e8m0,
    decode_element,
    mx_bits,
    mx_dequantize,
    mx_quantize,
    mx_to_kbit,
    round_to_element,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Non-negative values by magnitude code, written out from the spec's tables (OCP MX v1.0, section 5.3).
E2M1_HAND = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
E3M2_HAND = [
    0, 0.0625, 0.125, 0.1875, 0.25, 0.3125, 0.375, 0.4375, 0.5, 0.625, 0.75, 0.875, 1, 1.25, 1.5, 1.75,
    2, 2.5, 3, 3.5, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28,
]
E2M3_HAND = [
    0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1, 1.125, 1.25, 1.375, 1.5, 1.625, 1.75, 1.875,
    2, 2.25, 2.5, 2.75, 3, 3.25, 3.5, 3.75, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5,
]
# OFP8 E4M3FN: torch's own float8_e4m3fn decoding of bytes 0..0x7E (0x7F is NaN).
E4M3_TORCH = torch.arange(0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).double().tolist()
HAND = {"mxfp4": E2M1_HAND, "mxfp6_e3m2": E3M2_HAND, "mxfp6_e2m3": E2M3_HAND, "mxfp8_e4m3": E4M3_TORCH}
EMAX = {"mxfp4": 2, "mxfp6_e3m2": 4, "mxfp6_e2m3": 2, "mxfp8_e4m3": 8}  # the spec's emax_elem
BITS = {"mxfp4": 4, "mxfp6_e3m2": 6, "mxfp6_e2m3": 6, "mxfp8_e4m3": 8}
MX = tuple(EMAX)


# ---- float64 numpy reference, written from the spec text ----

def ref_round(values: np.ndarray, table: list[float], bits: int) -> list[int]:
    """Each value to the nearest table entry (ties: the even code), saturating at the largest; sign bit on top."""
    codes = []
    for v in values:
        a = min(abs(float(v)), table[-1])
        dist = [abs(a - t) for t in table]
        best = [i for i, d in enumerate(dist) if d == min(dist)]
        i = best[0] if len(best) == 1 else next(c for c in best if c % 2 == 0)
        codes.append(i | (int(np.signbit(v)) << (bits - 1)))
    return codes


def ref_decode(code: int, table: list[float], bits: int) -> float:
    magnitude = table[code & (2 ** (bits - 1) - 1)]
    return -magnitude if code >> (bits - 1) else magnitude


def ref_mx(W: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, scale bytes, dequantized float64) of a 2-D W, one block of 32 at a time."""
    table, bits = HAND[fmt], BITS[fmt]
    rows, cols = W.shape
    codes = np.zeros((rows, cols), np.uint8)
    scales = np.zeros((rows, cols // 32), np.uint8)
    out = np.zeros((rows, cols))
    for r in range(rows):
        for b in range(cols // 32):
            block = W[r, 32 * b:32 * (b + 1)]
            amax = float(np.max(np.abs(block)))
            shared = -127 if amax == 0 else math.floor(math.log2(amax)) - EMAX[fmt]
            shared = min(max(shared, -127), 127)
            X = 2.0**shared
            c = ref_round(block / X, table, bits)
            codes[r, 32 * b:32 * (b + 1)] = c
            scales[r, b] = shared + 127
            out[r, 32 * b:32 * (b + 1)] = [ref_decode(ci, table, bits) * X for ci in c]
    return codes, scales, out


def ref_nvfp4(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """(codes, E4M3 block-scale codes, tensor scale, dequantized float64) by NVIDIA's recipe."""
    rows, cols = W.shape
    s_t = float(np.float32(float(np.max(np.abs(W))) / (448 * 6)))
    s_t = 1.0 if s_t == 0 else s_t
    codes = np.zeros((rows, cols), np.uint8)
    scales = np.zeros((rows, cols // 16), np.uint8)
    out = np.zeros((rows, cols))
    for r in range(rows):
        for b in range(cols // 16):
            block = W[r, 16 * b:16 * (b + 1)]
            amax = float(np.max(np.abs(block)))
            (sb_code,) = ref_round(np.array([amax / 6 / s_t]), E4M3_TORCH, 8)
            s_b = E4M3_TORCH[sb_code]
            c = [0] * 16 if s_b == 0 else ref_round(block / (s_b * s_t), E2M1_HAND, 4)
            codes[r, 16 * b:16 * (b + 1)] = c
            scales[r, b] = sb_code
            out[r, 16 * b:16 * (b + 1)] = [ref_decode(ci, E2M1_HAND, 4) * s_b * s_t for ci in c]
    return codes, scales, s_t, out


def test_value_tables_from_bit_layout_match_the_spec():
    for element, hand in ((E2M1, E2M1_HAND), (E3M2, E3M2_HAND), (E2M3, E2M3_HAND), (E4M3, E4M3_TORCH)):
        assert element.magnitudes().tolist() == hand
        table = element.table()
        assert table.shape == (2**element.bits,)
        assert np.array_equal(table[2 ** (element.bits - 1):][: len(hand)], -np.array(hand, dtype=float))
    assert (E2M1.max, E3M2.max, E2M3.max, E4M3.max) == (6.0, 28.0, 7.5, 448.0)
    assert E4M3.magnitudes()[1] == 2.0**-9 and E4M3.magnitudes()[8] == 2.0**-6  # min subnormal, min normal
    assert np.isnan(E4M3.table()[0x7F]) and np.isnan(E4M3.table()[0xFF]) and np.isfinite(E4M3.table()).sum() == 254
    assert (E2M1.emax, E3M2.emax, E2M3.emax, E4M3.emax) == (2, 4, 2, 8)
    every = torch.arange(256, dtype=torch.uint8)
    e4m3 = decode_element(every, E4M3)
    ref = every.view(torch.float8_e4m3fn).double()
    assert torch.equal(e4m3.isnan(), ref.isnan()) and torch.equal(e4m3[~ref.isnan()], ref[~ref.isnan()])
    e8m0 = decode_e8m0(every)
    ref = every.view(torch.float8_e8m0fnu).double()
    assert torch.equal(e8m0[:255], ref[:255]) and e8m0[0] == 2.0**-127 and e8m0[127] == 1.0 and e8m0[255].isnan()


@pytest.mark.parametrize(
    ("element", "pairs"),
    [
        (E2M1, [(2.5, 2), (3.5, 4), (5, 4), (0.25, 0), (0.75, 1), (1.25, 1), (1.75, 2), (7, 6), (100, 6),
                (-2.5, -2), (-5.5, -6), (0.26, 0.5)]),
        (E3M2, [(22, 24), (26, 24), (29, 28), (30, 28), (1e6, 28), (0.03125, 0), (0.09375, 0.125), (2.25, 2)]),
        (E2M3, [(7.25, 7), (7.75, 7.5), (0.0625, 0), (0.1875, 0.25), (1.0625, 1), (1.1875, 1.25), (4.25, 4)]),
        (E4M3, [(17, 16), (19, 20), (464, 448), (1e9, 448), (2.0**-10, 0), (3 * 2.0**-10, 2.0**-8)]),
    ],
)
def test_round_to_nearest_even_with_saturation(element, pairs):
    x = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    got = decode_element(round_to_element(x, element), element)
    assert got.tolist() == [float(p[1]) for p in pairs]


def test_sign_is_kept_and_e4m3_rounding_matches_torch_float8():
    codes = round_to_element(torch.tensor([-2.5, -0.1, 0.0, -0.0]), E2M1)
    assert codes.tolist() == [0b1100, 0b1000, 0b0000, 0b1000]  # -2, -0, +0, -0
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20000, generator=gen, dtype=torch.float64)
    x = x * torch.exp2(torch.randint(-12, 8, (20000,), generator=gen))  # every binade, subnormals included
    mids = torch.tensor(E4M3_TORCH, dtype=torch.float64)
    x = torch.cat([x, (mids[1:] + mids[:-1]) / 2, -(mids[1:] + mids[:-1]) / 2]).clamp(-448, 448)  # every tie
    got = decode_element(round_to_element(x, E4M3), E4M3)
    assert torch.equal(got, x.to(torch.float8_e4m3fn).double())


def test_hand_worked_mxfp4_blocks():
    block0 = [5.0, -2.5, 0.25, 0.75, 3.5, 1.75, -0.3, 1.25] + [0.0] * 24  # max 5: floor(log2 5) - 2 = 0, byte 127
    block1 = [12.0, 7.0, -5.0, 1.0] + [0.0] * 28  # max 12: 3 - 2 = 1, byte 128, X = 2
    block2 = [7.5, 7.0, 6.5, -7.9] + [0.0] * 28  # max 7.9: 2 - 2 = 0; everything above 6 saturates to 6
    block3 = [0.0] * 32  # all zero: byte 0 (2**-127)
    W = torch.tensor([block0 + block1, block2 + block3])
    codes, state = mx_quantize(W, "mxfp4")
    assert state.scales.tolist() == [[127, 128], [127, 0]]
    out = mx_dequantize(codes, state)
    assert out[0, :8].tolist() == [4.0, -2.0, 0.0, 1.0, 4.0, 2.0, -0.5, 1.0]
    assert out[0, 32:36].tolist() == [12.0, 8.0, -4.0, 1.0]  # 7/2 = 3.5 -> 4 (tie to even), -5/2 = -2.5 -> -2
    assert out[1, :4].tolist() == [6.0, 6.0, 6.0, -6.0]
    assert codes[0, :8].tolist() == [0b0110, 0b1100, 0b0000, 0b0010, 0b0110, 0b0100, 0b1001, 0b0010]
    assert out[1, 32:].abs().sum() == 0 and state.tensor_scale is None and codes.dtype == torch.uint8


def test_hand_worked_nvfp4_blocks():
    # max|W| = 2688 -> s_t = 2688 / (448 * 6) = 1; block 1: 102 / 6 = 17 -> E4M3 tie between 16 and 18 -> 16 (0x58)
    W = torch.tensor([[2688.0] + [0.0] * 15 + [102.0, 40.0, 56.0, -8.0] + [0.0] * 12])
    codes, state = mx_quantize(W, "nvfp4")
    assert state.tensor_scale == 1.0 and state.scales.tolist() == [[0x7E, 0x58]]  # 448 and 16
    out = mx_dequantize(codes, state)
    assert out[0, 0] == 2688.0
    assert out[0, 16:20].tolist() == [96.0, 32.0, 64.0, -8.0]  # 6.375 -> 6 (saturated), 2.5 -> 2, 3.5 -> 4, -0.5


def heavy_tailed(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Student-t (2 dof) weights with ties, an all-zero block and a tiny block that clamps the E8M0 exponent."""
    rng = np.random.default_rng(seed)
    W = rng.standard_t(2, size=(rows, cols)) * np.exp2(rng.integers(-3, 4, size=(rows, 1)))
    W[0, :32] = rng.integers(-24, 25, size=32) / 4  # many exact midpoints
    W[1, :32] = 0.0
    W[2, :32] = rng.standard_normal(32) * 1e-39  # float32 subnormals: shared_exp below -127
    return torch.from_numpy(W.astype(np.float32))


@pytest.mark.parametrize("fmt", MX)
@pytest.mark.parametrize("seed", [0, 1])
def test_mx_matches_float64_reference_bit_for_bit(fmt, seed):
    W = heavy_tailed(8, 128, seed) if seed else torch.randn(8, 128, generator=torch.Generator().manual_seed(seed))
    codes, state = mx_quantize(W, fmt)
    ref_codes, ref_scales, ref_out = ref_mx(W.double().numpy(), fmt)
    assert np.array_equal(codes.numpy(), ref_codes) and np.array_equal(state.scales.numpy(), ref_scales)
    out = mx_dequantize(codes, state)
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(ref_out.astype(np.float32)))


@pytest.mark.parametrize("seed", [0, 1])
def test_nvfp4_matches_float64_reference_bit_for_bit(seed):
    W = heavy_tailed(8, 128, seed) if seed else torch.randn(8, 128, generator=torch.Generator().manual_seed(seed))
    W[3, 16:32] = W[3, 16:32] * 1e-7  # a block whose E4M3 scale rounds to 0: flushed
    codes, state = mx_quantize(W, "nvfp4")
    ref_codes, ref_scales, s_t, ref_out = ref_nvfp4(W.double().numpy())
    assert state.tensor_scale == s_t
    assert np.array_equal(codes.numpy(), ref_codes) and np.array_equal(state.scales.numpy(), ref_scales)
    assert torch.equal(mx_dequantize(codes, state), torch.from_numpy(ref_out.astype(np.float32)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_and_1d(dtype):
    W = torch.randn(4, 64, generator=torch.Generator().manual_seed(3)).to(dtype)
    for fmt in ("mxfp4", "nvfp4"):
        codes, state = mx_quantize(W, fmt)
        ref = ref_mx(W.double().numpy(), fmt)[2] if fmt == "mxfp4" else ref_nvfp4(W.double().numpy())[3]
        out = mx_dequantize(codes, state)
        assert out.dtype == dtype and torch.equal(out, torch.from_numpy(ref).to(dtype))
        codes1, state1 = mx_quantize(W[1], fmt)  # 1-D: NVFP4's tensor scale is then the row's own
        ref1 = ref_mx(W[1:2].double().numpy(), fmt)[2] if fmt == "mxfp4" else ref_nvfp4(W[1:2].double().numpy())[3]
        assert torch.equal(mx_dequantize(codes1, state1), torch.from_numpy(ref1[0]).to(dtype))


def test_mx_quantize_of_zero_tensor_is_zero():
    for fmt in FORMATS:
        codes, state = mx_quantize(torch.zeros(2, 64), fmt)
        assert mx_dequantize(codes, state).abs().sum() == 0
    assert mx_quantize(torch.zeros(2, 64), "nvfp4")[1].tensor_scale == 1.0


def rel_rms(W: torch.Tensor, fmt: str) -> float:
    codes, state = mx_quantize(W, fmt)
    return float((mx_dequantize(codes, state) - W).pow(2).mean().sqrt() / W.pow(2).mean().sqrt())


def test_error_ordering_on_gaussian_weights():
    W = torch.randn(128, 1024, generator=torch.Generator().manual_seed(0))
    err = {fmt: rel_rms(W, fmt) for fmt in FORMATS}
    assert err["mxfp8_e4m3"] < err["mxfp6_e3m2"] < err["mxfp4"]
    assert err["mxfp6_e2m3"] < err["mxfp6_e3m2"]
    assert err["nvfp4"] < err["mxfp4"]  # blocks of 16 with an E4M3 scale beat blocks of 32 with a power of two
    # E4M3 and E2M3 both carry 3 mantissa bits, and the spec's scale saturates E4M3 more (max 448 = 1.75 * 2**8
    # against 7.5 = 1.875 * 2**2): on Gaussian blocks of 32 MXFP8 is no better than MXFP6 E2M3 (see next test).
    assert abs(err["mxfp8_e4m3"] - err["mxfp6_e2m3"]) < 0.1 * err["mxfp6_e2m3"]


def test_mxfp8_is_never_worse_than_mxfp6_e2m3_where_neither_saturates():
    """Scaled by the spec, E2M3's grid is a subset of E4M3's: on blocks that saturate neither, no element is worse."""
    W = torch.randn(256, 256, generator=torch.Generator().manual_seed(1))
    blocks = W.double().reshape(256, 8, 32)
    amax = blocks.abs().amax(-1)
    top = amax / torch.exp2(torch.floor(torch.log2(amax)))  # the block max's significand in [1, 2)
    keep = (top <= 1.75).unsqueeze(-1).expand_as(blocks).reshape(256, 256)  # 448 / 2**8 = 1.75 < 7.5 / 4
    errors = {}
    for fmt in ("mxfp8_e4m3", "mxfp6_e2m3"):
        codes, state = mx_quantize(W, fmt)
        errors[fmt] = (mx_dequantize(codes, state) - W).abs()[keep]
    assert keep.sum() > 1000 and bool((errors["mxfp8_e4m3"] <= errors["mxfp6_e2m3"]).all())
    assert errors["mxfp8_e4m3"].pow(2).mean() < errors["mxfp6_e2m3"].pow(2).mean()  # and better on average


def test_bit_accounting():
    assert mx_bits(1024, "mxfp4") == 1024 * 4 + 8 * 32 and mx_bits(1024, "mxfp4") / 1024 == 4.25
    assert mx_bits(1024, "mxfp6_e3m2") / 1024 == mx_bits(1024, "mxfp6_e2m3") / 1024 == 6.25
    assert mx_bits(1024, "mxfp8_e4m3") / 1024 == 8.25
    for n in (16, 1024, 4096 * 4096):
        assert mx_bits(n, "nvfp4") == n * 4 + n // 2 + 32 and mx_bits(n, "nvfp4") / n == 4 + 8 / 16 + 32 / n


def test_bad_input():
    W = torch.randn(4, 64)
    with pytest.raises(ValueError, match="fmt must be one of mxfp4, mxfp6_e3m2, mxfp6_e2m3, mxfp8_e4m3, nvfp4"):
        mx_quantize(W, "mxfp5")
    with pytest.raises(ValueError, match="blocksize must be 32 .*MX specification fixes the block at 32.*got 64"):
        mx_quantize(W, "mxfp4", blocksize=64)
    with pytest.raises(ValueError, match="blocksize must be 16 .*nvfp4.*got 32"):
        mx_quantize(W, "nvfp4", blocksize=32)
    assert mx_quantize(W, "mxfp4", blocksize=32)[1].blocksize == 32
    with pytest.raises(ValueError, match="last dimension must be a multiple of the block size 32.*48"):
        mx_quantize(torch.randn(4, 48), "mxfp6_e2m3")
    with pytest.raises(ValueError, match="multiple of the block size 16"):
        mx_quantize(torch.randn(24), "nvfp4")
    bad = W.clone()
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="W must be finite"):
        mx_quantize(bad, "mxfp4")
    bad[1, 3] = float("inf")
    with pytest.raises(ValueError, match="W must be finite"):
        mx_quantize(bad, "nvfp4")
    with pytest.raises(ValueError, match="W must not be empty"):
        mx_quantize(torch.zeros(0, 32), "mxfp4")
    with pytest.raises(ValueError, match="W must be a floating-point tensor"):
        mx_quantize(torch.ones(2, 32, dtype=torch.int32), "mxfp4")
    with pytest.raises(ValueError, match="W must be a 1-D or 2-D tensor"):
        mx_quantize(torch.randn(2, 2, 32), "mxfp4")
    with pytest.raises(ValueError, match="fmt must be one of"):
        mx_bits(1024, "fp4")
    with pytest.raises(ValueError, match="numel must be a multiple of the nvfp4 block size 16"):
        mx_bits(40, "nvfp4")
    with pytest.raises(ValueError, match="numel must be an integer >= 1"):
        mx_bits(0, "mxfp4")


def test_dequantize_rejects_inconsistent_state():
    codes, state = mx_quantize(torch.randn(4, 64), "mxfp4")
    with pytest.raises(ValueError, match="state must be an MXState"):
        mx_dequantize(codes, {"fmt": "mxfp4"})
    with pytest.raises(ValueError, match=r"codes must be a uint8 tensor of shape \(4, 64\)"):
        mx_dequantize(codes[:2], state)
    with pytest.raises(ValueError, match="codes must be 4-bit element codes"):
        mx_dequantize(codes | 0x10, state)
    with pytest.raises(ValueError, match=r"state.scales must be a uint8 tensor of shape \(4, 2\)"):
        mx_dequantize(codes, MXState("mxfp4", (4, 64), torch.float32, state.scales[:, :1]))
    with pytest.raises(ValueError, match="state.tensor_scale must be None for mxfp4"):
        mx_dequantize(codes, MXState("mxfp4", (4, 64), torch.float32, state.scales, 1.0))
    codes, state = mx_quantize(torch.randn(4, 64), "nvfp4")
    with pytest.raises(ValueError, match="state.tensor_scale must be a positive finite float for nvfp4"):
        mx_dequantize(codes, MXState("nvfp4", (4, 64), torch.float32, state.scales, None))
    with pytest.raises(ValueError, match="non-negative finite E4M3 codes"):
        mx_dequantize(codes, MXState("nvfp4", (4, 64), torch.float32, state.scales | 0x80, state.tensor_scale))


@pytest.mark.parametrize("fmt", ["mxfp4", "mxfp6_e3m2", "mxfp6_e2m3"])
def test_mx_as_kbit_state_runs_the_registry_kernels_exactly(fmt, tmp_path):
    W = heavy_tailed(48, 256, 2)
    codes, state = mx_quantize(W, fmt)
    packed, qstate = mx_to_kbit(codes, state)
    assert qstate.codebook == {"mxfp4": "float4_e2m1", "mxfp6_e3m2": "float6_e3m2", "mxfp6_e2m3": "float6_e2m3"}[fmt]
    assert qstate.blocksize == 32 and qstate.bits == BITS[fmt] and packed.numel() == W.numel() * BITS[fmt] // 8
    expected = torch.from_numpy(ref_mx(W.double().numpy(), fmt)[2].astype(np.float32))
    assert torch.equal(dequantize(packed, qstate), expected)  # Numba
    assert torch.equal(dequantize_reference(packed, qstate), expected)  # pure torch
    save_quantized(tmp_path / "w.safetensors", packed, qstate)
    packed2, qstate2 = load_quantized(tmp_path / "w.safetensors")
    assert torch.equal(dequantize(packed2, qstate2), expected)
    gen = torch.Generator().manual_seed(5)
    for x in (torch.randn(256, generator=gen), torch.randn(3, 256, generator=gen)):
        y = kernels.gemv(packed, qstate, x)
        ref = x.double() @ expected.double().T
        assert y.shape == ref.shape and torch.allclose(y.double(), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize(("fmt", "element"), [("mxfp4", E2M1), ("mxfp6_e3m2", E3M2), ("mxfp6_e2m3", E2M3)])
def test_kbit_table_times_float32_absmax_is_exact_for_every_scale(fmt, element):
    """code * absmax in float32 equals the element value times 2**(b - 127) for every code and every E8M0 byte."""
    codes = (torch.arange(64) % 2**element.bits).to(torch.uint8).reshape(1, 64)  # every code, two blocks
    for b in range(0, 255):
        state = MXState(fmt, (1, 64), torch.float32, torch.full((1, 2), b, dtype=torch.uint8))
        if element.max * 2.0 ** (b - 127) > float(np.finfo(np.float32).max):
            with pytest.raises(ValueError, match="finite float32"):
                mx_to_kbit(codes, state)
            continue
        packed, qstate = mx_to_kbit(codes, state)
        want = torch.tensor([ref_decode(int(c), HAND[fmt], BITS[fmt]) * 2.0 ** (b - 127) for c in codes[0]])
        assert torch.equal(dequantize_reference(packed, qstate)[0], want.float())


def test_mx_to_kbit_refuses_mxfp8_and_nvfp4():
    for fmt in ("mxfp8_e4m3", "nvfp4"):
        codes, state = mx_quantize(torch.randn(2, 32), fmt)
        with pytest.raises(ValueError, match="state.fmt .* must be one of mxfp4, mxfp6_e3m2, mxfp6_e2m3"):
            mx_to_kbit(codes, state)
