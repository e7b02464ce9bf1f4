"""The int8-activation GEMV (mini_llm.kernels.cpu_int8, backend 'int8') against float64 references."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mini_llm import kernels
from mini_llm.kernels import cpu, cpu_int8, cpu_simd
from mini_llm.quant import QuantizedLinear, quantize

needs_int8 = pytest.mark.skipif(not cpu_int8.HAS_INT8_DOT, reason="backend 'int8' needs AVX-512 VNNI or AVX2")
# Run in a child process with other switches: the kernel on random shapes equals the float64 reference.
PATH_CHECK = """
import numpy as np, sys, torch
from mini_llm import kernels
from mini_llm.kernels import cpu, cpu_int8, cpu_simd
from mini_llm.quant import quantize
assert cpu_int8.DOT_PATH == sys.argv[1], cpu_int8.DOT_PATH
gen = torch.Generator().manual_seed(0)
shapes = ((70, 576, "nf", 64, 2), (33, 512, "int", 128, 1), (8, 256, "nf", None, 1))
for n_rows, n_cols, book, blocksize, batch in shapes:
    W, x = torch.randn(n_rows, n_cols, generator=gen), torch.randn(batch, n_cols, generator=gen)
    packed, state = quantize(W, 4, book, blocksize)
    got = kernels.gemv(packed, state, x, backend="int8").numpy()
    codes = cpu.unpack(packed.numpy(), 4, n_rows * n_cols).reshape(n_rows, n_cols)
    absmax, size = state.absmax.numpy(), n_rows * n_cols if blocksize is None else blocksize
    if size > n_cols:
        absmax, size = absmax[np.arange(n_rows) * n_cols // size], n_cols
    reference = cpu_int8.reference_gemv(codes, state.code.numpy(), absmax, size, x.numpy())
    assert np.abs(got - reference).max() < 1e-5 * np.abs(reference).max(), (n_rows, n_cols)
"""


def test_int8_table_rounds_to_127_steps_of_the_largest_value():
    table = np.array([-1.0, -0.3, 0.0, 0.2, 0.5, 0.999], dtype=np.float32)
    lanes, scale = cpu_int8.int8_table(table)
    assert scale == pytest.approx(1.0 / 127)
    steps = lanes[:16].astype(int) - 128
    np.testing.assert_array_equal(steps[:6], [-127, -38, 0, 25, 64, 127])  # rint(127 * value)
    np.testing.assert_array_equal(steps[6:], 0)
    np.testing.assert_array_equal(lanes, np.tile(lanes[:16], 4))  # one copy per 128-bit lane
    with pytest.raises(ValueError, match="at most 16 values, got 32"):
        cpu_int8.int8_table(np.linspace(-1, 1, 32))


def test_activations_are_rounded_per_run_of_64():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 192)).astype(np.float32)
    x[1, 64:128] = 0.0  # an all-zero run: scale 0, codes 0
    q, scales, corrections = cpu_int8.quantize_activations(x, cpu_int8.ACTIVATION_ORDER, 0.5)
    runs = x.reshape(2, 3, 64)[:, :, cpu_int8.ACTIVATION_ORDER]  # (B, runs, 64) in the kernel's order
    top = np.abs(runs).max(axis=2)  # (B, runs)
    expected = np.rint(runs.astype(np.float64) * 127 / np.where(top > 0, top, 1)[:, :, None])
    np.testing.assert_array_equal(q.reshape(2, 3, 64), expected)
    np.testing.assert_allclose(scales, top / 127 * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(corrections.reshape(2, 3, 16), 128 * expected.reshape(2, 3, 16, 4).sum(axis=3))
    assert np.abs(q).max() == 127


@needs_int8
@pytest.mark.parametrize("n_rows, n_cols, codebook, blocksize, batch", [
    (96, 512, "nf", 64, 1),  # 8 runs per row: two unrolled steps of 4
    (130, 576, "int", 64, 3),  # 9 runs: the tail loop
    (64, 1024, "float", 256, 2),  # 4 runs per block
    (40, 512, "nf", 512, 1),  # one block per row
    (24, 128, "nf", 1024, 2),  # a block spans several rows: one scale per row
    (16, 256, "int", None, 1),  # one block over the whole tensor
])
def test_kernel_equals_the_float64_product_of_the_rounded_operands(n_rows, n_cols, codebook, blocksize, batch):
    gen = torch.Generator().manual_seed(n_rows)
    W = torch.randn(n_rows, n_cols, generator=gen)
    packed, state = quantize(W, 4, codebook, blocksize)
    x = torch.randn(batch, n_cols, generator=gen)
    x[0, :64] = 0.0
    got = kernels.gemv(packed, state, x, backend="int8").numpy()  # (B, N)
    codes = cpu.unpack(packed.numpy(), 4, n_rows * n_cols).reshape(n_rows, n_cols)
    absmax = state.absmax.numpy()
    whole = n_rows * n_cols if blocksize is None else blocksize
    if whole > n_cols:  # blocks of whole rows: each row takes its block's scale
        absmax = absmax[np.arange(n_rows) * n_cols // whole]
        blocksize = n_cols
    reference = cpu_int8.reference_gemv(codes, state.code.numpy(), absmax, blocksize, x.numpy())
    assert np.abs(got - reference).max() < 1e-5 * np.abs(reference).max()
    exact = kernels.gemv(packed, state, x, backend="simd").numpy()  # float activations and table
    error = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert 1e-4 < error < 0.03  # int8 rounding of x and of the table: ~1% on Gaussian x, never zero


@needs_int8
def test_nan_and_inf_inputs_give_nan_rows_as_with_float_activations():
    packed, state = quantize(torch.randn(16, 256, generator=torch.Generator().manual_seed(9)), 4, "nf", 64)
    x = torch.randn(3, 256, generator=torch.Generator().manual_seed(10))
    x[0, 5], x[1, 200] = float("nan"), float("inf")
    got = kernels.gemv(packed, state, x, backend="int8")
    assert bool(got[:2].isnan().all()) and bool(got[2].isfinite().all())
    assert not bool(kernels.gemv(packed, state, x, backend="simd")[:2].isfinite().any())  # float x: NaN or Inf


@needs_int8
def test_linear_layer_runs_int8_activations_at_every_batch_size():
    W = torch.randn(64, 256, generator=torch.Generator().manual_seed(5))
    packed, state = quantize(W, 4, "nf", 64)
    layer = QuantizedLinear(packed, state, backend="int8")
    x = torch.randn(300, 256, generator=torch.Generator().manual_seed(6))  # more rows than the small-batch limit
    with torch.no_grad():
        np.testing.assert_array_equal(layer(x).numpy(), kernels.gemv(packed, state, x, backend="int8").numpy())


def test_cases_it_cannot_run_name_what_it_needs(monkeypatch):
    W = torch.randn(32, 256, generator=torch.Generator().manual_seed(8))
    x = torch.randn(256)
    for bits, blocksize, centered in ((3, 64, False), (4, 32, False), (4, 64, True)):
        packed, state = quantize(W, bits, "nf", blocksize, centered=centered)
        with pytest.raises(ValueError, match=f"backend 'int8' needs a CPU with AVX-512 VNNI or AVX2, bits=4.*"
                                             f"got bits={bits}, "
                                             f"K=256, blocksize={blocksize}, centered={centered}"):
            kernels.gemv(packed, state, x, backend="int8")
    with pytest.raises(ValueError, match="blocks of 64 times a power of two.*K=576, blocksize=192"):
        cpu.row_kernel(4, state.code.numpy(), 576, 192, "int8")  # 3 runs per block
    packed, state = quantize(W, 3, "nf", 64)
    with pytest.raises(ValueError, match="backend 'int8' needs.*got bits=3"):
        QuantizedLinear(packed, state, backend="int8")  # refused when built, not at the first forward
    monkeypatch.setattr(cpu_int8, "HAS_INT8_DOT", False)
    monkeypatch.setattr(cpu_int8, "DOT_PATH", "none")
    packed, state = quantize(W, 4, "nf", 64)
    with pytest.raises(ValueError, match="int8 dot products=none"):
        kernels.gemv(packed, state, x, backend="int8")
    with pytest.raises(ValueError, match="int8 dot products=none"):
        cpu.row_kernel(4, state.code.numpy(), 256, 64, "int8")


@pytest.mark.skipif(not cpu_simd.HAS_AVX2, reason="the AVX2 path needs an AVX2 CPU")
@pytest.mark.parametrize("switches", [
    {"MINI_LLM_NO_VNNI": "1"},  # AVX2's vpmaddubsw on this CPU
    {"MINI_LLM_NO_AVX512": "1", "NUMBA_CPU_NAME": "haswell"},  # compiled for an AVX2-only CPU
])
def test_avx2_path_matches_the_reference(switches):
    env = dict(os.environ, **switches)
    subprocess.run([sys.executable, "-c", PATH_CHECK, "AVX2"], env=env, check=True, timeout=600)


def test_without_avx2_or_vnni_there_is_no_int8_path():
    env = dict(os.environ, MINI_LLM_NO_AVX512="1", MINI_LLM_NO_AVX2="1")
    code = "from mini_llm.kernels import cpu_int8; print(cpu_int8.HAS_VNNI, cpu_int8.HAS_INT8_DOT, cpu_int8.DOT_PATH)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "none"]
