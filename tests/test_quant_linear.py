"""QuantizedLinear and quantize_model on a mini_llm GPT and a random-init transformers GPT-2; outliers; model bits."""

import copy

import pytest
import torch

from mini_llm.nn import GPT, GPTConfig
from mini_llm.quant import (
    QuantizedLinear,
    count_quantized,
    dequantize,
    model_bits,
    quantize,
    quantize_model,
    weight_error,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=64)).eval()


def tiny_hf_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=64, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("backend", ["auto", "portable", "reference"])
def test_quantized_linear_matches_dequantized_weight(backend):
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    q = QuantizedLinear.from_linear(linear, 4, "nf", 32, backend=backend)
    W = q.dequantized_weight()
    for shape in [(96,), (3, 96), (2, 5, 96), (20, 96)]:  # batch 1, small batch, 3-D, large batch
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(q(x), x @ W.t() + linear.bias, rtol=1e-4, atol=1e-4)
    assert weight_error(torch.nn.Sequential(q), torch.nn.Sequential(linear)) < 0.15


def test_gradients_flow_through_the_reference_path():
    q = QuantizedLinear.from_linear(torch.nn.Linear(64, 8), 4)
    x = torch.randn(2, 64, requires_grad=True)
    q(x).sum().backward()
    assert x.grad is not None and x.grad.shape == (2, 64)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_quantize_mini_llm_gpt(bits):
    model, ref = tiny_gpt(), tiny_gpt()
    idx = torch.randint(0, 50, (1, 8))
    quantize_model(model, bits, "nf", 64)
    assert count_quantized(model) == 8 and isinstance(model.lm_head, torch.nn.Linear)  # LM head skipped
    with torch.no_grad():
        err = (model(idx).logits - ref(idx).logits).abs().max() / ref(idx).logits.abs().max()
    assert err < {3: 0.3, 4: 0.15, 8: 0.02}[bits]
    assert model_bits(model) < model_bits(ref)


def test_quantize_transformers_gpt2_conv1d():
    model = tiny_hf_gpt2()
    ref = copy.deepcopy(model)
    idx = torch.randint(0, 50, (1, 8))
    quantize_model(model, 4, "nf", 64)
    assert count_quantized(model) == 8  # c_attn, c_proj, c_fc, mlp.c_proj of 2 blocks (Conv1D)
    with torch.no_grad():
        err = (model(idx).logits - ref(idx).logits).abs().max() / ref(idx).logits.abs().max()
    assert err < 0.15
    assert weight_error(model, ref) < 0.15


