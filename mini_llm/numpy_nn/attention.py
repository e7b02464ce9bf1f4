"""Multi-head self-attention, causal (GPT) or bidirectional (BERT), with an explicit backward."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

from mini_llm.helpers import is_int

from . import functional as F
from .layers import Linear, check_positive_int
from .module import Module, require_cache


class MultiHeadSelfAttention(Module):
    """softmax(Q K^T / sqrt(d_k) + mask) V over ``n_head`` heads of size d_k = n_embd / n_head, then a projection.

    Sub-modules: ``qkv`` = Linear(n_embd, 3 n_embd) giving [Q | K | V] along the last axis, ``proj`` =
    Linear(n_embd, n_embd). With ``causal=True`` position t attends only to positions <= t. No dropout.
    After ``forward`` the attention weights are in ``attention_weights``, shape (B, n_head, T, T).
    """

    def __init__(self, n_embd: int, n_head: int, causal: bool = True, init_std: float | None = None,
                 seed: int | np.random.Generator = 0, dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        check_positive_int("n_head", n_head)
        if not is_int(n_embd) or n_embd < 1 or n_embd % n_head:
            raise ValueError(f"n_embd must be a positive integer divisible by n_head={n_head}, got {n_embd!r}")
        rng = np.random.default_rng(seed)
        self.n_embd, self.n_head, self.head_dim, self.causal = n_embd, n_head, n_embd // n_head, causal
        self.qkv = self.add_module("qkv", Linear(n_embd, 3 * n_embd, init_std=init_std, seed=rng, dtype=dtype))
        self.proj = self.add_module("proj", Linear(n_embd, n_embd, init_std=init_std, seed=rng, dtype=dtype))
        self.attention_weights: np.ndarray | None = None
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _split_heads(self, x: np.ndarray) -> np.ndarray:
        B, T, _ = x.shape
        return x.reshape(B, T, self.n_head, self.head_dim).transpose(0, 2, 1, 3)  # (B, H, T, D)

    def _merge_heads(self, x: np.ndarray) -> np.ndarray:
        B, _, T, _ = x.shape
        return x.transpose(0, 2, 1, 3).reshape(B, T, self.n_embd)  # (B, T, C)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, T, n_embd) -> (B, T, n_embd)."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.n_embd:
            raise ValueError(f"x must have shape (B, T, {self.n_embd}), got shape {x.shape}")
        T = x.shape[1]
        qkv = self.qkv.forward(x)  # (B, T, 3C)
        q, k, v = (self._split_heads(part) for part in np.split(qkv, 3, axis=-1))  # each (B, H, T, D)
        scores = q @ k.swapaxes(-1, -2) / math.sqrt(self.head_dim)  # (B, H, T, T)
        if self.causal:
            future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T), True above the diagonal
            scores = np.where(future, -np.inf, scores)  # (B, H, T, T)
        att = F.softmax(scores, axis=-1)  # (B, H, T, T), rows sum to 1, zeros on the future
        heads = att @ v  # (B, H, T, D)
        self.attention_weights = att
        self._cache = (q, k, v)
        return self.proj.forward(self._merge_heads(heads))  # (B, T, C)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Back through proj, the weighted sum, softmax (masked entries get 0) and Q K^T, then qkv."""
        q, k, v = require_cache(self._cache, self)
        att = self.attention_weights
        dheads = self._split_heads(self.proj.backward(dy))  # (B, H, T, D)
        datt = dheads @ v.swapaxes(-1, -2)  # (B, H, T, T)
        dv = att.swapaxes(-1, -2) @ dheads  # (B, H, T, D)
        dscores = F.softmax_backward(datt, att, axis=-1) / math.sqrt(self.head_dim)  # (B, H, T, T)
        dq = dscores @ k  # (B, H, T, D)
        dk = dscores.swapaxes(-1, -2) @ q  # (B, H, T, D)
        dqkv = np.concatenate([self._merge_heads(d) for d in (dq, dk, dv)], axis=-1)  # (B, T, 3C)
        return self.qkv.backward(dqkv)  # (B, T, C)
