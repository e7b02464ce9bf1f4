"""LoRA and QLoRA (mini_llm.nn.lora) against float64 numpy, torch autograd on the explicit formula and hand counts."""

import copy
import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from mini_llm.nn import (
    GPT,
    GPTConfig,
    LoRALinear,
    adapter_bytes,
    add_lora,
    lora_parameters,
    lora_state_dict,
    merge_lora,
)
from mini_llm.quant import QuantizedLinear, quantize_model

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()


def randomize_b(model: nn.Module, seed: int = 1) -> None:
    """Give every B a random value (B starts at zero, which would hide the update)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, LoRALinear)):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)


def lora_reference(x, weight, bias, A, B, scaling):
    """x Wᵀ + b + scaling · x Aᵀ Bᵀ in float64 numpy."""
    x, weight, A, B = (np.asarray(t.detach(), dtype=np.float64) for t in (x, weight, A, B))
    out = x @ weight.T + scaling * (x @ A.T) @ B.T
    return out if bias is None else out + np.asarray(bias.detach(), dtype=np.float64)


def test_adapted_layer_starts_equal_to_base():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, rank=3, alpha=6.0)
    x = torch.randn(4, 5, 12)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) == 3 * 12
    assert layer.scaling == 2.0 and LoRALinear(nn.Linear(12, 7), rank=3).scaling == 1.0  # alpha=None: alpha = rank


@pytest.mark.parametrize("rank, alpha", [(1, None), (4, 8.0), (7, 2.5)])
def test_forward_matches_float64_formula(rank, alpha):
    torch.manual_seed(rank)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, rank, alpha)
    randomize_b(layer)
    x = torch.randn(3, 5, 12)
    expected = lora_reference(x, base.weight, base.bias, layer.lora_A, layer.lora_B, (alpha or rank) / rank)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_gradients_reach_only_a_and_b_and_match_autograd_of_the_formula():
    model = add_lora(tiny_gpt(), rank=2, alpha=4.0)
    randomize_b(model)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    model(idx, targets=idx).loss.backward()
    trainable = {id(p) for p in lora_parameters(model)}
    assert len(trainable) == 2 * 4 * 2  # A and B of 4 linears in each of 2 blocks
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (id(param) in trainable), name
        assert param.requires_grad == (id(param) in trainable), name

    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(10, 6), rank=3, alpha=5.0)
    randomize_b(layer)
    x, upstream = torch.randn(4, 10), torch.randn(4, 6)
    (layer(x) * upstream).sum().backward()
    W, b = layer.base.weight.double(), layer.base.bias.double()
    A = layer.lora_A.detach().double().requires_grad_()
    B = layer.lora_B.detach().double().requires_grad_()
    x64 = x.double()
    ((x64 @ W.T + b + (5.0 / 3) * (x64 @ A.T) @ B.T) * upstream.double()).sum().backward()
    torch.testing.assert_close(layer.lora_A.grad.double(), A.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.lora_B.grad.double(), B.grad, rtol=1e-5, atol=1e-6)
    assert layer.base.weight.grad is None and layer.base.bias.grad is None


def test_merged_gpt_matches_adapted_gpt():
    model = add_lora(tiny_gpt(), rank=4, alpha=8.0)
    randomize_b(model)
    idx = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(2))
    adapted = model(idx).logits
    merged = merge_lora(copy.deepcopy(model))
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert isinstance(merged.transformer.h[0].attn.c_attn, nn.Linear)
    torch.testing.assert_close(merged(idx).logits, adapted, rtol=0, atol=1e-5)
    layer = model.transformer.h[1].mlp.c_fc
    expected = layer.base.weight.double() + 2.0 * layer.lora_B.double() @ layer.lora_A.double()  # alpha / r = 2
    torch.testing.assert_close(merged.transformer.h[1].mlp.c_fc.weight.double(), expected, rtol=0, atol=1e-6)
    assert not (merged(idx).logits - tiny_gpt()(idx).logits).abs().max() < 1e-3  # the update is really there


def test_adapter_state_dict_and_bytes_by_hand():
    rank = 4
    model = add_lora(tiny_gpt(), rank)
    # per block: c_attn 16->48, attn.c_proj 16->16, c_fc 16->64, mlp.c_proj 64->16; A and B hold r * (in + out)
    per_block = rank * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
    state = lora_state_dict(model)
    assert len(state) == 2 * 4 * 2 and state["transformer.h.0.attn.c_attn.lora_A"].shape == (rank, 16)
    assert state["transformer.h.1.mlp.c_proj.lora_B"].shape == (16, rank)
    assert adapter_bytes(model) == 4 * 2 * per_block
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * per_block

    randomize_b(model)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(3))
    fresh = add_lora(tiny_gpt(), rank)  # same base, other adapters
    fresh.load_state_dict(lora_state_dict(model), strict=False)
    torch.testing.assert_close(fresh(idx).logits, model(idx).logits, rtol=0, atol=0)


def test_lora_on_nf4_quantized_linear():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    base = QuantizedLinear.from_linear(linear, 4, "nf", 64)
    layer = LoRALinear(base, rank=4, alpha=8.0)
    assert (layer.in_features, layer.out_features) == (64, 32)
    assert list(layer.parameters()) == [layer.lora_A, layer.lora_B]  # the k-bit base has buffers only
    randomize_b(layer)
    x = torch.randn(5, 64)
    expected = lora_reference(x, base.dequantized_weight(), base.bias, layer.lora_A, layer.lora_B, 2.0)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-4, atol=1e-5)  # reference path
    with torch.no_grad():  # the fused k-bit kernel
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-5)
    layer(x).sum().backward()
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    merged = merge_lora(layer)
    assert isinstance(merged, nn.Linear) and merged.weight.dtype == torch.float32
    np.testing.assert_allclose(merged(x).detach().numpy(), expected, rtol=1e-4, atol=1e-5)


def test_qlora_gpt_via_quantize_model():
    model = quantize_model(tiny_gpt(), 4, "nf", 32)
    add_lora(model, rank=2)
    assert sum(isinstance(m, LoRALinear) and isinstance(m.base, QuantizedLinear) for m in model.modules()) == 8
    randomize_b(model)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(4))
    model(idx, targets=idx).loss.backward()
    assert all(p.grad is not None for p in lora_parameters(model))
    adapted = model(idx).logits
    merged = merge_lora(copy.deepcopy(model))
    assert not any(isinstance(m, QuantizedLinear) for m in merged.modules())  # merging dequantizes
    torch.testing.assert_close(merged(idx).logits, adapted, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LoRALinear(nn.Linear(8, 4), rank=0), "rank"),
        (lambda: LoRALinear(nn.Linear(8, 4), rank=5), "rank"),
        (lambda: LoRALinear(nn.Linear(8, 4), rank=2.0), "rank"),
        (lambda: LoRALinear(nn.Linear(8, 4), rank=2, alpha=math.nan), "alpha"),
        (lambda: LoRALinear(nn.Linear(8, 4), rank=2, alpha=math.inf), "alpha"),
        (lambda: LoRALinear(nn.Linear(8, 4), rank=2, alpha=0.0), "alpha"),
        (lambda: LoRALinear(nn.Linear(8, 4), rank=2, dropout=1.0), "dropout"),
        (lambda: add_lora(tiny_gpt(), rank=0), "rank"),
        (lambda: add_lora(tiny_gpt(), rank=17), "rank"),
        (lambda: add_lora(tiny_gpt(), rank=2, alpha=-1.0), "alpha"),
        (lambda: add_lora(tiny_gpt(), rank=2, targets=("q_proj",)), "targets"),
        (lambda: add_lora(tiny_gpt(), rank=2, targets=("attn",)), "targets"),  # no linear layer is called attn
        (lambda: add_lora(tiny_gpt(), rank=2, targets=()), "targets"),
        (lambda: add_lora(add_lora(tiny_gpt(), rank=2), rank=2), "already has LoRA"),
        (lambda: merge_lora(tiny_gpt()), "no LoRA layers"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_base_raises_type_error_and_failed_add_lora_leaves_model_alone():
    with pytest.raises(TypeError, match="base"):
        LoRALinear(nn.LayerNorm(8), rank=1)
    model = tiny_gpt()
    with pytest.raises(ValueError, match="rank"):
        add_lora(model, rank=17)  # more than min(16, 48) of c_attn
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, LoRALinear) for m in model.modules())


def test_perplexities_split_unknown_targets_by_hand():
    from mini_llm.trends.lora_study import perplexities

    class Uniform(nn.Module):  # logits 0 everywhere but 2 at token 3: p(3) = e^2 / (e^2 + 4), others 1 / (e^2 + 4)
        def forward(self, x):
            logits = torch.zeros(*x.shape, 5)
            logits[..., 3] = 2.0
            return type("Out", (), {"logits": logits})()

    x = torch.zeros(2, 3, dtype=torch.long)
    y = torch.tensor([[3, 0, 1], [3, 3, 0]])  # two <unk> (id 0) targets
    z = math.e**2 + 4
    nll = {3: math.log(z) - 2.0, 0: math.log(z), 1: math.log(z)}
    every = math.exp(sum(nll[int(t)] for t in y.flatten()) / 6)
    known = math.exp((3 * nll[3] + nll[1]) / 4)
    assert perplexities(Uniform(), x, y) == pytest.approx((every, known), rel=1e-6)  # float32 logits


def test_run_lora_writes_every_method_on_a_tiny_model(tmp_path, monkeypatch):
    from mini_llm.data import CharData, CharTokenizer
    from mini_llm.trends import lora_study

    generator = torch.Generator().manual_seed(0)
    text = torch.randint(0, 50, (600,), generator=generator)
    data = CharData(CharTokenizer([chr(0x4E00 + i) for i in range(49)]), text, text.flip(0))
    monkeypatch.setattr(lora_study, "zoo_model", lambda size, cache_dir=None: tiny_gpt())
    monkeypatch.setattr(lora_study, "prepare_data", lambda: data)
    monkeypatch.setattr(lora_study, "review_tokens", lambda tokenizer: (text.roll(7), text.roll(11)))
    path = lora_study.run_lora(tmp_path, ranks=(1, 4), steps=2, batch_size=2, log=lambda line: None)
    rows = list(csv.DictReader(path.open()))
    assert [(r["method"], r["rank"], r["base_bits"]) for r in rows] == [
        ("none", "", "32"), ("lora", "1", "32"), ("lora", "4", "32"), ("none", "", "4"), ("qlora", "1", "4"),
        ("qlora", "4", "4"), ("full", "", "32"),
    ]
    for row in rows[1:3] + rows[4:6]:
        assert float(row["merged_review_perplexity"]) == pytest.approx(float(row["review_perplexity"]), rel=1e-5)
        assert int(row["adapter_bytes"]) == 4 * int(row["trainable_params"]) == 4 * 2 * 256 * int(row["rank"])
    assert rows[0]["review_perplexity"] != rows[1]["review_perplexity"]  # two steps changed the model
    assert int(rows[-1]["trainable_params"]) == sum(p.numel() for p in tiny_gpt().parameters())
    with pytest.raises(ValueError, match="ranks"):
        lora_study.run_lora(tmp_path, ranks=(0,))
