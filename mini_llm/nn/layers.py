"""Building blocks shared by the models: activations, the feed-forward network, the encoder layer, positions."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mini_llm.helpers import check_number, is_int
from mini_llm.nn.attention import MultiHeadAttention, check_attn_impl

# Hugging Face names: "gelu" is the exact erf form (BERT), "gelu_new" the tanh approximation (GPT-2).
ACTIVATIONS = ("gelu", "gelu_new", "relu")


def check_activation(name: str) -> None:
    """Raise ValueError unless name is one of ACTIVATIONS."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def check_size(name: str, value: object, allowed: str = "") -> None:
    """TypeError unless value is an integer (not a bool or float), ValueError unless it is >= 1."""
    if not is_int(value):
        raise TypeError(f"{name} must be {allowed}an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be {allowed}>= 1, got {value}")


def check_config(
    config: object,
    sizes: Sequence[str],
    width: str,
    heads: str,
    dropouts: Sequence[str],
    activation: str,
    flags: Sequence[str] = (),
) -> None:
    """The checks every model config shares, by field name: sizes are integers >= 1, width is divisible by heads,
    dropouts lie in [0, 1), flags are True or False, the activation and attn_impl are known ones."""
    for name in sizes:
        check_size(name, getattr(config, name))
    c, h = getattr(config, width), getattr(config, heads)
    if c % h != 0:
        raise ValueError(f"{width} must be divisible by {heads}, got {width}={c}, {heads}={h}")
    for name in dropouts:
        check_number(name, getattr(config, name), 0.0, 1.0, high_open=True, allowed="a number in [0, 1)")
    for name in flags:
        if not isinstance(getattr(config, name), bool):
            raise TypeError(f"{name} must be True or False, got {getattr(config, name)!r}")
    check_activation(getattr(config, activation))
    check_attn_impl(config.attn_impl)


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of ACTIVATIONS)."""
    check_activation(name)
    if name == "gelu":
        return nn.GELU()  # x Φ(x), Φ the standard normal CDF (erf)
    if name == "gelu_new":
        return nn.GELU(approximate="tanh")  # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
    return nn.ReLU()


class MLP(nn.Module):
    """Position-wise feed-forward network: c_proj(act(c_fc(x))), then dropout (Vaswani et al. eq. 2)."""

    def __init__(self, d_model: int, d_ff: int, act: str = "gelu", bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, d_ff, bias=bias)
        self.act = activation(act)
        self.c_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        h = self.act(self.c_fc(x))  # (B, T, d_ff)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class EncoderLayer(nn.Module):
    """Self-attention and FFN sub-layers, each with a residual connection and LayerNorm.

    Post-LN (``norm_first=False``, BERT and Vaswani et al.): x = LN(x + Sublayer(x)).
    Pre-LN (``norm_first=True``, GPT-2 style): x = x + Sublayer(LN(x)).
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        d_ff: int,
        act: str = "gelu",
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        norm_first: bool = False,
        attn_impl: str = "sdpa",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(d_model, n_head, bias, attn_dropout, dropout, attn_impl)
        self.ln_1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.mlp = MLP(d_model, d_ff, act, bias, dropout)
        self.ln_2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C), key mask (B, 1, 1, T) -> (output (B, T, C), weights (B, H, T, T) or None)."""
        if self.norm_first:
            a, _, weights = self.attn(self.ln_1(x), mask=mask, need_weights=need_weights)  # (B, T, C)
            x = x + a  # (B, T, C)
            x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        else:
            a, _, weights = self.attn(x, mask=mask, need_weights=need_weights)  # (B, T, C)
            x = self.ln_1(x + a)  # (B, T, C)
            x = self.ln_2(x + self.mlp(x))  # (B, T, C)
        return x, weights


def sinusoidal_positions(n_positions: int, d_model: int) -> torch.Tensor:
    """(n_positions, d_model) table PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...) (Vaswani et al. 3.5)."""
    if d_model % 2 != 0:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {d_model}")
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))  # (d/2,)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)  # (P, d)
    table[:, 0::2] = torch.sin(position * inv_freq)  # (P, d/2)
    table[:, 1::2] = torch.cos(position * inv_freq)  # (P, d/2)
    return table.float()


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """GPT-2/BERT initialisation: Linear and Embedding weights ~ N(0, std²), biases 0, LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
