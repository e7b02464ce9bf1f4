"""Numba CPU kernels (portable and AVX-512) against the float64 numpy reference, on random shapes incl. odd sizes."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_llm import kernels
from mini_llm.kernels import cpu, cpu_simd, reference
from mini_llm.quant import codebook, dequantize, quantize

BACKENDS = ["portable"] + (["simd"] if kernels.HAS_SIMD else [])


def case(bits, name, n_rows, n_cols, blocksize, centered, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(n_rows * n_cols).astype(np.float32)
    table = codebook(name, bits).values
    codes, absmax, offset = cpu.quantize_array(W, table, bits, blocksize, centered)
    return cpu.pack(codes, bits), table, absmax, offset, codes


@settings(max_examples=25, deadline=None)
@given(
    bits=st.integers(2, 8),
    name=st.sampled_from(["nf", "int", "float"]),
    n_rows=st.integers(1, 40),
    n_cols=st.integers(1, 130),
    blocksize=st.sampled_from([32, 64, 4096]),
    centered=st.booleans(),
    batch=st.integers(1, 3),
)
def test_portable_gemv_matches_reference_any_shape(bits, name, n_rows, n_cols, blocksize, centered, batch):
    packed, table, absmax, offset, codes = case(bits, name, n_rows, n_cols, blocksize, centered)
    x = np.random.default_rng(1).standard_normal((batch, n_cols)).astype(np.float32)
    expected = reference.gemv_reference(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x)
    got = cpu.gemv_array(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x, backend="portable")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("name", ["nf", "int", "float"])
def test_gemv_matches_reference_aligned_shapes(backend, bits, name):
    if backend == "simd" and cpu_simd.lookup_mode(bits, codebook(name, bits).values) is None:
        pytest.skip("no SIMD look-up for k >= 6 with a non-affine table (portable kernel serves it)")
    for n_rows, n_cols, blocksize, centered, batch in [
        (37, 128, 64, False, 1),
        (5, 96, 32, True, 3),
        (9, 64, 4096, False, 2),
        (4, 1024, 512, True, 2),  # more chunks per block than the unrolled kernels take: the chunk loop
    ]:
        packed, table, absmax, offset, _ = case(bits, name, n_rows, n_cols, blocksize, centered)
        if backend == "simd" and not cpu.simd_applies(bits, (n_rows, n_cols), table, blocksize):
            continue  # the byte-plane look-up (k >= 6, non-affine) needs K and blocksize multiples of 64
        x = np.random.default_rng(2).standard_normal((batch, n_cols)).astype(np.float32)
        expected = reference.gemv_reference(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x)
        got = cpu.gemv_array(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x, backend=backend)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
        vector = cpu.gemv_array(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x[0], backend=backend)
        np.testing.assert_allclose(vector, expected[0], rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.skipif(not cpu_simd.HAS_VBMI, reason="the byte-plane look-up needs AVX-512 VBMI")
@pytest.mark.parametrize("bits", [6, 7, 8])
@pytest.mark.parametrize("name", ["nf", "float"])
def test_byte_plane_lookup_matches_reference(bits, name):
    table = codebook(name, bits).values
    assert cpu_simd.lookup_mode(bits, table) == "bytes"
    assert sorted(cpu_simd.BYTE_LANE_ORDER.tolist()) == list(range(64))
    for n_rows, n_cols, blocksize, centered, batch in [
        (37, 128, 64, False, 1),
        (5, 256, 128, True, 3),
        (3, 64, 4096, False, 2),  # one block spans several rows
        (11, 192, 64, True, 1),
        (2, 512, 512, False, 4),
    ]:
        packed, table, absmax, offset, _ = case(bits, name, n_rows, n_cols, blocksize, centered, seed=bits)
        assert cpu.simd_applies(bits, (n_rows, n_cols), table, blocksize)
        x = np.random.default_rng(3).standard_normal((batch, n_cols)).astype(np.float32)
        expected = reference.gemv_reference(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x)
        got = cpu.gemv_array(packed, bits, (n_rows, n_cols), table, absmax, offset, blocksize, x, backend="simd")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # blocks of 32, or K not a multiple of 64: the portable kernel serves them
    assert not cpu.simd_applies(bits, (4, 96), table, 32)
    assert not cpu.simd_applies(bits, (4, 96), table, 96 * 4)
    assert not cpu.simd_applies(bits, (4, 128), table, 32)


@pytest.mark.skipif(not kernels.HAS_AVX512, reason="the SIMD kernels need AVX-512")
@pytest.mark.parametrize("name", ["nf", "int", "float"])
def test_three_bit_group_decode_matches_reference(name):
    table = codebook(name, 3).values
    mode = cpu_simd.lookup_mode(3, table)
    for n_rows, n_cols, blocksize, centered, batch in [
        (37, 128, 64, False, 1),
        (5, 256, 128, True, 3),
        (3, 128, 4096, False, 2),  # one block spans several rows
        (7, 384, 384, True, 1),  # one block per row, not a power of two times 64 per step
        (2, 512, 512, False, 4),
    ]:
        assert cpu_simd.layout(3, mode, n_cols, min(blocksize, n_cols)) == "group3"
        packed, table, absmax, offset, _ = case(3, name, n_rows, n_cols, blocksize, centered, seed=n_cols)
        x = np.random.default_rng(4).standard_normal((batch, n_cols)).astype(np.float32)
        expected = reference.gemv_reference(packed, 3, (n_rows, n_cols), table, absmax, offset, blocksize, x)
        got = cpu.gemv_array(packed, 3, (n_rows, n_cols), table, absmax, offset, blocksize, x, backend="simd")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert cpu_simd.layout(3, mode, 96, 32) == "chunks"  # K not a multiple of 128: 32 codes per step
    assert cpu_simd.layout(3, mode, 256, 32) == "chunks"  # blocks of 32: 32 codes per step
    assert sorted(cpu_simd.GROUP3_ORDER.tolist()) == list(range(128))



@pytest.mark.parametrize(
    "bits,mode,walk,order",
    [
        (3, "permute", "group3", cpu_simd.GROUP3_ORDER),
        (4, "permute", "chunks", cpu_simd.NIBBLE_ORDER),
        (8, "bytes", "bytes", cpu_simd.BYTE_LANE_ORDER),
        (5, "permute2", "chunks", np.arange(64)),
    ],
)
def test_x_is_reordered_to_the_decode_order_on_a_cache_line(bits, mode, walk, order):
    x = np.random.default_rng(0).standard_normal((3, 1024)).astype(np.float32)  # (B, K)
    got = cpu_simd.reorder_aligned(x, cpu_simd.x_order(bits, mode, walk))  # what the row kernel reads
    period = order.size
    expected = x.reshape(3, -1, period)[:, :, order].reshape(3, -1)
    np.testing.assert_array_equal(got, expected)
    assert got.ctypes.data % 64 == 0 and got.flags.c_contiguous

AVX2_CHECK = """
import numpy as np
from mini_llm.kernels import cpu, cpu_simd, reference
from mini_llm.quant import codebook
assert not cpu_simd.HAS_AVX512 and not cpu_simd.HAS_VBMI and cpu_simd.HAS_AVX2 and cpu_simd.HAS_SIMD
rng = np.random.default_rng(0)
for bits, name, shape, blocksize, centered, batch in [
        (4, "nf", (9, 256), 64, False, 1), (4, "int", (5, 128), 32, True, 3), (3, "nf", (7, 256), 128, False, 2),
        (2, "int", (3, 96), 32, False, 1), (5, "float", (4, 128), 64, True, 1), (8, "int", (6, 128), 64, False, 2),
        (4, "nf", (3, 64), 4096, False, 1)]:
    table = codebook(name, bits).values
    W = rng.standard_normal(shape[0] * shape[1]).astype(np.float32)
    c, a, o = cpu.quantize_array(W, table, bits, blocksize, centered)
    p = cpu.pack(c, bits)
    x = rng.standard_normal((batch, shape[1])).astype(np.float32)
    assert cpu.simd_applies(bits, shape, table, blocksize), (bits, name)
    expected = reference.gemv_reference(p, bits, shape, table, a, o, blocksize, x)
    got = cpu.gemv_array(p, bits, shape, table, a, o, blocksize, x, backend="simd")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
