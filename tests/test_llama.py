"""mini_llm's Llama against transformers' LlamaForCausalLM with the same (random) weights: logits, cache, greedy."""

import pytest
import torch
import transformers

from mini_llm.generation import generate
from mini_llm.nn.kv_cache import quantized_cache
from mini_llm.nn.llama import Llama, LlamaConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def pair(tie: bool = True) -> tuple[Llama, transformers.LlamaForCausalLM]:
    """A tiny SmolLM2-shaped model (GQA 4 query heads on 2 key/value heads) and transformers' with its weights."""
    config = LlamaConfig(vocab_size=64, block_size=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, n_inner=48,
                         rope_base=100000.0, tie_weights=tie)
    torch.manual_seed(0)
    ours = Llama(config).eval()
    for name, p in ours.named_parameters():  # RMSNorm gains away from 1 so that a missing gain would show
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            torch.nn.init.uniform_(p, 0.5, 1.5)
    hf_config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=config.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, tie_word_embeddings=tie,
        attention_bias=False, mlp_bias=False,
    )
    theirs = transformers.LlamaForCausalLM(hf_config).eval()
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied: the head is the embedding
    return ours, theirs


@pytest.mark.parametrize("tie", [True, False])
@torch.no_grad()
def test_logits_equal_transformers(tie):
    ours, theirs = pair(tie)
    idx = torch.randint(64, (2, 20), generator=torch.Generator().manual_seed(1))
    expected = theirs(idx).logits  # (B, T, V)
    got = ours(idx).logits
    assert (got - expected).abs().max().item() <= 1e-4 * expected.abs().max().item()


@torch.no_grad()
def test_cache_and_greedy_tokens_equal_transformers():
    ours, theirs = pair()
    prompt = torch.randint(64, (1, 7), generator=torch.Generator().manual_seed(2))
    expected = theirs.generate(prompt, max_new_tokens=24, do_sample=False, use_cache=True, pad_token_id=0)
    assert torch.equal(generate(ours, prompt, 24, greedy=True), expected)
    assert torch.equal(generate(ours, prompt, 24, greedy=True, use_cache=False), expected)
    cache = quantized_cache(ours.config.n_layer, 8)  # int8 keys/values of the 2 KV heads
    out = ours(prompt, past_key_values=cache, use_cache=True)
    assert cache[0].codes[0].shape == (1, 2, 7, 8)  # (B, H_kv, S, D): stored before the heads are repeated
    gap = (out.logits - theirs(prompt).logits).abs().max() / theirs(prompt).logits.abs().max()
    assert gap < 0.01


def test_bad_config():
    with pytest.raises(ValueError, match="n_head must be a multiple of n_kv_head, got n_head=4, n_kv_head=3"):
        LlamaConfig(n_head=4, n_kv_head=3, n_embd=32)
    with pytest.raises(ValueError, match="n_embd must be divisible by n_head"):
        LlamaConfig(n_head=5, n_kv_head=5, n_embd=32)
    with pytest.raises(ValueError, match="rms_norm_eps must be a finite number > 0"):
        LlamaConfig(rms_norm_eps=0.0)
    model = Llama(LlamaConfig(vocab_size=8, block_size=4, n_layer=1, n_head=2, n_kv_head=1, n_embd=8, n_inner=8))
    with pytest.raises(ValueError, match="exceeds block_size 4"):
        model(torch.zeros(1, 5, dtype=torch.long))
