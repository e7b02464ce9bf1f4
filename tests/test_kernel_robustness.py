"""Hostile input to the public k-bit entry points: every mutation of packed, the state or x either gives the float64
reference's answer or a ValueError/TypeError naming the argument; it never crashes the process or reads past a buffer.

The fuzz cases run in a child process, so a segmentation fault fails the test instead of killing the test run.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mini_llm import kernels
from mini_llm.kernels import reference
from mini_llm.quant import QuantizedLinear, QuantState, dequantize, quantize

ROOT = Path(__file__).resolve().parents[1]

MUTATIONS = st.one_of(
    st.just(("none", None)),
    st.tuples(st.just("packed_bytes"), st.sampled_from([-1000, -3, -1, 1, 5, "empty"])),
    st.tuples(st.just("bits"), st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 8, 9, 2.0, True])),
    st.tuples(st.just("blocksize"), st.sampled_from([-64, 0, 1, 16, 48, 32, 64, 4096, None, 64.0])),
    st.tuples(st.just("shape"), st.sampled_from(["transpose", "more_rows", "fewer_cols", "flat", "3d", "zero"])),
    st.tuples(st.just("absmax"), st.sampled_from(["shorter", "longer", "empty", "float64", "int32", "2d"])),
    st.tuples(st.just("code"), st.sampled_from(["shorter", "longer", "empty", "float16", "int64"])),
    st.tuples(st.just("offset"), st.sampled_from(["add", "drop", "shorter"])),
    st.tuples(st.just("x"), st.sampled_from(["shorter", "longer", "empty", "complex64", "int64", "float64", "3d"])),
)


def mutate(packed: torch.Tensor, state: QuantState, x: torch.Tensor, field: str, how: object):
    """(packed, state, x) with one field changed as `how` says."""
    replace = dataclasses.replace
    if field == "packed_bytes":
        if how == "empty":
            packed = packed[:0]
        elif how > 0:
            packed = torch.cat([packed, torch.zeros(how, dtype=torch.uint8)])
        else:
            packed = packed[: max(packed.numel() + how, 0)]
    elif field == "bits":
        state = replace(state, bits=how)
    elif field == "blocksize":
        state = replace(state, blocksize=how)
    elif field == "shape":
        n, k = state.shape
        shapes = {"transpose": (k, n), "more_rows": (n + 1, k), "fewer_cols": (n, k - 32), "flat": (n * k,),
                  "3d": (1, n, k), "zero": (0, k)}
        state = replace(state, shape=shapes[how])
    elif field in ("absmax", "code"):
        t = getattr(state, field)
        t = {"shorter": t[:-1], "longer": torch.cat([t, t[:1]]), "empty": t[:0], "float64": t.double(),
             "float16": t.half(), "int32": t.int(), "int64": t.long(), "2d": t[None]}[how]
        state = replace(state, **{field: t})
    elif field == "offset":
        offset = {"add": torch.zeros_like(state.absmax), "drop": None, "shorter": torch.zeros_like(state.absmax)[:-1]}
        state = replace(state, offset=offset[how])
    elif field == "x":
        k = x.shape[-1]
        x = {"shorter": x[: k - 1], "longer": torch.cat([x, x[:1]]), "empty": x[:0], "complex64": x.to(torch.complex64),
             "int64": x.long(), "float64": x.double(), "3d": x[None, None]}[how]
    return packed, state, x


def expected_gemv(packed: torch.Tensor, state: QuantState, x: torch.Tensor) -> np.ndarray:
    """The float64 reference of the (possibly mutated) call; raises when the inputs do not describe one matrix."""
    n_rows, n_cols = state.shape
    numel = n_rows * n_cols
    blocksize = numel if state.blocksize is None else state.blocksize
    assert packed.numel() == reference.packed_nbytes(numel, state.bits) and x.shape[-1] == n_cols
    assert state.absmax.shape == (reference.n_blocks(numel, blocksize),) and state.code.shape == (2**state.bits,)
    offset = None if state.offset is None else state.offset.double().numpy()
    return reference.gemv_reference(
        packed.numpy(), state.bits, (n_rows, n_cols), state.code.double().numpy(), state.absmax.double().numpy(),
        offset, blocksize, x.double().numpy(),
    )


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    bits=st.integers(2, 8),
    n_rows=st.integers(1, 9),
    n_cols=st.sampled_from([32, 64, 96, 160]),
    blocksize=st.sampled_from([32, 64, 128, None]),
    centered=st.booleans(),
    backend=st.sampled_from(["auto", "portable"]),
    mutation=MUTATIONS,
)
def fuzz_entry_points(bits, n_rows, n_cols, blocksize, centered, backend, mutation):
    """One hostile call to kernels.gemv and kernels.dequantize (run in a child process by the test below)."""
    W = torch.from_numpy(np.random.default_rng(n_rows * n_cols + bits).standard_normal((n_rows, n_cols))).float()
    packed, state = quantize(W, bits, "nf", blocksize, centered=centered)
    x = torch.randn(n_cols)
    packed, state, x = mutate(packed, state, x, *mutation)
    try:
        y = kernels.gemv(packed, state, x, backend=backend)
    except (ValueError, TypeError) as error:
        assert mutation[0] != "none", error
        return
    expected = expected_gemv(packed, state, x)  # an AssertionError here: a silent answer to an inconsistent call
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)
    values = kernels.dequantize(packed, state, torch.float32)
    np.testing.assert_allclose(values.numpy() @ x.double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_fuzzed_calls_never_crash_the_process():
    code = "import sys; sys.path.insert(0, 'tests'); import test_kernel_robustness as t; t.fuzz_entry_points()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, f"exit {done.returncode} (negative: killed by a signal)\n{done.stderr[-4000:]}"


def test_state_of_another_matrix_is_rejected_before_the_kernel_runs():
    """The reported crash: a 64x512 matrix's bytes with the state of a 131072x512 one (exit 139 before the fix)."""
    code = (
        "import torch; from mini_llm.quant import quantize; from mini_llm.kernels import gemv, dequantize\n"
        "p, _ = quantize(torch.randn(64, 512)); _, s = quantize(torch.randn(1 << 17, 512))\n"
        "for call in (lambda: gemv(p, s, torch.randn(512)), lambda: gemv(p, s, torch.randn(512), backend='portable'),"
        " lambda: dequantize(p, s)):\n"
        "    try:\n        call()\n    except ValueError as e:\n        print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("packed has 16384 bytes but the state (67108864 values of 4 bits) needs 33554432") == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(blocksize=0), "blocksize must be a power of two"),
        (dict(blocksize=-64), "blocksize must be a power of two"),
        (dict(bits=3), r"state.code must be a floating-point tensor of shape \(8,\)"),
        (dict(absmax=torch.ones(3)), r"state.absmax must be a floating-point tensor of shape \(16,\)"),
        (dict(code=torch.ones(4)), r"state.code must be a floating-point tensor of shape \(16,\)"),
        (dict(shape=(16.0, 64)), "state.shape must be a non-empty tuple of positive ints"),
    ],
)
def test_bad_state_fields_name_the_field(change, message):
    packed, state = quantize(torch.randn(16, 64))
    bad = dataclasses.replace(state, **change)
    for call in (lambda: kernels.gemv(packed, bad, torch.randn(64)), lambda: kernels.dequantize(packed, bad)):
        with pytest.raises(ValueError, match=message):
            call()


