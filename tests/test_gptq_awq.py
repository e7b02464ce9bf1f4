"""GPTQ and AWQ into mini_llm's k-bit formats, against references written from the papers in float64 numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mini_llm.kernels.reference import dequantize_reference, quantize_reference
from mini_llm.quant import QuantizedLinear, dequantize, quantize, unpack_codes
from mini_llm.quant import gptq as gptq_module
from mini_llm.quant.awq import awq_quantize, awq_scales, awq_search, awq_search_errors, fold_scales
from mini_llm.quant.codebooks import Codebook, codebook
from mini_llm.quant.gptq import gptq_quantize, gptq_weight, quantize_with_scales

pytestmark = pytest.mark.usefixtures("one_thread")


def correlated_inputs(n: int, d: int, seed: int, mix: float = 1.0) -> torch.Tensor:
    """X = Z A (n, d): Gaussian rows mixed by a random matrix, so the input channels are correlated."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, d, generator=g)
    A = torch.eye(d) + mix * torch.randn(d, d, generator=g) / d**0.5
    return Z @ A


def calibration_error(X: torch.Tensor, W: torch.Tensor, Q: torch.Tensor) -> float:
    """||X W^T - X Q^T||^2 in float64."""
    X64 = X.double().numpy()
    return float(np.sum((X64 @ (W.double().numpy() - Q.double().numpy()).T) ** 2))


