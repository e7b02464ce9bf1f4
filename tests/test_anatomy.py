"""The anatomy of a training step: FLOPs against torch's counter, state bytes by hand, saved activations by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mini_llm.nn import GPT, GPTConfig
from mini_llm.train import anatomy


def gpt(attn_impl: str = "math", tie: bool = True) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=16, attn_impl=attn_impl,
                       tie_weights=tie)
    return GPT(config)


def test_matmul_params_by_hand():
    C, V, L = 16, 50, 2
    per_block = C * 3 * C + C * C + C * 4 * C + 4 * C * C  # attention qkv and projection, MLP up and down
    assert anatomy.matmul_params(gpt()) == L * per_block + V * C  # the tied LM head once
    assert anatomy.matmul_params(gpt(tie=False)) == L * per_block + V * C  # the lookup table multiplies nothing


@pytest.mark.parametrize("length", [8, 32, 64])
def test_predicted_flops_equal_torchs_flop_counter_with_the_explicit_attention(length):
    model = gpt("math")
    x = torch.randint(0, 50, (3, length))
    forward, total = anatomy.measured_step_flops(model, x, torch.randint(0, 50, (3, length)))
    assert total == anatomy.predicted_step_flops(model, 3, length)
    assert total == 3 * forward  # backward = twice the forward
    assert all(p.grad is None for p in model.parameters())  # the measurement leaves no gradients behind


def test_state_bytes_of_adamw_are_two_moments_per_parameter():
    model = gpt()
    optimizer = torch.optim.AdamW(model.parameters())
    x = torch.randint(0, 50, (2, 8))
    model(x, x).loss.backward()
    optimizer.step()
    n = sum(p.numel() for p in model.parameters())
    assert anatomy.state_bytes(model, optimizer) == {"parameters": 4 * n, "gradients": 4 * n, "optimizer": 8 * n}
    assert anatomy.state_bytes(model)["optimizer"] == 0


def test_saved_activations_of_a_linear_layer_by_hand():
    layer = nn.Linear(4, 3)
    x = torch.randn(5, 4)

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (model(x) ** 2).sum()  # the linear keeps its input, the square keeps its input

    assert anatomy.saved_activation_bytes(layer, x, x, loss_fn) == 4 * (5 * 4 + 5 * 3)


def test_saved_activations_grow_quadratically_with_the_explicit_attention_only():
    def saved(impl: str, length: int) -> int:
        x = torch.randint(0, 50, (1, length))
        return anatomy.saved_activation_bytes(gpt(impl), x, x)

    def second_difference(impl: str) -> int:  # at T = 16, 32, 48: zero for a + bT, 512 c for a + bT + cT^2
        a, b, c = (saved(impl, t) for t in (16, 32, 48))
        return c - 2 * b + a

    assert second_difference("sdpa") == 0  # the fused kernel keeps no T x T matrix
    assert second_difference("math") > 0  # the explicit formula keeps the attention weights
