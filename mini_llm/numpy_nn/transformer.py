"""The feed-forward network, a pre-LN transformer block, and a tiny GPT, all with explicit backward passes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import functional as F
from .attention import MultiHeadSelfAttention
from .layers import GELU, Embedding, LayerNorm, Linear, check_positive_int
from .module import Module, check_token_ids, require_cache


class FeedForward(Module):
    """Position-wise FFN: proj(GELU(fc(x))), with fc: n_embd -> hidden and proj: hidden -> n_embd. No dropout."""

    def __init__(self, n_embd: int, hidden: int, gelu_approximate: str = "tanh", init_std: float | None = None,
                 seed: int | np.random.Generator = 0, dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.fc = self.add_module("fc", Linear(n_embd, hidden, init_std=init_std, seed=rng, dtype=dtype))
        self.act = self.add_module("act", GELU(gelu_approximate))
        self.proj = self.add_module("proj", Linear(hidden, n_embd, init_std=init_std, seed=rng, dtype=dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(..., n_embd) -> (..., n_embd)."""
        return self.proj.forward(self.act.forward(self.fc.forward(x)))  # (..., C) via (..., hidden)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """The three layers' backward, in reverse order."""
        return self.fc.backward(self.act.backward(self.proj.backward(dy)))


class Block(Module):
    """A pre-LN transformer block: x = x + attn(ln1(x)); x = x + ffn(ln2(x))."""

    def __init__(self, n_embd: int, n_head: int, hidden: int | None = None, causal: bool = True,
                 gelu_approximate: str = "tanh", layer_norm_eps: float = 1e-5, init_std: float | None = None,
                 seed: int | np.random.Generator = 0, dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        hidden = 4 * n_embd if hidden is None else hidden
        self.ln1 = self.add_module("ln1", LayerNorm(n_embd, layer_norm_eps, dtype=dtype))
        self.attn = self.add_module(
            "attn", MultiHeadSelfAttention(n_embd, n_head, causal, init_std=init_std, seed=rng, dtype=dtype))
        self.ln2 = self.add_module("ln2", LayerNorm(n_embd, layer_norm_eps, dtype=dtype))
        self.ffn = self.add_module(
            "ffn", FeedForward(n_embd, hidden, gelu_approximate, init_std=init_std, seed=rng, dtype=dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, T, n_embd) -> (B, T, n_embd)."""
        x = x + self.attn.forward(self.ln1.forward(x))  # (B, T, C)
        return x + self.ffn.forward(self.ln2.forward(x))  # (B, T, C)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """Each residual branch adds its gradient to the one flowing straight through."""
        dx = dy + self.ln2.backward(self.ffn.backward(dy))  # (B, T, C)
        return dx + self.ln1.backward(self.attn.backward(dx))  # (B, T, C)


@dataclass
class TinyGPTConfig:
    """Sizes of a TinyGPT."""

    vocab_size: int = 64  # number of token ids V
    block_size: int = 32  # longest sequence T the position embedding covers
    n_layer: int = 2  # number of transformer blocks
    n_head: int = 2  # attention heads per block; must divide n_embd
    n_embd: int = 32  # width C of the residual stream
    ffn_hidden: int | None = None  # FFN inner width; None means 4 * n_embd
    gelu_approximate: str = "tanh"  # "tanh" (GPT-2's gelu_new) or "none" (exact erf GELU)
    layer_norm_eps: float = 1e-5  # epsilon inside every LayerNorm's square root
    init_std: float = 0.02  # std of the normal init of embeddings and linear weights (biases start at 0)


class TinyGPT(Module):
    """A decoder-only transformer: token + learned position embeddings, causal pre-LN blocks, final LN, LM head.

    Sub-modules: ``token_embedding``, ``position_embedding``, ``blocks.0`` ... ``blocks.{n_layer-1}``, ``ln_f``,
    ``lm_head`` (a Linear with bias, not tied to the token embedding). No dropout.
    """

    def __init__(self, config: TinyGPTConfig, seed: int | np.random.Generator = 0,
                 dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_positive_int(f"config.{name}", getattr(config, name))
        rng = np.random.default_rng(seed)
        self.config = config
        c, std = config, config.init_std
        self.token_embedding = self.add_module(
            "token_embedding", Embedding(c.vocab_size, c.n_embd, init_std=std, seed=rng, dtype=dtype))
        self.position_embedding = self.add_module(
            "position_embedding", Embedding(c.block_size, c.n_embd, init_std=std, seed=rng, dtype=dtype))
        self.blocks = [
            self.add_module(f"blocks.{i}", Block(c.n_embd, c.n_head, c.ffn_hidden, causal=True,
                                                 gelu_approximate=c.gelu_approximate, layer_norm_eps=c.layer_norm_eps,
                                                 init_std=std, seed=rng, dtype=dtype))
            for i in range(c.n_layer)
        ]
        self.ln_f = self.add_module("ln_f", LayerNorm(c.n_embd, c.layer_norm_eps, dtype=dtype))
        self.lm_head = self.add_module("lm_head", Linear(c.n_embd, c.vocab_size, init_std=std, seed=rng, dtype=dtype))
        self._loss_cache: tuple[np.ndarray, np.ndarray, int] | None = None

    def forward(self, ids: ArrayLike) -> np.ndarray:
        """Token ids (B, T), T <= block_size -> logits (B, T, vocab_size)."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must have shape (B, T), got shape {ids.shape}")
        T = ids.shape[1]
        if not 1 <= T <= self.config.block_size:
            raise ValueError(f"ids must have 1 <= T <= block_size={self.config.block_size}, got T={T}")
        check_token_ids("ids", ids, self.config.vocab_size)
        x = self.token_embedding.forward(ids) + self.position_embedding.forward(np.arange(T))  # (B, T, C)
        for block in self.blocks:
            x = block.forward(x)  # (B, T, C)
        return self.lm_head.forward(self.ln_f.forward(x))  # (B, T, V)

    def backward(self, dlogits: np.ndarray) -> None:
        """Back from the logits to every parameter; token ids have no gradient, so this returns None."""
        dx = self.ln_f.backward(self.lm_head.backward(dlogits))  # (B, T, C)
        for block in reversed(self.blocks):
            dx = block.backward(dx)  # (B, T, C)
        self.token_embedding.backward(dx)
        self.position_embedding.backward(dx.sum(axis=0))  # (T, C): every sequence uses the same positions
        return None

    def loss(self, ids: ArrayLike, targets: ArrayLike, ignore_index: int = -100) -> float:
        """Forward, then the mean cross-entropy of the logits against ``targets`` (B, T); cached for backward_loss."""
        logits = self.forward(ids)  # (B, T, V)
        targets = np.asarray(targets)
        loss = F.cross_entropy(logits, targets, ignore_index)
        self._loss_cache = (logits, targets, ignore_index)
        return loss

    def backward_loss(self) -> None:
        """Accumulate the gradient of the last ``loss(...)`` into every parameter's ``grads``."""
        logits, targets, ignore_index = require_cache(self._loss_cache, self)
        self.backward(F.cross_entropy_backward(logits, targets, ignore_index))  # (B, T, V)
