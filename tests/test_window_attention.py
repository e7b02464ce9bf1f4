"""Sliding-window (local) attention: a float64 reference, shift invariance, and the bounded cache of window_cache."""

import math

import pytest
import torch

from mini_llm.nn import GPT, GPTConfig, window_cache
from mini_llm.nn.positions import apply_rotary, rope_cos_sin, rope_frequencies

pytestmark = pytest.mark.usefixtures("one_thread")


def window_gpt(position: str, window: int | None, n_layer: int = 2, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=13, block_size=64, n_layer=n_layer, n_head=2, n_embd=16, position=position,
                       attn_window=window)
    return GPT(config).eval()


def tokens(length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 13, (2, length), generator=torch.Generator().manual_seed(seed))  # (B, T)


def test_attention_weights_outside_the_window_are_zero_and_rows_match_a_float64_band_softmax():
    model = window_gpt("rope", 4, n_layer=1)
    idx = tokens(10)
    with torch.no_grad():
        weights = model(idx, return_attention=True).attentions[0]  # (B, H, T, T)
        block = model.transformer.h[0]
        x = block.ln_1(model.transformer.wte(idx)).double()  # (B, T, C)
    q, k, _ = (x @ block.attn.c_attn.weight.double().T + block.attn.c_attn.bias.double()).split(16, dim=2)
    cos, sin = rope_cos_sin(torch.arange(10), rope_frequencies(8).double())
    q = apply_rotary(q.view(2, 10, 2, 8).transpose(1, 2), cos.double(), sin.double())  # (B, H, T, D)
    k = apply_rotary(k.view(2, 10, 2, 8).transpose(1, 2), cos.double(), sin.double())
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)  # (B, H, T, T)
    i, j = torch.arange(10)[:, None], torch.arange(10)[None]
    band = (j <= i) & (j > i - 4)
    reference = torch.softmax(scores.masked_fill(~band, -math.inf), dim=-1)
    assert bool((weights[..., ~band] == 0).all())
    torch.testing.assert_close(weights.double(), reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_one_layer_sees_only_its_window_whatever_came_before(position):
    # RoPE and ALiBi depend on relative positions only: the last logits of a window-4 model are those of its last
    # 4 tokens alone
    model = window_gpt(position, 4, n_layer=1)
    idx = tokens(12)
    with torch.no_grad():
        whole = model(idx).logits[:, -1]  # (B, V)
        alone = model(idx[:, -4:]).logits[:, -1]
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_the_bounded_cache_decodes_like_the_whole_window_model(position):
    model = window_gpt(position, 5)
    idx = tokens(20)
    with torch.no_grad():
        whole = model(idx).logits  # (B, T, V)
        cache = window_cache(2, 5)
        out = model(idx[:, :7], past_key_values=cache, use_cache=True)  # a prompt longer than the window
        steps = [out.logits]
        for t in range(7, 20):
            out = model(idx[:, t:t + 1], past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, atol=1e-5, rtol=0)
    assert [len(layer) for layer in cache] == [20, 20]  # positions seen
    assert [layer.kv[0].size(2) for layer in cache] == [4, 4]  # held: window - 1
    assert cache[0].nbytes() == 2 * 2 * 2 * 4 * 8 * 4  # keys and values x B x H x (W - 1) x D x 4 bytes


def test_a_window_as_long_as_the_text_is_ordinary_causal_attention():
    full, windowed = window_gpt("rope", None), window_gpt("rope", 16)
    idx = tokens(16)
    with torch.no_grad():
        torch.testing.assert_close(windowed(idx).logits, full(idx).logits, atol=1e-6, rtol=0)


def test_bad_windows_name_the_argument():
    with pytest.raises(ValueError, match="attn_window"):
        window_gpt("rope", 0)
    with pytest.raises(TypeError, match="attn_window"):
        window_gpt("rope", 2.5)
    with pytest.raises(ValueError, match="window"):
        window_cache(2, 0)
