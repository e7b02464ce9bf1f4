"""Scaled dot-product attention, the one piece shared by GPT, the BERT encoder and the seq2seq Transformer.

``attention(q, k, v, ...)`` computes softmax(q kᵀ / √d + mask) v (Vaswani et al., 2017, eq. 1) in one of two ways:

- ``impl="sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel where the device has one);
- ``impl="math"``: the formula written out, which also returns the attention weights (B, H, T, S) for plots.

Shapes: q (B, H, T, D) for T queries, k and v (B, H, S, D) for S keys. A mask is boolean (True = may attend) or
additive (added to the scores), broadcastable to (B, H, T, S). Boolean masks become an additive mask holding the
dtype's most negative finite number, as in Hugging Face transformers, so a row with every key masked gives uniform
weights instead of NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTN_IMPLS = ("sdpa", "math")
KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (B, H, S, D)


def check_attn_impl(impl: str) -> None:
    """Raise ValueError unless impl is one of ATTN_IMPLS."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {impl!r}")


def causal_mask(n_queries: int, n_keys: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (T, S) mask, True where query i may see key j: j <= i + (S - T).

    The queries are the last T of S positions (bottom-right aligned), which is what a KV cache needs: with S - T
    cached keys, query i sits at absolute position S - T + i.
    """
    if n_keys < n_queries:
        raise ValueError(f"a causal mask needs n_keys >= n_queries, got n_keys={n_keys}, n_queries={n_queries}")
    query_pos = torch.arange(n_keys - n_queries, n_keys, device=device)  # (T,)
    key_pos = torch.arange(n_keys, device=device)  # (S,)
    return key_pos[None, :] <= query_pos[:, None]  # (T, S)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Turn a (B, S) mask of 1 (token) / 0 (padding) into a boolean key mask (B, 1, 1, S), True = may attend."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must have shape (B, S), got {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask (True = may attend) -> additive mask: 0 where allowed, the dtype's minimum where not."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)  # same shape as mask
    return bias.masked_fill(~mask, torch.finfo(dtype).min)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    impl: str = "sdpa",
    need_weights: bool = False,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q kᵀ · scale + mask) v -> (output (B, H, T, D), weights (B, H, T, S) or None).

    The weights come back only from the math path; ``need_weights=True`` selects it whatever ``impl`` says.
    ``is_causal`` adds a bottom-right aligned causal mask (see ``causal_mask``). ``scale`` defaults to 1/√D.
    The weights returned are those before dropout.
    """
    check_attn_impl(impl)
    if mask is not None and mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask must be a bool or floating tensor, got dtype {mask.dtype}")
    T, S = q.size(-2), k.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    use_math = impl == "math" or need_weights

    if not use_math and mask is None and (not is_causal or T == 1 or T == S):
        # Fast path: no explicit mask. A single query with a cache may see every key, so it needs no causal mask.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout_p, is_causal=is_causal and T > 1, scale=scale
        )  # (B, H, T, D)
        return y, None

    if is_causal:
        causal = causal_mask(T, S, device=q.device)  # (T, S)
        if mask is None:
            mask = causal  # (T, S)
        elif mask.dtype == torch.bool:
            mask = mask & causal  # (B, H, T, S) broadcast
        else:
            mask = mask.masked_fill(~causal, torch.finfo(q.dtype).min)  # (B, H, T, S) broadcast
    bias = None if mask is None else additive_mask(mask, q.dtype)  # broadcastable to (B, H, T, S)

    if not use_math:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)  # (B, H, T, D)
        return y, None

    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T, S)
    if bias is not None:
        scores = scores + bias  # (B, H, T, S)
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, S)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights  # (B, H, T, S)
    y = dropped @ v  # (B, H, T, D)
    return y, weights


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, H, T, C / H)."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, H, T, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) -> (B, T, H * D)."""
    B, H, T, D = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, H * D)  # (B, T, C)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value projections (BERT, the seq2seq Transformer).

    Self-attention when ``context`` is None; cross-attention (queries from x, keys and values from context)
    otherwise. ``past_kv`` holds the keys and values (B, H, S_past, D) of earlier positions for a KV cache.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        bias: bool = True,
        attn_dropout: float = 0.0,
        resid_dropout: float = 0.0,
        attn_impl: str = "sdpa",
    ) -> None:
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model must be divisible by n_head, got d_model={d_model}, n_head={n_head}")
        check_attn_impl(attn_impl)
        self.n_head = n_head
        self.attn_impl = attn_impl
        self.attn_dropout = attn_dropout
        self.query = nn.Linear(d_model, d_model, bias=bias)
        self.key = nn.Linear(d_model, d_model, bias=bias)
        self.value = nn.Linear(d_model, d_model, bias=bias)
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)  # output projection W^O
        self.resid_dropout = nn.Dropout(resid_dropout)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_cache: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
        """x (B, T, C) -> (output (B, T, C), new (k, v) cache or None, weights (B, H, T, S) or None)."""
        source = x if context is None else context  # (B, S, C)
        q = split_heads(self.query(x), self.n_head)  # (B, H, T, D)
        k = split_heads(self.key(source), self.n_head)  # (B, H, S, D)
        v = split_heads(self.value(source), self.n_head)  # (B, H, S, D)
        if past_kv is not None:
            k = torch.cat([past_kv[0], k], dim=2)  # (B, H, S_past + S, D)
            v = torch.cat([past_kv[1], v], dim=2)  # (B, H, S_past + S, D)
        present = (k, v) if use_cache else None
        dropout_p = self.attn_dropout if self.training else 0.0
        y, weights = attention(
            q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, impl=self.attn_impl, need_weights=need_weights
        )  # (B, H, T, D), (B, H, T, S) or None
        y = self.resid_dropout(self.c_proj(merge_heads(y)))  # (B, T, C)
        return y, present, weights
