"""The quantized KV cache: codes and scales against float64, int4 packing by hand, a GPT decoding with it."""

import numpy as np
import pytest
import torch

from mini_llm.nn import GPT, GPTConfig
from mini_llm.nn.kv_cache import QuantizedKV, pack_int4, quantize_tokens, quantized_cache, unpack_int4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("bits", [8, 4])
def test_codes_and_scales_match_a_float64_reference(bits):
    x = torch.randn(2, 3, 5, 16, generator=torch.Generator().manual_seed(0)) * torch.logspace(-2, 2, 5)[:, None]
    codes, scales = quantize_tokens(x, bits)
    levels = 2 ** (bits - 1) - 1
    x64 = x.double().numpy()
    s64 = (np.abs(x64).max(axis=-1, keepdims=True) / levels).astype(np.float16).astype(np.float64)  # stored in fp16
    expected = np.clip(np.rint(x64 / s64), -levels, levels)
    assert np.array_equal(scales.double().numpy(), s64)
    assert np.array_equal(codes.numpy(), expected.astype(np.int8))
    error = np.abs(codes.double().numpy() * s64 - x64)
    assert np.all(error <= s64 / 2 * (1 + 1e-3) + 1e-12)  # round to nearest: at most half a step per value


def test_int4_packing_by_hand():
    codes = torch.tensor([[-7, 7, 0, 1]], dtype=torch.int8)
    packed = pack_int4(codes)
    assert packed.tolist() == [[0xF1, 0x98]]  # low nibble = even index, code + 8
    every = torch.arange(-7, 8, dtype=torch.int8).repeat(2)[:30].view(1, 30)
    assert torch.equal(unpack_int4(pack_int4(every)), every)


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()


@pytest.mark.parametrize(("bits", "tolerance"), [(8, 0.01), (4, 0.1)])
@torch.no_grad()
def test_gpt_decodes_with_a_quantized_cache(bits, tolerance):
    model, idx = tiny_gpt(), torch.randint(50, (2, 20), generator=torch.Generator().manual_seed(1))
    full = model(idx).logits  # (B, T, V): no cache at all
    cache = quantized_cache(model.config.n_layer, bits)
    out = model(idx[:, :12], past_key_values=cache, use_cache=True)  # prefill 12 tokens
    steps = [out.logits]
    for t in range(12, 20):  # then one token at a time
        out = model(idx[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
        steps.append(out.logits)
    decoded = torch.cat(steps, dim=1)  # (B, T, V)
    scale = full.abs().max().item()
    gap = (decoded - full).abs().max().item() / scale
    assert gap < tolerance, gap  # measured: 8 bits 0.0009, 4 bits 0.013 of the logits' scale
    assert all(a is b for a, b in zip(out.past_key_values, cache, strict=True)) and len(cache[0]) == 20
    # each token is quantized once: the prompt fed whole gives the same cache and logits as fed in two parts
    whole = quantized_cache(model.config.n_layer, bits)
    assert torch.allclose(model(idx, past_key_values=whole, use_cache=True).logits[:, -1], decoded[:, -1], atol=1e-5)
    assert all(torch.equal(a, b) for layer_a, layer_b in zip(whole, cache, strict=True)
               for a, b in zip(layer_a.codes, layer_b.codes, strict=True))
    heads, head_dim = model.config.n_head, model.config.n_embd // model.config.n_head
    assert cache[0].nbytes() == 2 * 2 * heads * 20 * (head_dim * bits // 8 + 2)  # keys and values, fp16 scales


def test_bad_input():
    with pytest.raises(ValueError, match="kv bits must be one of 4, 8, got 3"):
        QuantizedKV(3)
    with pytest.raises(ValueError, match="head dimension D must be even, got 5"):
        QuantizedKV(4).append(torch.zeros(1, 1, 2, 5), torch.zeros(1, 1, 2, 5))
    with pytest.raises(ValueError, match=r"k and v must both be \(B, H, T, D\)"):
        QuantizedKV(8).append(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5))
    with pytest.raises(ValueError, match="n_layer must be an integer >= 1, got 0"):
        quantized_cache(0)
    zeros, scales = quantize_tokens(torch.zeros(1, 1, 1, 4), 8)  # an all-zero token: codes 0, scale 0
    assert not zeros.any() and scales.item() == 0


@torch.no_grad()
def test_generate_with_kv_bits_follows_the_quantized_cache_by_hand():
    from mini_llm.generation import generate

    model, prompt = tiny_gpt(), torch.randint(50, (1, 6), generator=torch.Generator().manual_seed(2))
    ours = generate(model, prompt, 10, greedy=True, kv_bits=4)  # (1, 16)
    cache, idx = quantized_cache(model.config.n_layer, 4), prompt
    out = model(idx, past_key_values=cache, use_cache=True)
    for _ in range(10):  # greedy decoding written out: the same cache, one token at a time
        idx = torch.cat([idx, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        out = model(idx[:, -1:], past_key_values=cache, use_cache=True)
    assert torch.equal(ours, idx)
    with pytest.raises(ValueError, match="kv_bits needs use_cache=True"):
        generate(model, prompt, 2, greedy=True, use_cache=False, kv_bits=8)
    with pytest.raises(ValueError, match="kv bits must be one of 4, 8, got 2"):
        generate(model, prompt, 2, greedy=True, kv_bits=2)