assert not cpu.simd_applies(8, (9, 128), codebook("nf", 8).values, 64)  # a 256-value table needs VBMI
"""


@pytest.mark.skipif(not (kernels.HAS_AVX2 or kernels.HAS_AVX512), reason="needs an x86 CPU with AVX2")
def test_avx2_kernels_match_the_reference():
    """The SIMD kernels compiled for an AVX2 CPU without AVX-512 (Haswell): two 8-lane vpermps per 16 codes."""
    env = dict(os.environ, MINI_LLM_NO_AVX512="1", NUMBA_CPU_NAME="haswell")
    subprocess.run([sys.executable, "-c", AVX2_CHECK], env=env, check=True, timeout=600)


def test_no_simd_switches_select_portable_kernels():
    code = (
        "import numpy as np; from mini_llm.kernels import cpu, cpu_simd, reference;"
        "from mini_llm.quant import codebook;"
        "assert not cpu_simd.HAS_SIMD and not cpu_simd.HAS_VBMI;"
        "assert not cpu.simd_applies(4, (9, 128), codebook('nf', 4).values, 64);"
        "t = codebook('nf', 8).values; rng = np.random.default_rng(0);"
        "W = rng.standard_normal(9 * 128).astype(np.float32); x = rng.standard_normal(128).astype(np.float32);"
        "c, a, o = cpu.quantize_array(W, t, 8, 64); p = cpu.pack(c, 8);"
        "assert not cpu.simd_applies(8, (9, 128), t, 64);"
        "e = reference.gemv_reference(p, 8, (9, 128), t, a, o, 64, x);"
        "np.testing.assert_allclose(cpu.gemv_array(p, 8, (9, 128), t, a, o, 64, x), e, rtol=1e-4, atol=1e-4)"
    )
    env = dict(os.environ, MINI_LLM_NO_AVX512="1", MINI_LLM_NO_AVX2="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)


@settings(max_examples=20, deadline=None)
@given(
    bits=st.integers(2, 8), n=st.integers(1, 5000), blocksize=st.sampled_from([32, 128, 4096]), centered=st.booleans()
)
def test_quantize_and_dequantize_match_reference(bits, n, blocksize, centered):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 3
    table = codebook("nf", bits).values
    codes, absmax, offset = cpu.quantize_array(x, table, bits, blocksize, centered)
    ref_codes, ref_absmax, ref_offset = reference.quantize_reference(x, table, blocksize, centered)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(absmax, ref_absmax)
    if centered:
        np.testing.assert_array_equal(offset, ref_offset)
    packed = cpu.pack(codes, bits)
    np.testing.assert_array_equal(packed, reference.pack_reference(codes, bits))
    np.testing.assert_array_equal(cpu.unpack(packed, bits, n), codes)
    values = cpu.dequantize_array(packed, bits, n, table, absmax, offset, blocksize)
    np.testing.assert_allclose(
        values, reference.dequantize_reference(codes, table, absmax, offset, blocksize), atol=1e-6
    )


def test_torch_reference_unpack_and_dequantize():
    packed, table, absmax, offset, codes = case(3, "nf", 7, 45, 32, True)
    np.testing.assert_array_equal(reference.unpack_torch(torch.from_numpy(packed), 3, codes.size).numpy(), codes)
    values = reference.dequantize_torch(
        torch.from_numpy(packed),
        3,
        (7, 45),
        torch.from_numpy(table.copy()),
        torch.from_numpy(absmax),
        torch.from_numpy(offset),
        32,
    )
    np.testing.assert_allclose(
        values.numpy().ravel(), reference.dequantize_reference(codes, table, absmax, offset, 32), atol=1e-6
    )


def test_all_zero_block_quantizes_to_zero():
    x = np.zeros(64, dtype=np.float32)
    codes, absmax, _ = cpu.quantize_array(x, codebook("nf", 4).values, 4, 32)
    assert absmax.tolist() == [0.0, 0.0]
    assert np.all(cpu.dequantize_array(cpu.pack(codes, 4), 4, 64, codebook("nf", 4).values, absmax, None, 32) == 0)


def test_gemv_dispatch_by_device_and_state():
    W = torch.randn(16, 64)
    packed, state = quantize(W, 4, "nf", 64)
    x = torch.randn(64)
    y = kernels.gemv(packed, state, x)
    expected = reference.gemv_reference(
        packed.numpy(), 4, (16, 64), state.code.numpy(), state.absmax.numpy(), None, 64, x.numpy()
    )
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert kernels.gemv(packed, state, x[None].repeat(3, 1)).shape == (3, 16)
    with pytest.raises(ValueError, match=r"x must have shape \(64,\) or \(B, 64\)"):
        kernels.gemv(packed, state, torch.randn(63))
    with pytest.raises(ValueError, match="backend must be one of auto, simd, portable"):
        kernels.gemv(packed, state, x, backend="gpu")
    whole = quantize(W, 4, "nf", None)  # one block: the kernel gives every row the same scale
    np.testing.assert_allclose(kernels.gemv(*whole, x).numpy(), (dequantize(*whole) @ x).numpy(), rtol=1e-4, atol=1e-4)


def test_simd_backend_refuses_cases_it_cannot_serve():
    packed, table, absmax, offset, _ = case(4, "nf", 3, 50, 32, False)
    with pytest.raises(ValueError, match="backend 'simd' needs"):
        cpu.gemv_array(packed, 4, (3, 50), table, absmax, offset, 32, np.zeros(50, np.float32), backend="simd")
