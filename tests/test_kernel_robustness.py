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
from mini_llm.quant import QuantState, quantize

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
