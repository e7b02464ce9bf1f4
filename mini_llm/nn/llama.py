"""Llama: the decoder of LLaMA (Touvron et al., 2023) and of SmolLM2, in the style of ``nn/gpt.py``.

token embedding -> n_layer pre-norm blocks (x + attn(rms_1(x)), x + mlp(rms_2(x))) -> RMSNorm -> lm_head, with
rotary position embeddings on the queries and keys (``nn.positions``), grouped-query attention (n_kv_head key/value
heads shared by n_head / n_kv_head query heads each), a SwiGLU MLP down(silu(gate(x)) * up(x)) and no biases.

Parameter names are transformers' (model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head), so a LlamaForCausalLM state dict loads as
it is. The KV cache holds the n_kv_head heads before they are repeated: (B, H_kv, S, D) per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm.helpers import check_number
from mini_llm.nn.attention import KVCache, attention, check_attn_impl, merge_heads, split_heads
from mini_llm.nn.gpt import GPTOutput
from mini_llm.nn.kv_cache import cache_length, extend_cache
from mini_llm.nn.layers import check_size
from mini_llm.nn.positions import apply_rotary, check_rope, rope_cos_sin, rope_frequencies


@dataclass
class LlamaConfig:
    """Hyper-parameters of a Llama-family decoder; the defaults are SmolLM2-135M's."""

    vocab_size: int = 49152  # number of token ids
    block_size: int = 8192  # longest sequence the model was trained for (max_position_embeddings)
    n_layer: int = 30  # number of blocks
    n_head: int = 9  # query heads
    n_kv_head: int = 3  # key/value heads (grouped-query attention); n_head must be a multiple of it
    n_embd: int = 576  # model width C; head dimension C / n_head
    n_inner: int = 1536  # hidden width of the SwiGLU MLP
    rms_norm_eps: float = 1e-5  # ε added to the mean square in every RMSNorm
    rope_base: float = 100000.0  # RoPE's base theta
    tie_weights: bool = True  # lm_head shares the token embedding's weight
    attn_impl: str = "sdpa"  # "sdpa" or "math"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_kv_head", "n_embd", "n_inner"):
            check_size(name, getattr(self, name))
        check_attn_impl(self.attn_impl)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head must be a multiple of n_kv_head, got n_head={self.n_head}, "
                             f"n_kv_head={self.n_kv_head}")
        check_number("rms_norm_eps", self.rms_norm_eps, 0.0, math.inf, low_open=True, high_open=True,
                     allowed="a finite number > 0")
        check_rope(self.n_embd // self.n_head, self.rope_base, None, 1.0)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 (Zhang & Sennrich, 2019)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., C)
        return self.weight * normed.to(x.dtype)


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with rotary embeddings."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        D = config.n_embd // config.n_head
        self.q_proj = nn.Linear(config.n_embd, config.n_head * D, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * D, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * D, bias=False)
        self.o_proj = nn.Linear(config.n_head * D, config.n_embd, bias=False)
        self.register_buffer("theta", rope_frequencies(D, config.rope_base), persistent=False)  # (D/2,)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, past_kv=None, use_cache: bool = False):
        """x (B, T, C) at positions pos (T,) -> (output (B, T, C), new cache or None)."""
        cfg = self.config
        q = split_heads(self.q_proj(x), cfg.n_head)  # (B, H, T, D)
        k = split_heads(self.k_proj(x), cfg.n_kv_head)  # (B, H_kv, T, D)
        v = split_heads(self.v_proj(x), cfg.n_kv_head)  # (B, H_kv, T, D)
        cos, sin = rope_cos_sin(pos, self.theta)  # (T, D)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k, v, present = extend_cache(past_kv, k, v, use_cache)  # (B, H_kv, S, D) each
        groups = cfg.n_head // cfg.n_kv_head
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, S, D)
        y, _ = attention(q, k, v, is_causal=True, impl=cfg.attn_impl)  # (B, H, T, D)
        return self.o_proj(merge_heads(y)), present  # (B, T, C)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Shazeer, 2020)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.n_inner, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.n_inner, bias=False)
        self.down_proj = nn.Linear(config.n_inner, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, C)


class LlamaBlock(nn.Module):
    """One pre-norm block: x + attn(rms(x)), then x + mlp(rms(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.self_attn = LlamaAttention(config)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, past_kv=None, use_cache: bool = False):
        """x (B, T, C) -> (x (B, T, C), new cache or None)."""
        a, present = self.self_attn(self.input_layernorm(x), pos, past_kv, use_cache)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), present


class Llama(nn.Module):
    """A Llama language model: idx (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.n_embd),
            layers=nn.ModuleList([LlamaBlock(config) for _ in range(config.n_layer)]),
            norm=RMSNorm(config.n_embd, config.rms_norm_eps),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.model.embed_tokens.weight
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, past_key_values: KVCache | None = None,
        use_cache: bool = False,
    ) -> GPTOutput:
        """Logits for every position of idx (B, T); the same call convention (cache, targets) as ``GPT``."""
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        if past_key_values is not None and len(past_key_values) != self.config.n_layer:
            raise ValueError(f"past_key_values must hold one cache per layer ({self.config.n_layer}), "
                             f"got {len(past_key_values)}")
        B, T = idx.shape
        past_len = cache_length(past_key_values[0]) if past_key_values is not None else 0
        if past_len + T > self.config.block_size:
            raise ValueError(f"sequence length {past_len + T} (cached {past_len} + new {T}) exceeds block_size "
                             f"{self.config.block_size}")
        pos = torch.arange(past_len, past_len + T, device=idx.device)  # (T,)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        presents: KVCache | None = [] if use_cache else None
        for i, block in enumerate(self.model.layers):
            x, present = block(x, pos, past_key_values[i] if past_key_values is not None else None, use_cache)
            if presents is not None:
                presents.append(present)
        logits = self.lm_head(self.model.norm(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-100)
        return GPTOutput(logits=logits, loss=loss, past_key_values=presents)