def test_outlier_dims_are_kept_in_16_bit_and_counted():
    model, ref = tiny_gpt_with_outlier(), tiny_gpt_with_outlier()  # hidden dimension 5 has huge activations
    idx = torch.randint(0, 50, (2, 8))
    quantize_model(model, 3, "nf", 64, outlier_fraction=1 / 64, calibration=[idx])
    layer = model.transformer.h[0].attn.c_attn
    assert layer.outlier_dims.tolist() == [5]
    torch.testing.assert_close(
        layer.outlier_weight.float(), ref.transformer.h[0].attn.c_attn.weight[:, [5]].half().float()
    )
    plain = QuantizedLinear.from_linear(ref.transformer.h[0].attn.c_attn, 3, "nf", 64)
    assert plain.stored_bits() == 192 * 64 * 3 + 32 * (192 * 64 // 64)
    # all 192 x 64 codes (the outlier column is zero there) and absmaxes, one float16 column and one int32 index
    assert layer.stored_bits() == 192 * 64 * 3 + 32 * (192 * 64 // 64) + 16 * 192 + 32
    assert torch.all(dequantize(layer.packed, layer.state)[:, 5] == 0)
    with torch.no_grad():
        err_outlier = (model(idx).logits - ref(idx).logits).abs().max()
        err_plain = (quantize_model(tiny_gpt_with_outlier(), 3, "nf", 64)(idx).logits - ref(idx).logits).abs().max()
    assert err_outlier < err_plain


@pytest.mark.parametrize("codebook", ["nf", "int", "quantile"])
def test_outlier_columns_leave_the_other_blocks_in_place(codebook):
    # Rows of very different scales, one block per row: keeping any column in 16 bit must not let a block reach into
    # the next row (whose absmax would then swamp it); every other weight is quantized exactly as with that column 0.
    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(64, 12, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(12, 64, generator=g) * torch.logspace(-2, 1, 12)[:, None])
    dims = torch.tensor([3, 40])
    kept = QuantizedLinear.from_linear(layer, 3, codebook, 64, outlier_dims=dims)
    zeroed = layer.weight.detach().index_fill(1, dims, 0.0)  # (12, 64)
    expected = dequantize(*quantize(zeroed, 3, codebook, 64)).float()
    expected[:, dims] = layer.weight.detach()[:, dims].half().float()
    torch.testing.assert_close(kept.dequantized_weight(), expected, rtol=0, atol=0)
    x = torch.randn(5, 64, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(kept(x), x @ expected.t(), rtol=1e-5, atol=1e-5)
        error_kept = (kept.dequantized_weight() - layer.weight).norm(dim=1) / layer.weight.norm(dim=1)  # (12,)
        plain = QuantizedLinear.from_linear(layer, 3, codebook, 64)
        error_plain = (plain.dequantized_weight() - layer.weight).norm(dim=1) / layer.weight.norm(dim=1)
    assert torch.all(error_kept <= error_plain * 1.2)  # no row is much worse off for the 16-bit columns


def tiny_gpt_with_outlier() -> GPT:
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.h[0].ln_1.weight[5] = 30.0
    return model


def test_model_bits_counts_every_tensor_once():
    model = tiny_gpt()
    fp32_bits = 32 * sum(p.numel() for p in model.parameters())  # wte and lm_head are tied: counted once
    assert model_bits(model) == fp32_bits + 32 * sum(b.numel() for b in model.buffers())
    quantize_model(model, 4, "int", 64)
    linear_params = sum(m.out_features * m.in_features for m in model.modules() if isinstance(m, QuantizedLinear))
    saved = model_bits(tiny_gpt()) - model_bits(model)
    assert saved == linear_params * 32 - linear_params * (4 + 32 / 64)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(bits=9), "bits must be an integer in 2..8"),
        (dict(blocksize=100), "blocksize must be a power of two"),
        (dict(codebook="posit"), "codebook must be one of"),
        (dict(backend="gpu"), "backend must be one of auto, simd, portable, int8, reference"),
        (dict(outlier_fraction=1.5), r"outlier_fraction must be in \[0, 1\)"),
        (dict(outlier_fraction=0.1), "needs calibration batches"),
    ],
)
def test_quantize_model_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize_model(tiny_gpt(), **kwargs)


def test_quantize_model_takes_one_skipped_name_as_a_string():
    model = quantize_model(tiny_gpt(), skip="lm_head")
    assert not isinstance(model.lm_head, QuantizedLinear) and count_quantized(model) > 0
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied to the embedding
    for skip in (3, [3], ("lm_head", None)):
        with pytest.raises(TypeError, match="skip must be a module name or a sequence of module names"):
            quantize_model(tiny_gpt(), skip=skip)


def test_from_linear_rejects_other_modules_and_bad_inputs():
    with pytest.raises(ValueError, match="module must be an nn.Linear or a transformers Conv1D"):
        QuantizedLinear.from_linear(torch.nn.Embedding(4, 4))
    q = QuantizedLinear.from_linear(torch.nn.Linear(64, 8))
    with pytest.raises(ValueError, match="x must end in in_features=64"):
        q(torch.randn(2, 63))
    for x in (torch.ones(2, 64, dtype=torch.long), torch.ones(64, dtype=torch.bool), torch.ones(64) * 1j):
        with pytest.raises(TypeError, match=f"x must be a floating-point tensor .*, got {x.dtype}"):
            q(x)
    with pytest.raises(TypeError, match="x must be a floating-point tensor .*, got list"):
        q([1.0] * 64)
    with pytest.raises(ValueError, match=r"x must end in in_features=64, got shape \(\)"):
        q(torch.tensor(1.0))
    bad = torch.nn.Linear(64, 8)
    with torch.no_grad():
        bad.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="W must be finite"):
        QuantizedLinear.from_linear(bad)
