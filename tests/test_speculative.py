"""Speculative decoding: greedy output equals the target's, and sampled tokens follow the target's distribution."""

import pytest
import torch

from mini_llm.generation import generate, speculative_generate
from mini_llm.generation.speculative import accept_draft
from mini_llm.nn import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def gpt(seed: int, n_layer: int = 2, n_embd: int = 32, vocab_size: int = 20) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=n_layer, n_head=2, n_embd=n_embd)).eval()


@pytest.mark.parametrize("gamma", [1, 3, 8])
def test_greedy_output_equals_the_targets_greedy_output(gamma):
    target, prompt = gpt(0), torch.randint(20, (1, 5), generator=torch.Generator().manual_seed(1))
    expected = generate(target, prompt, 30, greedy=True)  # (1, 35)
    for draft in (gpt(7, n_layer=1, n_embd=16), target):  # a weak draft, and the target drafting for itself
        out = speculative_generate(target, draft, prompt, 30, gamma=gamma, greedy=True)
        assert torch.equal(out.tokens, expected)
        assert out.target_calls <= 30 and out.accepted <= out.proposed
    assert out.acceptance_rate == 1.0  # the target as its own draft: every token accepted
    assert out.target_calls == -(-30 // (gamma + 1))  # gamma + 1 tokens per target call


def test_acceptance_rule_keeps_the_target_distribution():
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])  # (gamma + 1, V): target
    q = torch.tensor([[0.1, 0.2, 0.3, 0.4]])  # (gamma, V): a draft that prefers the wrong tokens
    generator, counts, n, accepted_total = torch.Generator().manual_seed(0), torch.zeros(4), 20_000, 0
    for _ in range(n):
        token = int(torch.multinomial(q[0], 1, generator=generator))  # the draft's proposal
        accepted, following = accept_draft(p, q, torch.tensor([token]), greedy=False, generator=generator)
        counts[token if accepted else following] += 1  # the first token the round outputs
        accepted_total += accepted
    sigma = (p[0] * (1 - p[0]) / n).sqrt()
    assert ((counts / n - p[0]).abs() < 4 * sigma).all(), counts / n  # not q: that would be off by 40 sigma
    expected_rate = torch.minimum(p[0], q[0]).sum().item()  # closed form: sum_x min(p(x), q(x)) = 0.5
    assert abs(accepted_total / n - expected_rate) < 4 * (0.25 / n) ** 0.5


def test_sampled_first_token_follows_the_target():
    target, draft = gpt(0, vocab_size=6), gpt(3, n_layer=1, n_embd=16, vocab_size=6)
    prompt = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        p = torch.softmax(target(prompt).logits[0, -1] / 0.7, dim=-1)  # (V,) the target's own distribution
    n, counts, rates = 2000, torch.zeros(6), []
    for seed in range(n):
        out = speculative_generate(target, draft, prompt, 3, gamma=2, temperature=0.7, seed=seed)
        counts[out.tokens[0, 3]] += 1
        rates.append(out.acceptance_rate)
        assert out.tokens.shape == (1, 6)
    sigma = (p * (1 - p) / n).sqrt()
    assert ((counts / n - p).abs() < 4 * sigma + 1e-3).all(), (counts / n, p)
    assert 0 < sum(rates) / n < 1


def test_bad_input():
    target, prompt = gpt(0), torch.tensor([[1, 2]])
    with pytest.raises(ValueError, match=r"gamma must be an integer >= 1 \(draft tokens per round\), got 0"):
        speculative_generate(target, target, prompt, 4, gamma=0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        speculative_generate(target, target, prompt, 4, temperature=0)
    with pytest.raises(ValueError, match=r"draft model's vocabulary \(21\) must be the target's \(20\)"):
        speculative_generate(target, gpt(1, vocab_size=21), prompt, 4)
    with pytest.raises(ValueError, match=r"shape \(1, T\) \(batch size 1\), got \(2, 2\)"):
        speculative_generate(target, target, torch.ones(2, 2, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="must fit in block_size 64"):
        speculative_generate(target, target, prompt, 63)
