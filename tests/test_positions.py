"""RoPE against transformers' LLaMA rotary embedding, ALiBi slopes against the paper's rule, and GPTs that use them."""

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from mini_llm.nn import GPT, GPTConfig
from mini_llm.nn.positions import alibi_bias, alibi_slopes, apply_rotary, rope_cos_sin, rope_frequencies

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scaling", [None, "linear"])
def test_rope_equals_transformers_llama(scaling):
    heads, head_dim, base, factor = 4, 16, 5000.0, 4.0
    parameters = {"rope_type": scaling or "default", "rope_theta": base} | ({"factor": factor} if scaling else {})
    reference = LlamaRotaryEmbedding(LlamaConfig(hidden_size=heads * head_dim, num_attention_heads=heads,
                                                 rope_parameters=parameters))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, heads, 9, head_dim, generator=g), torch.randn(2, heads, 9, head_dim, generator=g)
    positions = torch.arange(5, 14)  # a cache of 5 tokens before these 9
    cos_ref, sin_ref = reference(q, positions[None])  # (1, T, D)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    cos, sin = rope_cos_sin(positions, rope_frequencies(head_dim, base, scaling, factor))
    assert torch.allclose(apply_rotary(q, cos, sin), q_ref, atol=1e-5)
    assert torch.allclose(apply_rotary(k, cos, sin), k_ref, atol=1e-5)


def test_rope_depends_on_relative_position_only_and_ntk_formula():
    theta = rope_frequencies(8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    scores = []
    for shift in (0, 7, 100):  # query at 3 + shift, key at 1 + shift
        cq, sq = rope_cos_sin(torch.tensor([3 + shift]), theta)
        ck, sk = rope_cos_sin(torch.tensor([1 + shift]), theta)
        scores.append((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item())
    assert scores == pytest.approx([scores[0]] * 3, rel=1e-4)
    ntk = rope_frequencies(8, 10000.0, "ntk", 4.0)  # base 10000 * 4^(8/6)
    expected = (10000.0 * 4.0 ** (8 / 6)) ** -(torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    assert torch.allclose(ntk.double(), expected, rtol=1e-6)
    # the highest frequency stays as trained, the lowest is interpolated by exactly the factor
    assert ntk[0] == 1.0 and ntk[-1].item() == pytest.approx(rope_frequencies(8)[-1].item() / 4.0, rel=1e-5)


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -i for i in range(1, 9)])  # 1/2 ... 1/256
    twelve = [2 ** (-8 * h / 8) for h in range(1, 9)] + [2 ** (-8 * h / 16) for h in (1, 3, 5, 7)]
    assert alibi_slopes(12).tolist() == pytest.approx(twelve)  # 8 slopes, then every other one of 16
    bias = alibi_bias(alibi_slopes(2), torch.tensor([2]), torch.arange(3))  # (H, 1, 3)
    assert torch.equal(bias[:, 0], torch.tensor([[-2 * 2**-4, -(2**-4), 0.0], [-2 * 2**-8, -(2**-8), 0.0]]))


@pytest.mark.parametrize("position", ["rope", "alibi"])
@torch.no_grad()
def test_gpt_with_rope_or_alibi_caches_and_runs_past_block_size(position):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=4, n_embd=32, position=position)).eval()
    assert "wpe" not in model.transformer and model.num_params() == model.num_params(non_embedding=False)
    assert model.num_params(non_embedding=False) == model.config.param_count()
    idx = torch.randint(30, (2, 40), generator=torch.Generator().manual_seed(1))  # 40 > block_size 16
    full = model(idx).logits  # (B, 40, V)
    out = model(idx[:, :25], use_cache=True)
    steps = [out.logits]
    for t in range(25, 40):
        out = model(idx[:, t : t + 1], past_key_values=out.past_key_values, use_cache=True)
        steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    math_path = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=2, n_head=4, n_embd=32, position=position,
                              attn_impl="math")).eval()
    math_path.load_state_dict(model.state_dict())
    assert torch.allclose(math_path(idx).logits, full, atol=1e-5)  # the explicit formula agrees with sdpa


def test_bad_settings():
    with pytest.raises(ValueError, match="position must be one of"):
        GPTConfig(position="sinusoidal")
    with pytest.raises(ValueError, match="rope_scaling must be one of"):
        GPTConfig(position="rope", rope_scaling="yarn")
    with pytest.raises(ValueError, match=r"rope_factor must be a finite number >= 1, got 0.5"):
        GPTConfig(position="rope", rope_scaling="linear", rope_factor=0.5)
    with pytest.raises(ValueError, match="head_dim must be even, got 5"):
        rope_frequencies(5)
    with pytest.raises(ValueError, match="exceeds block_size"):
        GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=8))(torch.zeros(1, 5, dtype=torch.long))
    assert math.isclose(alibi_slopes(1).item(), 2**-8)
