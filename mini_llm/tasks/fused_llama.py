"""Decode a k-bit Llama one token per compiled call: FusedLlamaDecoder.

A Llama whose linear layers are QuantizedLinear (``quant.quantize_model``) spends most of an eager decode step in
Python between the kernels. FusedLlamaDecoder keeps the model as it is for prompts (one batched forward pass) and
runs every single-token step as one Numba function (``kernels.llama_cpu``) over one preallocated KV cache. The
q/k/v weights of each layer are stacked into one matrix, gate/up into another, all layers into one array each; the
model's QuantizedLinear buffers become views of these arrays, so the weights are not held twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mini_llm.kernels.cpu import row_kernel
from mini_llm.kernels.llama_cpu import decode_step, rms_norm
from mini_llm.quant.linear import QuantizedLinear

PROJECTIONS = {"qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), "o": ("self_attn.o_proj",),
               "gate_up": ("mlp.gate_proj", "mlp.up_proj"), "down": ("mlp.down_proj",)}


def fusion_problem(model: torch.nn.Module) -> str | None:
    """Why FusedLlamaDecoder cannot run model (a sentence), or None when it can."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "model") or not hasattr(config, "n_kv_head"):
        return "model must be a mini_llm.nn.Llama"
    if model.model.embed_tokens.weight.dtype != torch.float32:
        return f"the embedding must be float32, got {model.model.embed_tokens.weight.dtype}"
    first = None
    for i, block in enumerate(model.model.layers):
        for names in PROJECTIONS.values():
            for name in names:
                layer = block.get_submodule(name)
                where = f"model.layers.{i}.{name}"
                if not isinstance(layer, QuantizedLinear):
                    return f"{where} must be a QuantizedLinear (quantize_model), got {type(layer).__name__}"
                if layer.packed.device.type != "cpu":
                    return f"{where} must be on the CPU, got {layer.packed.device}"
                if layer.outlier_dims is not None or layer.bias is not None or layer.offset is not None:
                    return f"{where} must have no outlier columns, bias or centred blocks"
                if layer.blocksize is None or layer.in_features % layer.blocksize:
                    return f"{where}: its blocksize ({layer.blocksize}) must divide in_features ({layer.in_features})"
                if first is None:
                    first = layer
                elif layer.bits != first.bits or not torch.equal(layer.code, first.code) or \
                        layer.blocksize != first.blocksize:
                    return f"{where} must have the bits, codebook and blocksize of the first layer"
    return None


