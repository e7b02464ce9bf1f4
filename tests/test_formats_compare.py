"""Every weight format under one name (quant.formats), stored block after block with GPTQ and AWQ calibration
(quant.calibrated), and the comparison command (scaling.formats, ``mini-llm formats``)."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from mini_llm.nn import GPT, GPTConfig
from mini_llm.nn.llama import Llama, LlamaConfig
from mini_llm.quant import (
    dequantize,
    gguf_dequantize,
    gguf_quantize,
    gptq_quantize,
    mx_dequantize,
    mx_quantize,
    quantize,
)
from mini_llm.quant.calibrated import _apply_awq, block_calls, next_calls, record_inputs, store_blocks
from mini_llm.quant.formats import parse_format, store_matrix
from mini_llm.scaling import zoo
from mini_llm.scaling.formats import FOLDS, run_formats, stored_bits

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=20, n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.0)).eval()


def tiny_llama(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=20, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_inner=64,
                         block_size=16)
    model = Llama(config).eval()
    with torch.no_grad():  # norms away from 1 so that a wrong fold shows
        for param in model.parameters():
            if param.ndim == 1:
                param.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize(("spec", "method", "name", "bits", "blocksize"), [
    ("fp16", "fp16", "", 16, None), ("rtn-nf4-64", "rtn", "nf", 4, 64), ("GPTQ-int3-tensor", "gptq", "int", 3, None),
    ("awq-float5-128", "awq", "float", 5, 128), ("mxfp4", "mx", "mxfp4", 4, 32), ("nvfp4", "mx", "nvfp4", 4, 16),
    ("mxfp6_e2m3", "mx", "mxfp6_e2m3", 6, 32), ("q4_k", "gguf", "q4_k", 4, 256), ("q8_0", "gguf", "q8_0", 8, 32),
])
def test_format_specs_parse(spec, method, name, bits, blocksize):
    fmt = parse_format(spec)
    assert (fmt.spec, fmt.method, fmt.name, fmt.bits, fmt.blocksize) == (spec.lower(), method, name, bits, blocksize)
    assert fmt.calibrated == (method in ("gptq", "awq"))


@pytest.mark.parametrize("spec", ["nf4", "rtn-nf9-64", "rtn-nf4-48", "rtn-quantile4-64", "gptq-nf4", "q4_2", "", 4])
def test_bad_format_specs_name_the_allowed_ones(spec):
    with pytest.raises(ValueError, match=r"format must be|blocksize|bits"):
        parse_format(spec)


def test_stored_matrices_and_bits_equal_each_format_by_hand():
    torch.manual_seed(0)
    W = torch.randn(64, 128)  # 8192 values
    stored, bits = store_matrix(W, "fp16")
    assert torch.equal(stored, W.half().float()) and bits == 16 * 8192
    stored, bits = store_matrix(W, "rtn-nf4-64")
    assert torch.equal(stored, dequantize(*quantize(W, 4, "nf", 64))) and bits == 8192 * 4 + 32 * 128  # 4.5 per weight
    stored, bits = store_matrix(W, "mxfp4")
    assert torch.equal(stored, mx_dequantize(*mx_quantize(W.reshape(-1), "mxfp4")).reshape(64, 128))
    assert bits == 8192 * 4 + 8 * 8192 // 32  # 4.25 per weight
    _, bits = store_matrix(W, "nvfp4")
    assert bits == 8192 * 4 + 8 * 8192 // 16 + 32
    stored, bits = store_matrix(W, "q4_k")
    blocks = gguf_quantize(W.reshape(-1, 256), "q4_k")
    assert torch.equal(stored, gguf_dequantize(blocks, "q4_k", (32, 256)).reshape(64, 128))
    assert bits == 8192 // 256 * 144 * 8  # 144 bytes per 256 weights: 4.5 per weight
    _, bits = store_matrix(W, "q6_k")
    assert bits == 8192 // 256 * 210 * 8  # 6.5625 per weight
    stored_awq, _ = store_matrix(W, "awq-nf4-64")  # stored as its round-to-nearest format (scales folded before)
    assert torch.equal(stored_awq, dequantize(*quantize(W, 4, "nf", 64)))


def test_gptq_matrix_needs_inputs_and_beats_round_to_nearest():
    torch.manual_seed(1)
    W, X = torch.randn(32, 64), torch.randn(512, 64) @ (torch.eye(64) + 0.5 * torch.randn(64, 64) / 8)
    with pytest.raises(ValueError, match="calibration inputs X"):
        store_matrix(W, "gptq-int3-64")
    stored, bits = store_matrix(W, "gptq-int3-64", X)
    assert torch.equal(stored, dequantize(*gptq_quantize(W, X, 3, "int", 64)))
    rtn, rtn_bits = store_matrix(W, "rtn-int3-64")
    assert bits == rtn_bits
    error = lambda Q: float(((X.double() @ (W - Q).double().T) ** 2).sum())  # noqa: E731
    assert error(stored) < 0.8 * error(rtn)


def test_block_formats_refuse_matrices_that_do_not_split_into_blocks():
    with pytest.raises(ValueError, match="multiple of q4_k's block size 256"):
        store_matrix(torch.randn(8, 40), "q4_k")
    with pytest.raises(ValueError, match="multiple of mxfp4's block size 32"):
        store_matrix(torch.randn(3, 10), "mxfp4")
    with pytest.raises(ValueError, match="matrix"):
        store_matrix(torch.randn(64), "rtn-nf4-64")


def test_recorded_inputs_are_what_each_linear_layer_sees():
    model = tiny_gpt()
    block = model.transformer.h[1]
    linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    batches = [torch.randint(0, 20, (3, 16), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    first = block_calls(model, model.transformer.h[0], batches, lambda m, b: m(b))
    inputs = record_inputs(block, linears, next_calls(model.transformer.h[0], first))
    assert all(torch.equal(a, b) for a, b in zip(  # stopping at block 1 gives the same arguments
        inputs["attn.c_attn"].split(48),
        record_inputs(block, linears, block_calls(model, block, batches, lambda m, b: m(b)))["attn.c_attn"].split(48),
        strict=True))
    with torch.no_grad():
        expected = []
        for batch in batches:
            x = model.transformer.wte(batch) + model.transformer.wpe(torch.arange(16))
            x = model.transformer.h[0](x)[0]  # (B, T, C); the block also returns its cache
            expected.append(block.ln_1(x).reshape(-1, 32))
    assert inputs["attn.c_attn"].shape == (96, 32)
    torch.testing.assert_close(inputs["attn.c_attn"], torch.cat(expected), rtol=1e-5, atol=1e-6)
    assert inputs["mlp.c_proj"].shape == (96, 128)


@pytest.mark.parametrize("make", [tiny_gpt, tiny_llama])
def test_awq_folds_keep_the_function(make):
    """Before any rounding, folding AWQ's scales leaves the model's logits unchanged; with grouped-query attention the
    v -> o fold is skipped (its shapes differ)."""
    model = make()
    idx = torch.randint(0, 20, (2, 16), generator=torch.Generator().manual_seed(0))
    before = model(idx).logits
    block = (model.transformer.h if isinstance(model, GPT) else model.model.layers)[0]
    linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    inputs = record_inputs(block, linears, block_calls(model, block, [idx], lambda m, b: m(b)))
    norm_before = [p.clone() for p in block.parameters() if p.ndim == 1]
    applied = _apply_awq(block, linears, inputs, parse_format("awq-int2-tensor"), FOLDS[type(block).__name__])
    assert applied == (2 if isinstance(model, GPT) else 3)
    assert any(not torch.equal(a, b) for a, b in zip(norm_before, [p for p in block.parameters() if p.ndim == 1],
                                                       strict=True))
    torch.testing.assert_close(model(idx).logits, before, rtol=1e-4, atol=1e-5)


def test_store_blocks_replaces_every_block_linear_and_counts_its_bits():
    model = tiny_gpt()
    before = {n: p.clone() for n, p in model.named_parameters()}
    bits = store_blocks(model, list(model.transformer.h), "rtn-nf4-64")
    assert sorted(bits) == sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".h." in n)
    for name, layer_bits in bits.items():
        weight = before[f"{name}.weight"]
        assert layer_bits == weight.numel() * 4 + 32 * math.ceil(weight.numel() / 64)
        assert torch.equal(model.get_submodule(name).weight, dequantize(*quantize(weight, 4, "nf", 64)))
    assert torch.equal(model.lm_head.weight, before["transformer.wte.weight"])  # tied embedding: not in a block
    parts = stored_bits(model, bits, model.transformer.wte)
    others = sum(p.numel() for n, p in model.named_parameters() if n.removesuffix(".weight") not in bits)
    assert parts["linear"] == sum(bits.values())
    assert parts["embedding"] == 16 * 20 * 32
    assert parts["embedding"] + parts["other"] == 16 * others
    with pytest.raises(ValueError, match="needs calibration batches"):
        store_blocks(tiny_gpt(), list(model.transformer.h), "gptq-nf4-64")


def test_sequential_gptq_sees_the_quantized_earlier_blocks():
    """Block 1's GPTQ inputs come from the model whose block 0 is already stored (GPTQ's sequential reference)."""
    model, reference = tiny_gpt(), tiny_gpt()
    batches = [torch.randint(0, 20, (8, 16), generator=torch.Generator().manual_seed(s)) for s in range(2)]
    store_blocks(model, list(model.transformer.h), "gptq-int3-tensor", batches, lambda m, b: m(b))
    store_blocks(reference, [reference.transformer.h[0]], "gptq-int3-tensor", batches, lambda m, b: m(b))
    block = reference.transformer.h[1]
    linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    inputs = record_inputs(block, linears, block_calls(reference, block, batches, lambda m, b: m(b)))
    for name, layer in linears.items():
        expected, _ = store_matrix(layer.weight, "gptq-int3-tensor", inputs[name])
        torch.testing.assert_close(model.transformer.h[1].get_submodule(name).weight, expected)


def test_formats_command_on_the_test_zoo(tmp_path):
    cache = tmp_path / "cache"
    for job in zoo.plan("test", seeds=[0]):
        zoo.train_job(job, cache, progress=False, log=lambda m: None)
    out = tmp_path / "formats.csv"
    with pytest.raises(ValueError, match="format must be"):
        run_formats(out, ["zoo"], ["rtn-nf4-64", "nf5"], cache, say=lambda m: None, preset_set="test")
    with pytest.raises(ValueError, match="models must be"):
        run_formats(out, ["gpt4"], cache_dir=cache, say=lambda m: None, preset_set="test")
    specs = ["fp16", "rtn-nf4-64", "gptq-int4-tensor", "awq-nf4-64", "mxfp4", "q4_k"]
    assert run_formats(out, ["zoo"], specs, cache, say=lambda m: None, preset_set="test") == 2 * len(specs)
    assert run_formats(out, ["zoo"], specs, cache, say=lambda m: None, preset_set="test") == 0  # resumed: nothing new
    with out.open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["model"], r["format"]) for r in rows] == [(f"zoo-{s}", f) for s in ("1x16", "1x32") for f in specs]
    for row in rows:
        assert row["metric"] == "perplexity" and 1.0 < float(row["value"]) < 1e4
        assert int(row["total_bits"]) == int(row["linear_bits"]) + int(row["embedding_bits"]) + int(row["other_bits"])
    fp16, nf4 = rows[0], rows[1]
    assert float(fp16["bits_per_param"]) == 16.0 and float(fp16["weight_error"]) == 0.0
    assert float(nf4["linear_bits_per_weight"]) == 4.5 and nf4["embedding_bits"] == fp16["embedding_bits"]
    assert float(rows[4]["linear_bits_per_weight"]) == 4.25  # mxfp4