def obq_reference(W, X, table, blocksize, percdamp=0.01, act_order=False):
    """GPTQ's fixed-order OBQ update in float64, straight from the paper: quantize column q to the nearest code times
    its block's absmax (taken from the current weights when the block is first reached), e = (w_q - Q(w_q)) /
    [H^-1]_qq, w_rest -= e [H^-1]_{q,rest}, and remove q from H^-1 by Gaussian elimination. Returns (codes, values)."""
    W = W.double().numpy().copy()  # (out, d)
    X = X.double().numpy()
    out, d = W.shape
    H = 2.0 * X.T @ X / X.shape[0]
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    order = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(d)
    H = H + percdamp * np.mean(np.diag(H)) * np.eye(d)
    Hinv = np.linalg.inv(H)
    table = np.asarray(table, dtype=np.float64)
    usable = np.flatnonzero(np.abs(table) <= 1.0)  # codes an absmax scale can reach
    size = out * d if blocksize is None else blocksize
    block = (np.arange(out * d) // size).reshape(out, d)  # block id of each element of the row-major weight
    scale = {}
    codes = np.zeros((out, d), dtype=np.int64)
    values = np.zeros((out, d))
    for q in order:
        for i in range(out):
            b = block[i, q]
            if b not in scale:  # every element of a block not yet reached is still unquantized
                scale[b] = float(np.float32(np.abs(W[block == b]).max()))
            s = scale[b]
            normed = W[i, q] / s if s > 0 else 0.0
            c = usable[np.argmin(np.abs(table[usable] - normed))]
            codes[i, q], values[i, q] = c, table[c] * s
        e = (W[:, q] - values[:, q]) / Hinv[q, q]  # (out,)
        W -= np.outer(e, Hinv[q, :])  # column q becomes its quantized value; the done columns have Hinv[q] = 0
        Hinv = Hinv - np.outer(Hinv[:, q], Hinv[q, :]) / Hinv[q, q]  # row and column q eliminated
    return codes, values


@pytest.mark.parametrize("lazy_batch", [128, 24, 16])
@pytest.mark.parametrize(
    ("bits", "name", "blocksize", "act_order"),
    [(3, "nf", 32, False), (4, "int", 32, True), (3, "int", None, False), (2, "nf", 128, True), (4, "nf", 64, True)],
)
def test_gptq_matches_the_obq_update_in_float64(monkeypatch, lazy_batch, bits, name, blocksize, act_order):
    monkeypatch.setattr(gptq_module, "LAZY_BATCH", lazy_batch)
    out, d, n = 8, 64, 128
    X = correlated_inputs(n, d, seed=bits)
    X[:, 5] = 0.0  # a dead input
    W = torch.randn(out, d, generator=torch.Generator().manual_seed(7))
    table = codebook(name, bits).values
    packed, state = gptq_quantize(W, X, bits, name, blocksize, act_order=act_order)
    codes, values = obq_reference(W, X, table, blocksize, act_order=act_order)
    got = unpack_codes(packed, bits, out * d).reshape(out, d).numpy()
    assert (got == codes).all()
    Q = dequantize(packed, state).double().numpy()
    np.testing.assert_allclose(Q, values, rtol=0, atol=1e-5)
    assert (Q[:, 5] == 0).all()


def test_gptq_result_is_exactly_representable_by_its_scales():
    X = correlated_inputs(256, 128, seed=3)
    W = torch.randn(32, 128, generator=torch.Generator().manual_seed(3))
    for blocksize, act_order in [(32, True), (64, False), (None, False), (256, True)]:
        packed, state = gptq_quantize(W, X, 3, "nf", blocksize, act_order=act_order)
        Q = dequantize(packed, state)
        book = Codebook(state.codebook, state.bits, state.code.numpy())
        packed2, state2 = quantize_with_scales(Q, state.absmax, 3, book, blocksize)
        assert torch.equal(dequantize(packed2, state2), Q) and torch.equal(packed2, packed)


def test_quantize_with_own_absmax_is_round_to_nearest():
    W = torch.randn(16, 256, generator=torch.Generator().manual_seed(0))
    for bits, name, blocksize in [(4, "nf", 64), (3, "int", 32), (2, "float", None), (4, "dynamic", 128)]:
        packed, state = quantize(W, bits, name, blocksize)
        packed2, _ = quantize_with_scales(W, state.absmax, bits, name, blocksize)
        assert torch.equal(packed2, packed)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("name", ["int", "nf"])
def test_gptq_never_increases_the_calibration_error(bits, name):
    for seed in range(3):
        X = correlated_inputs(512, 128, seed=seed)
        W = torch.randn(32, 128, generator=torch.Generator().manual_seed(100 + seed))
        rtn = dequantize(*quantize(W, bits, name, 64))
        gptq = gptq_weight(W, X, bits, name, 64)
        assert calibration_error(X, W, gptq) <= calibration_error(X, W, rtn)


def test_gptq_at_3_bits_cuts_the_error_on_strongly_correlated_inputs():
    # The paper's premise: with correlated inputs the error feedback cancels much of the rounding error.
    X = correlated_inputs(1024, 128, seed=11, mix=3.0)
    W = torch.randn(64, 128, generator=torch.Generator().manual_seed(11))
    rtn = dequantize(*quantize(W, 3, "nf", 64))
    for act_order in (False, True):
        ratio = calibration_error(X, W, gptq_weight(W, X, 3, "nf", 64, act_order=act_order)) / calibration_error(
            X, W, rtn
        )
        assert ratio < 0.8, ratio


def test_gptq_state_runs_in_quantized_linear():
    X = correlated_inputs(256, 128, seed=5)
    W = torch.randn(48, 128, generator=torch.Generator().manual_seed(5))
    bias = torch.randn(48, generator=torch.Generator().manual_seed(6))
    packed, state = gptq_quantize(W, X, 4, "nf", 64, act_order=True)
    Q = dequantize(packed, state).double()
    layer = QuantizedLinear(packed, state, bias)
    with torch.no_grad():
        for rows in (3, 20):  # the fused GEMV and dequantize-then-matmul
            x = X[:rows]
            expected = x.double() @ Q.T + bias.double()
            torch.testing.assert_close(layer(x).double(), expected, rtol=1e-5, atol=1e-4)


def test_gptq_accepts_a_quantile_codebook_and_batched_inputs():
    X = correlated_inputs(256, 64, seed=8).reshape(4, 64, 64)  # (batch, tokens, in)
    W = torch.randn(16, 64, generator=torch.Generator().manual_seed(8))
    packed, state = gptq_quantize(W, X, 3, "quantile", 32)
    assert state.codebook == "quantile3" and torch.equal(state.code, quantize(W, 3, "quantile", 32)[1].code)
    Q = dequantize(packed, state)
    rtn = dequantize(*quantize(W, 3, "quantile", 32))
    X2 = X.reshape(-1, 64)
    assert calibration_error(X2, W, Q) < calibration_error(X2, W, rtn)


def salient_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    """Gaussian inputs with a few channels 10-50x larger (AWQ's salient channels)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    X[:, [3, 17, 40, 60]] *= torch.tensor([10.0, 20.0, 35.0, 50.0])
    return X


def test_awq_folded_layernorm_linear_computes_the_same_function():
    d = 64
    g = torch.Generator().manual_seed(0)
    ln, lin = nn.LayerNorm(d), nn.Linear(d, 32)
    with torch.no_grad():
        ln.weight.copy_(1 + 0.1 * torch.randn(d, generator=g))
        ln.bias.copy_(0.1 * torch.randn(d, generator=g))
    x = torch.randn(50, d, generator=g) * 3
    X = ln(x).detach()
    X[:, [3, 17]] *= 20  # make the search pick non-trivial scales
    scales = awq_search(lin.weight.detach(), X, 3, "nf", 32)
    assert float(scales.max() / scales.min()) > 2
    with torch.no_grad():
        before = lin(ln(x))
        fold_scales(ln, lin, scales)
        after = lin(ln(x))
    assert float((after - before).abs().max()) < 1e-5


def test_awq_folded_linear_linear_and_rmsnorm_compute_the_same_function():
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    up, down = nn.Linear(24, 64), nn.Linear(64, 16)
    q, k = nn.Linear(64, 32), nn.Linear(64, 32, bias=False)
    norm = nn.RMSNorm(64)
    x = torch.randn(40, 24, generator=g)
    h = torch.randn(40, 64, generator=g)
    scales = awq_scales(salient_inputs(200, 64, seed=1), 0.5)
    with torch.no_grad():
        before = down(up(x)), q(norm(h)), k(norm(h))
        fold_scales(up, down, scales)
        fold_scales(norm, [q, k], scales)
        after = down(up(x)), q(norm(h)), k(norm(h))
    for a, b in zip(after, before, strict=True):
        assert float((a - b).abs().max()) < 1e-5


def awq_errors_numpy(W, X, bits, name, blocksize, n_grid=20):
    """AWQ's search objective for every alpha in float64 numpy: s = mean|X|^alpha clamped at 1e-4 and divided by
    sqrt(max s * min s), the error ||X W^T - X (Q(W diag s) diag(1/s))^T||^2 with blockwise absmax round-to-nearest."""
    W64, X64 = W.double().numpy(), X.double().numpy()
    table = codebook(name, bits).values
    errors = []
    for step in range(n_grid):
        s = np.maximum(np.abs(X64).mean(axis=0) ** (step / n_grid), 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        scaled = W64 * s
        size = scaled.size if blocksize is None else blocksize
        codes, absmax, _ = quantize_reference(scaled.reshape(-1), table, size)
        Q = dequantize_reference(codes, table, absmax, None, size).reshape(W64.shape) / s
        errors.append(float(np.sum((X64 @ (W64 - Q).T) ** 2)))
    return errors


@pytest.mark.parametrize(("bits", "name"), [(3, "int"), (4, "nf"), (3, "nf")])
def test_awq_beats_round_to_nearest_on_salient_channels(bits, name):
    X = salient_inputs(256, 128, seed=bits)
    W = 0.05 * torch.randn(64, 128, generator=torch.Generator().manual_seed(bits))
    scales, alpha, errors = awq_search_errors(W, X, bits, name, 64)
    reference = awq_errors_numpy(W, X, bits, name, 64)
    np.testing.assert_allclose(errors, reference, rtol=1e-2)
    assert reference[round(alpha * 20)] <= 1.01 * min(reference)
    rtn = calibration_error(X, W, dequantize(*quantize(W, bits, name, 64)))
    packed, state, scales2 = awq_quantize(W, X, bits, name, 64)
    assert torch.equal(scales2, scales)
    awq = calibration_error(X / scales, W * scales, dequantize(packed, state))  # the layer sees x / s
    np.testing.assert_allclose(awq, min(reference), rtol=1e-2)
    assert awq < 0.7 * rtn


def test_awq_alpha_zero_is_round_to_nearest():
    X = salient_inputs(64, 64, seed=2)
    W = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(awq_scales(X, 0.0), torch.ones(64))
    packed, state, scales = awq_quantize(W, X, 4, "nf", 32, n_grid=1)  # the grid holds alpha = 0 only
    assert torch.equal(scales, torch.ones(64))
    assert torch.equal(packed, quantize(W, 4, "nf", 32)[0])
    layer = QuantizedLinear(packed, state)
    with torch.no_grad():
        torch.testing.assert_close(layer(X[:4]), X[:4] @ dequantize(packed, state).T, rtol=1e-5, atol=1e-4)


def test_bad_input_gets_clear_errors():
    W = torch.randn(8, 64)
    X = torch.randn(128, 64)
    with pytest.raises(ValueError, match=r"X must end in in_features=64"):
        gptq_quantize(W, torch.randn(128, 48), 4)
    with pytest.raises(ValueError, match=r"X must hold at least 64 rows .* got 10"):
        gptq_quantize(W, X[:10], 4)
    bad = X.clone()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"X must be finite"):
        gptq_quantize(W, bad, 4)
    with pytest.raises(ValueError, match=r"W must be finite"):
        gptq_quantize(W.index_fill(1, torch.tensor([2]), float("inf")), X, 4)
    with pytest.raises(ValueError, match=r"W must be a 2-D weight"):
        gptq_quantize(torch.randn(8, 4, 16), X, 4)
    with pytest.raises(ValueError, match=r"codebook must be one of int, float, dynamic, quantile, nf, got 'nf5x'"):
        gptq_quantize(W, X, 4, "nf5x")
    with pytest.raises(ValueError, match=r"bits must be an integer in 2..8, got 9"):
        gptq_quantize(W, X, 9)
    with pytest.raises(ValueError, match=r"blocksize must be a power of two"):
        gptq_quantize(W, X, 4, "nf", 48)
    with pytest.raises(ValueError, match=r"blocksize must divide in_features=96 or be a multiple of it"):
        gptq_quantize(torch.randn(8, 96), torch.randn(128, 96), 4, "nf", 64)
    with pytest.raises(ValueError, match=r"percdamp must be"):
        gptq_quantize(W, X, 4, percdamp=0.0)
    with pytest.raises(ValueError, match=r"act_order must be True or False"):
        gptq_quantize(W, X, 4, act_order="yes")
    with pytest.raises(TypeError, match=r"X must be a floating-point tensor"):
        gptq_quantize(W, torch.ones(128, 64, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match=r"absmax must be a float32 tensor of shape \(8,\)"):
        quantize_with_scales(W, torch.ones(4), 4, "nf", 64)
    with pytest.raises(ValueError, match=r"codebook 'quantile' depends on the data"):
        quantize_with_scales(W, torch.ones(8), 4, "quantile", 64)
    with pytest.raises(ValueError, match=r"X must end in in_features=64"):
        awq_search(W, torch.randn(16, 32))
    with pytest.raises(ValueError, match=r"n_grid must be an integer >= 1"):
        awq_search(W, X, n_grid=0)
    with pytest.raises(ValueError, match=r"codebook must be one of"):
        awq_search(W, X, 4, "mxfp4")
    with pytest.raises(TypeError, match=r"prev must be an nn.LayerNorm, nn.RMSNorm, another norm"):
        fold_scales(nn.ReLU(), nn.Linear(64, 8), torch.ones(64))
    with pytest.raises(ValueError, match=r"scales must be finite and > 0"):
        fold_scales(nn.LayerNorm(64), nn.Linear(64, 8), -torch.ones(64))
    with pytest.raises(ValueError, match=r"in_features=64"):
        fold_scales(nn.LayerNorm(64), nn.Linear(32, 8), torch.ones(64))
    with pytest.raises(ValueError, match=r"elementwise affine weight"):
        fold_scales(nn.LayerNorm(64, elementwise_affine=False), nn.Linear(64, 8), torch.ones(64))