class FusedLlamaDecoder:
    """A k-bit Llama on the CPU: ``forward(ids)`` appends ids to the cache and returns the next-token logits (V,);
    several ids run through the model's forward pass, one id through the compiled step. ``truncate(n)`` keeps the
    first n cached tokens. backend names the CPU row kernels (``cpu.row_kernel``); None runs them as the model's
    layers run: 'int8' when their backend is 'int8' (int8 activations), else 'auto'."""

    def __init__(self, model: torch.nn.Module, backend: str | None = None) -> None:
        problem = fusion_problem(model)
        if problem is not None:
            raise ValueError(f"FusedLlamaDecoder cannot run this model: {problem}")
        self.model, cfg = model, model.config
        self.head_dim = cfg.n_embd // cfg.n_head
        first = model.model.layers[0].self_attn.q_proj
        if backend is None:
            backend = "int8" if first.backend == "int8" else "auto"
        self.backend = backend
        table = first.code.float().numpy()
        width, self.repeat = row_kernel(first.bits, table, cfg.n_embd, first.blocksize, backend)
        inner, repeat_inner = row_kernel(first.bits, table, cfg.n_inner, first.blocksize, backend)
        self.weights = {key: self._stack(names, repeat_inner if key == "down" else self.repeat)
                        for key, names in PROJECTIONS.items()}
        blocks = model.model.layers
        self.ln1 = torch.stack([b.input_layernorm.weight.detach().float() for b in blocks]).numpy()  # (L, C)
        self.ln2 = torch.stack([b.post_attention_layernorm.weight.detach().float() for b in blocks]).numpy()  # (L, C)
        self.theta = blocks[0].self_attn.theta.float().numpy()  # (D/2,)
        self.embedding = model.model.embed_tokens.weight.detach().numpy()  # (V, C)
        self.step = decode_step(width, inner)
        self.k_cache = self.v_cache = np.zeros((cfg.n_layer, cfg.n_kv_head, 0, self.head_dim), dtype=np.float32)
        self.length = 0

    def _stack(self, names: Sequence[str], repeat: int) -> tuple[np.ndarray, np.ndarray]:
        """(packed (L, bytes), scales (L, blocks * repeat)) of the named projections stacked row-wise in every layer;
        the layers' packed (and, when repeat is 1, absmax) buffers become views of them."""
        layers = [[block.get_submodule(n) for n in names] for block in self.model.model.layers]
        packed = torch.stack([torch.cat([q.packed.reshape(-1) for q in row]) for row in layers])  # (L, bytes)
        scales = torch.stack([torch.cat([q.absmax.float() for q in row]) for row in layers])  # (L, blocks)
        for i, row in enumerate(layers):
            byte, block = 0, 0
            for q in row:
                q.packed = packed[i, byte:byte + q.packed.numel()].view(q.packed.shape)
                byte += q.packed.numel()
                if repeat == 1 and q.absmax.dtype == torch.float32:
                    q.absmax = scales[i, block:block + q.absmax.numel()]
                block += q.absmax.numel()
        if repeat > 1:
            scales = scales.repeat_interleave(repeat, dim=1)  # (L, blocks * repeat)
        return packed.numpy(), scales.numpy()

    def truncate(self, n: int) -> None:
        """Keep the first n cached tokens (n >= 0)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.length = min(self.length, n)

    def _reserve(self, length: int) -> None:
        """Grow the cache (doubling, at most block_size) to hold length positions."""
        cfg = self.model.config
        if length > cfg.block_size:
            raise ValueError(f"sequence length {length} exceeds block_size {cfg.block_size}")
        if length <= self.k_cache.shape[2]:
            return
        size = min(cfg.block_size, max(length, 2 * self.k_cache.shape[2], 64))
        for name in ("k_cache", "v_cache"):
            grown = np.zeros((cfg.n_layer, cfg.n_kv_head, size, self.head_dim), dtype=np.float32)
            grown[:, :, :self.length] = getattr(self, name)[:, :, :self.length]
            setattr(self, name, grown)

    @torch.no_grad()
    def forward(self, ids: Sequence[int]) -> torch.Tensor:
        """Append ids (at least one) to the cache and return the logits (V,) of the token after the last."""
        if len(ids) == 0:
            raise ValueError("ids must hold at least one token id")
        vocab = self.model.config.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise ValueError(f"token ids must lie in 0..{vocab - 1}, got {min(ids)}..{max(ids)}")
        self._reserve(self.length + len(ids))
        if len(ids) > 1:
            return self._prompt(ids)
        cfg = self.model.config
        w = self.weights
        x = self.step(self.embedding[ids[0]], self.length, cfg.n_head, cfg.n_kv_head, cfg.n_inner,
                      np.float32(cfg.rms_norm_eps), self.ln1, self.ln2, self.theta, *w["qkv"], *w["o"], *w["gate_up"],
                      *w["down"], self.k_cache, self.v_cache)  # (C,)
        self.length += 1
        norm = self.model.model.norm
        h = rms_norm(x, norm.weight.detach().numpy(), np.float32(norm.eps))  # (C,)
        return self.model.lm_head(torch.from_numpy(h)[None])[0]  # (V,)

    def _prompt(self, ids: Sequence[int]) -> torch.Tensor:
        """Several ids through the model's forward pass, its keys and values copied into the cache."""
        n = self.length
        past = None
        if n:
            past = [(torch.from_numpy(self.k_cache[i, :, :n])[None], torch.from_numpy(self.v_cache[i, :, :n])[None])
                    for i in range(self.model.config.n_layer)]  # (1, H_kv, n, D) views
        out = self.model(torch.tensor([list(ids)]), past_key_values=past, use_cache=True)
        for i, (k, v) in enumerate(out.past_key_values):
            self.k_cache[i, :, n:n + len(ids)] = k[0, :, n:].float().numpy()
            self.v_cache[i, :, n:n + len(ids)] = v[0, :, n:].float().numpy()
        self.length = n + len(ids)
        return out.logits[0, -1]