def test_x_must_be_real_and_not_empty():
    packed, state = quantize(torch.randn(16, 64))
    with pytest.raises(ValueError, match="x must be float16, bfloat16, float32 or float64, got torch.complex64"):
        kernels.gemv(packed, state, torch.randn(64, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"x must have shape \(64,\) or \(B, 64\) with B >= 1, got \(0, 64\)"):
        kernels.gemv(packed, state, torch.randn(0, 64))
    with pytest.raises(ValueError, match="dtype must be float16, bfloat16, float32 or float64, got torch.int8"):
        kernels.dequantize(packed, state, torch.int8)


QUANT_MUTATIONS = st.one_of(
    MUTATIONS,
    st.tuples(st.just("dtype"), st.sampled_from([torch.float16, torch.bfloat16, torch.float64, torch.int8, "float32"])),
    st.tuples(st.just("codebook"), st.sampled_from(["nf3", "quantile4", "", None, 4])),
    st.tuples(st.just("values"), st.sampled_from(["absmax_nan", "absmax_inf", "absmax_negative", "code_nan",
                                                  "code_unsorted", "offset_inf"])),
    st.tuples(st.just("x_values"), st.sampled_from(["nan", "inf", "zero_rows", "huge", "3d_batch", "0d"])),
)


def mutate_quant(packed: torch.Tensor, state: QuantState, x: torch.Tensor, field: str, how: object):
    """(packed, state, x) with one field changed: the kernel mutations plus the state's dtype, codebook and values."""
    replace = dataclasses.replace
    if field == "dtype":
        return packed, replace(state, dtype=how), x
    if field == "codebook":
        return packed, replace(state, codebook=how), x
    if field == "values":
        tensor_name, change = how.split("_")
        t = getattr(state, tensor_name)
        if t is None:
            return packed, state, x
        t = t.clone()
        if change == "unsorted":
            t = t.flip(0).contiguous()
        else:
            t[0] = {"nan": float("nan"), "inf": float("inf"), "negative": -1.0}[change]
        return packed, replace(state, **{tensor_name: t}), x
    if field == "x_values":
        x = x.clone()
        if how in ("nan", "inf"):
            x[0] = float(how)
        elif how == "huge":
            x = x * 1e30
        shaped = {"zero_rows": x.new_zeros(0, x.shape[-1]), "3d_batch": x.reshape(1, 1, -1).expand(2, 3, -1),
                  "0d": x[0]}
        return packed, state, shaped.get(how, x)
    return mutate(packed, state, x, field, how)


def reference_values(packed: torch.Tensor, state: QuantState) -> np.ndarray:
    """The float64 values (state.shape) of packed under state; asserts that they describe one tensor."""
    numel = int(np.prod(state.shape))
    blocksize = numel if state.blocksize is None else state.blocksize
    assert packed.numel() == reference.packed_nbytes(numel, state.bits) and state.code.shape == (2**state.bits,)
    assert state.absmax.shape == (reference.n_blocks(numel, blocksize),)
    codes = reference.unpack_reference(packed.numpy(), state.bits, numel)
    offset = None if state.offset is None else state.offset.double().numpy()
    flat = reference.dequantize_reference(codes, state.code.double().numpy(), state.absmax.double().numpy(), offset,
                                          blocksize)
    return flat.reshape(state.shape)


def reference_layer(packed: torch.Tensor, state: QuantState, x: torch.Tensor) -> np.ndarray:
    """The float64 answer of x @ W^T (W as packed and state describe it), for x (..., K); asserts they describe one."""
    n_rows, n_cols = state.shape
    assert x.ndim >= 1 and x.shape[-1] == n_cols and x.is_floating_point()
    x2 = x.reshape(-1, n_cols) if x.numel() else np.zeros((0, n_cols))
    y = expected_gemv(packed, state, torch.as_tensor(np.asarray(x2, dtype=np.float64)))
    return np.asarray(y).reshape(*x.shape[:-1], n_rows)


@settings(max_examples=int(os.environ.get("QUANT_FUZZ_EXAMPLES", 150)), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(
    bits=st.integers(2, 8),
    n_rows=st.integers(1, 6),
    n_cols=st.sampled_from([32, 96]),
    blocksize=st.sampled_from([32, 64, None]),
    centered=st.booleans(),
    backend=st.sampled_from(["auto", "portable", "reference"]),
    grad=st.booleans(),
    mutation=QUANT_MUTATIONS,
)
def fuzz_quant_entry_points(bits, n_rows, n_cols, blocksize, centered, backend, grad, mutation):
    """One hostile call to mini_llm.quant.dequantize and QuantizedLinear.forward (run in a child process below)."""
    W = torch.from_numpy(np.random.default_rng(n_rows * n_cols + bits).standard_normal((n_rows, n_cols))).float()
    packed, state = quantize(W, bits, "nf", blocksize, centered=centered)
    layer = QuantizedLinear(packed, state, backend=backend)
    packed, state, x = mutate_quant(packed, state, torch.randn(n_cols), *mutation)
    try:
        values = dequantize(packed, state)
    except (ValueError, TypeError) as error:
        assert mutation[0] not in ("none", "x", "x_values"), error
        assert any(name in str(error) for name in ("packed", "state", "x", "bits", "blocksize", "dtype")), error
    else:  # accepted: the float64 reference's values (an AssertionError there: a silent answer to a bad state)
        expected = reference_values(packed, state)
        assert values.dtype == state.dtype and tuple(values.shape) == tuple(state.shape)
        assert np.isfinite(values.double().numpy()).all() or not np.isfinite(expected).all()
        tolerance = 1e-6 if state.dtype in (torch.float32, torch.float64) else 1e-2
        assert_matches(values.double().numpy(), expected, tolerance)
    for name in ("packed", "code", "absmax", "offset"):  # the layer's buffers replaced by the mutated ones
        setattr(layer, name, packed if name == "packed" else getattr(state, name))
    layer.bits, layer.blocksize, layer.codebook, layer.weight_dtype = state.bits, state.blocksize, state.codebook, \
        state.dtype
    if isinstance(state.shape, tuple) and len(state.shape) == 2:
        layer.out_features, layer.in_features = state.shape
    else:
        layer.out_features, layer.in_features = (None, None)
    try:
        with torch.set_grad_enabled(grad):
            y = layer(x)
    except (ValueError, TypeError) as error:
        assert mutation[0] != "none" and mutation != ("x_values", "huge"), error
        assert any(name in str(error) for name in ("packed", "state", "x", "bits", "blocksize", "in_features")), error
        return
    expected = reference_layer(packed, state, x.double())
    got = y.double().detach().numpy()
    if bool(torch.isfinite(x).all()) and np.isfinite(expected).all():
        assert np.isfinite(got).all(), f"NaN/Inf for finite input under {mutation}"
    half = (torch.float16, torch.bfloat16)
    tolerance = 1e-2 if x.dtype in half or state.dtype in half else 1e-4
    assert_matches(got, expected, tolerance)


def assert_matches(got: np.ndarray, expected: np.ndarray, tolerance: float) -> None:
    """got equals expected within tolerance (relative to its largest finite value) where expected is finite, and is
    NaN or Inf where expected is (Inf - Inf may come out as NaN in another order of summation)."""
    finite = np.isfinite(expected)
    assert got.shape == expected.shape and np.array_equal(np.isfinite(got), finite), (got, expected)
    scale = 1.0 + float(np.abs(expected[finite]).max(initial=0.0))
    np.testing.assert_allclose(got[finite], expected[finite], rtol=tolerance, atol=tolerance * scale)


def test_fuzzed_quant_calls_never_crash_the_process():
    """mini_llm.quant.dequantize and QuantizedLinear.forward under the mutations above, in a child process."""
    code = "import sys; sys.path.insert(0, 'tests'); import test_kernel_robustness as t; t.fuzz_quant_entry_points()"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, f"exit {done.returncode} (negative: killed by a signal)\n{done.stderr[-4000:]}"
