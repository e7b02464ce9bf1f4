"""GPT: a decoder-only Transformer with the GPT-2 architecture (Radford et al., 2019), in the style of nanoGPT.

token + learned position embeddings -> n_layer pre-LN blocks (x + attn(ln_1(x)), x + mlp(ln_2(x))) -> ln_f -> lm_head.

Parameter names follow GPT-2 so that weights convert by name: transformer.wte, transformer.wpe,
transformer.h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, transformer.ln_f, lm_head.
Hugging Face's GPT-2 stores these Linear weights as Conv1D with shape (in, out): transpose them when converting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm.helpers import check_choice, check_number
from mini_llm.nn.attention import KVCache, attention, merge_heads, split_heads
from mini_llm.nn.kv_cache import QuantizedKV, cache_length, extend_cache
from mini_llm.nn.layers import MLP, check_config, check_size, init_weights
from mini_llm.nn.positions import (
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    check_rope,
    rope_cos_sin,
    rope_frequencies,
)

POSITIONS = ("learned", "rope", "alibi")  # a learned table added to the input, rotary embeddings, or ALiBi biases

LayerKV = tuple[torch.Tensor, torch.Tensor] | QuantizedKV  # one layer's cache (keys, values), each (B, H, S, D)
LayerOutput = tuple[torch.Tensor, LayerKV | None, torch.Tensor | None]  # (B, T, C), new cache, weights (B, H, T, S)


@dataclass
class GPTConfig:
    """Hyper-parameters of a GPT-2 style decoder; the defaults are GPT-2 small (124M parameters)."""

    vocab_size: int = 50257  # number of token ids
    block_size: int = 1024  # longest sequence: the size of the learned position table (GPT-2's n_positions)
    n_layer: int = 12  # number of transformer blocks
    n_head: int = 12  # attention heads per block
    n_embd: int = 768  # model width C; each head has C / n_head dimensions
    n_inner: int | None = None  # hidden width of the MLP; None means 4 * n_embd
    activation: str = "gelu_new"  # MLP non-linearity: "gelu_new" (tanh approximation, GPT-2), "gelu" or "relu"
    dropout: float = 0.0  # dropout on the embeddings, the attention weights and each residual branch
    bias: bool = True  # biases in the Linear layers and LayerNorms (GPT-2 has them)
    layer_norm_epsilon: float = 1e-5  # ε added to the variance in every LayerNorm
    tie_weights: bool = True  # the LM head shares its weight with the token embedding wte (as in GPT-2)
    attn_impl: str = "sdpa"  # "sdpa" (torch's fused kernel) or "math" (the explicit formula)
    position: str = "learned"  # "learned" (GPT-2's table wpe), "rope" or "alibi" (nn.positions; no table)
    rope_base: float = 10000.0  # RoPE's base: theta_i = base^(-2i/D)
    rope_scaling: str | None = None  # at inference past the trained length: None, "linear" or "ntk"
    rope_factor: float = 1.0  # how many times the trained length the scaling stretches to
    attn_window: int | None = None  # sliding-window (local) attention: each position sees the last attn_window
    # positions, itself included (nn.kv_cache.window_cache keeps only those); None: every earlier position

    def __post_init__(self) -> None:
        sizes = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        check_config(self, sizes, "n_embd", "n_head", ("dropout",), "activation", flags=("bias", "tie_weights"))
        check_choice("position", self.position, POSITIONS)
        if self.position == "rope":
            check_rope(self.n_embd // self.n_head, self.rope_base, self.rope_scaling, self.rope_factor)
        if self.n_inner is not None:
            check_size("n_inner", self.n_inner, "None or ")
        if self.attn_window is not None:
            check_size("attn_window", self.attn_window, "None or ")
        check_number("layer_norm_epsilon", self.layer_norm_epsilon, 0.0, math.inf, low_open=True, high_open=True,
                     allowed="a finite number > 0")

    def param_count(self) -> int:
        """Number of parameters GPT(config) will have (shared tensors once), computed without building it."""
        C, V, T = self.n_embd, self.vocab_size, self.block_size
        hidden = 4 * C if self.n_inner is None else self.n_inner
        b = int(self.bias)
        block = 2 * (C + b * C) + (3 * C * C + b * 3 * C) + (C * C + b * C) + (C * hidden + b * hidden)
        block += hidden * C + b * C
        head = 0 if self.tie_weights else V * C
        table = T * C if self.position == "learned" else 0
        return V * C + table + self.n_layer * block + (C + b * C) + head


@dataclass
class GPTOutput:
    """What GPT.forward returns."""

    logits: torch.Tensor  # (B, T, vocab_size)
    loss: torch.Tensor | None = None  # mean cross-entropy over targets != -100, when targets are given
    past_key_values: KVCache | None = None  # keys and values of every position so far, when use_cache=True
    attentions: list[torch.Tensor] | None = None  # per layer (B, H, T, S), when return_attention=True


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention with a fused query/key/value projection c_attn."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.config = config  # read at every call: the RoPE scaling may be changed for inference
        self.dropout = config.dropout
        self.attn_impl = config.attn_impl
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # W^Q, W^K, W^V stacked
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # output projection W^O
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)  # (H,)

    def forward(
        self, x: torch.Tensor, past_kv: LayerKV | None = None, use_cache: bool = False, need_weights: bool = False,
        pos: torch.Tensor | None = None,
    ) -> LayerOutput:
        """x (B, T, C) at positions pos (T,) -> (output (B, T, C), new (k, v) cache or None, weights or None)."""
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # 3 x (B, T, C)
        q = split_heads(q, self.n_head)  # (B, H, T, D)
        k = split_heads(k, self.n_head)  # (B, H, T, D)
        v = split_heads(v, self.n_head)  # (B, H, T, D)
        cfg = self.config
        if pos is None:
            pos = torch.arange(x.size(1), device=x.device)  # (T,): no cache before these tokens
        if cfg.position == "rope":  # keys are cached rotated
            theta = rope_frequencies(q.size(-1), cfg.rope_base, cfg.rope_scaling, cfg.rope_factor)  # (D/2,)
            cos, sin = rope_cos_sin(pos, theta)  # (T, D) each
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (B, H, T, D)
        k, v, present = extend_cache(past_kv, k, v, use_cache)  # (B, H, S, D) each, S = S_past + T
        S = k.size(2)
        key_pos = torch.arange(S, device=x.device) + (int(pos[-1]) + 1 - S)  # (S,): a window cache holds the latest
        dropout_p = self.dropout if self.training else 0.0
        mask = None
        if cfg.position == "alibi":
            mask = alibi_bias(self.alibi_slopes, pos, key_pos)  # (H, T, S)
        if cfg.attn_window is not None:  # a causal band instead of the causal mask
            band = (key_pos[None] <= pos[:, None]) & (key_pos[None] > pos[:, None] - cfg.attn_window)  # (T, S)
            if mask is not None:
                mask = mask.masked_fill(~band, torch.finfo(mask.dtype).min)  # (H, T, S)
            elif not bool(band.all()):
                mask = band
        y, weights = attention(
            q, k, v, mask=mask, is_causal=cfg.attn_window is None, dropout_p=dropout_p, impl=self.attn_impl,
            need_weights=need_weights,
        )  # (B, H, T, D), (B, H, T, S) or None
        y = self.resid_dropout(self.c_proj(merge_heads(y)))  # (B, T, C)
        return y, present, weights


class Block(nn.Module):
    """One pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        n_inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config.n_embd, n_inner, config.activation, config.bias, config.dropout)

    def forward(
        self, x: torch.Tensor, past_kv: LayerKV | None = None, use_cache: bool = False, need_weights: bool = False,
        pos: torch.Tensor | None = None,
    ) -> LayerOutput:
        """x (B, T, C) at positions pos (T,) -> (x (B, T, C), new (k, v) cache or None, weights or None)."""
        a, present, weights = self.attn(self.ln_1(x), past_kv, use_cache, need_weights, pos)  # (B, T, C)
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x, present, weights


class GPT(nn.Module):
    """A GPT-2 language model: idx (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        table = {"wpe": nn.Embedding(config.block_size, config.n_embd)} if config.position == "learned" else {}
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
                **table,  # learned position embedding (GPT-2); none with RoPE or ALiBi
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.transformer.wte.weight = self.lm_head.weight
        self.apply(init_weights)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by 1/√(2 n_layer)
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters; non_embedding=True leaves out the position table (wte counts as the LM head)."""
        n = sum(p.numel() for p in self.parameters())  # shared tensors are counted once
        table = self.transformer.wpe.weight.numel() if "wpe" in self.transformer else 0
        return n - table if non_embedding else n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        return_attention: bool = False,
    ) -> GPTOutput:
        """Logits for every position of idx (B, T); targets (B, T) are the next tokens (-100 = ignore).

        With ``past_key_values`` (from an earlier call with ``use_cache=True``) idx holds only the new tokens;
        their positions continue after the cached ones; ``nn.kv_cache.quantized_cache(n_layer, bits)`` keeps them as
        int8 or int4 codes instead (pass it empty on the first call). ``return_attention=True`` computes every layer
        with the explicit formula and returns its weights.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        if past_key_values is not None and len(past_key_values) != self.config.n_layer:
            raise ValueError(
                f"past_key_values must hold one (k, v) per layer ({self.config.n_layer}), got {len(past_key_values)}"
            )
        B, T = idx.shape
        past_len = cache_length(past_key_values[0]) if past_key_values is not None else 0
        if self.config.position == "learned" and past_len + T > self.config.block_size:
            raise ValueError(
                f"sequence length {past_len + T} (cached {past_len} + new {T}) exceeds block_size "
                f"{self.config.block_size}"
            )
        pos = torch.arange(past_len, past_len + T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.config.position == "learned":
            x = x + self.transformer.wpe(pos)  # (B, T, C); RoPE and ALiBi act inside attention instead
        x = self.transformer.drop(x)
        presents: KVCache | None = [] if use_cache else None
        attentions: list[torch.Tensor] | None = [] if return_attention else None
        for i, block in enumerate(self.transformer.h):
            past_kv = past_key_values[i] if past_key_values is not None else None
            x, present, weights = block(x, past_kv, use_cache, return_attention, pos)  # (B, T, C)
            if presents is not None:
                presents.append(present)
            if attentions is not None:
                attentions.append(weights)
        x = self.transformer.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-100)  # scalar
        return GPTOutput(logits=logits, loss=loss, past_key_values=presents, attentions=attentions)
