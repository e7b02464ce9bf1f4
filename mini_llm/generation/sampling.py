"""Autoregressive decoding: greedy, temperature, top-k and top-p (nucleus) sampling, with a KV cache.

``generate`` works with any model called as ``model(idx, past_key_values=..., use_cache=..., **model_kwargs)`` that
returns an object with ``.logits`` (B, T, V) and ``.past_key_values``: ``mini_llm.nn.GPT``, or the bound method
``Seq2SeqTransformer.decode`` with ``memory=...`` (``generate_seq2seq`` does this for you). The vocabulary size and
the longest sequence are read from ``model.config`` when there is one. Call ``model.eval()`` first: dropout would
make every run different.

Per step, the logits of the last position are divided by the temperature, cut to the top k and then to the
smallest set of tokens whose probability reaches top_p (Holtzman et al., 2020), and one token is drawn.

Beam search lives beside it in ``mini_llm.generation.beam``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import torch

from mini_llm.helpers import is_int
from mini_llm.nn.kv_cache import quantized_cache


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th are kept too); set the others to -inf."""
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))  # (B, V)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most probable tokens until their total probability reaches p (at least one); set the rest to -inf."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V), (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)  # (B, V)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V): probability of the tokens ranked above each one
    remove_sorted = mass_before >= p  # (B, V)
    remove_sorted[..., 0] = False  # the likeliest token stays, also for a p that rounds to 0 in the logits' dtype
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # (B, V) back in vocabulary order
    return logits.masked_fill(remove, float("-inf"))  # (B, V)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of logits (B, V): the argmax if greedy, else a draw after temperature/top-k/top-p.

    ValueError when a row holds NaN or +inf, or when nothing is left to draw from (every logit -inf, or a temperature
    so small that logits / temperature overflows).
    """
    _check_logits(logits)
    if greedy:
        return torch.argmax(logits, dim=-1)  # (B,)
    logits = logits / temperature  # (B, V)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)  # (B, V)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)  # (B, V)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if bool(torch.isnan(probs).any()):  # +inf or all -inf after the division: logits / temperature overflowed
        raise ValueError(
            f"temperature={temperature!r} is too small for these logits (logits / temperature overflows "
            f"{logits.dtype}); use a larger temperature, or greedy decoding"
        )
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


def _check_logits(logits: torch.Tensor) -> None:
    """ValueError when a row of logits (B, V) holds NaN or +inf, or only -inf: no token can be chosen from it."""
    if bool(torch.isnan(logits).any() | torch.isposinf(logits).any()):
        raise ValueError("logits must not hold NaN or +inf (the model produced non-finite scores)")
    if bool(torch.isneginf(logits).all(dim=-1).any()):
        raise ValueError("logits must leave at least one token per row (a row is -inf everywhere)")


def _model_config(model: Callable) -> Any:
    """model.config, or the config of the module a bound method belongs to (Seq2SeqTransformer.decode)."""
    config = getattr(model, "config", None)
    if config is None:
        config = getattr(getattr(model, "__self__", None), "config", None)
    return config


def _check_arguments(
    idx: Any,
    max_new_tokens: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    greedy: bool,
    seed: Any,
    generator: Any,
    eos_token_id: Any,
    vocab_size: int | None,
) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long:
        got = f"a tensor of dtype {idx.dtype}" if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a torch.long tensor of shape (B, T), got {got}")
    if idx.dim() != 2 or idx.numel() == 0:
        raise ValueError(f"idx must have shape (B, T) with B >= 1 and T >= 1, got {tuple(idx.shape)}")
    if vocab_size is not None and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        raise ValueError(
            f"idx must hold token ids in [0, {vocab_size}), got values in [{int(idx.min())}, {int(idx.max())}]"
        )
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not greedy and (not isinstance(temperature, Real) or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a finite number > 0 (or use greedy=True), got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, Real) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
    if seed is not None and generator is not None:
        raise ValueError("seed and generator are exclusive: pass one of them, got both")
    if seed is not None and not is_int(seed):
        raise ValueError(f"seed must be None or an integer, got {seed!r}")
    if eos_token_id is not None and (
        not is_int(eos_token_id) or eos_token_id < 0 or (vocab_size is not None and eos_token_id >= vocab_size)
    ):
        allowed = f"[0, {vocab_size})" if vocab_size is not None else ">= 0"
        raise ValueError(f"eos_token_id must be None or an integer in {allowed}, got {eos_token_id!r}")


@torch.no_grad()
def generate(
    model: Callable,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
    kv_bits: int | None = None,
    **model_kwargs: Any,
) -> torch.Tensor:
    """Append up to max_new_tokens tokens to idx (B, T); returns (B, T + n).

    ``kv_bits`` (8 or 4) keeps the KV cache as int8 / int4 codes (``mini_llm.nn.kv_cache``; a GPT only).
    ``greedy=True`` takes the argmax (temperature, top_k and top_p are then ignored); otherwise tokens are drawn
    with ``generator``, or with a fresh one seeded by ``seed``, or with torch's global generator. With
    ``eos_token_id`` a sequence that emitted it keeps emitting it, and decoding stops once every sequence has.
    When the sequence outgrows ``model.config.block_size``, the model sees only the last block_size tokens (and the
    cache, whose positions would no longer fit, is rebuilt from them each step), so cached and uncached decoding
    give the same tokens.
    """
    config = _model_config(model)
    vocab_size = getattr(config, "tgt_vocab_size", getattr(config, "vocab_size", None))
    block_size = getattr(config, "block_size", None)
    _check_arguments(idx, max_new_tokens, temperature, top_k, top_p, greedy, seed, generator, eos_token_id, vocab_size)
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    if kv_bits is not None:
        if not use_cache or not hasattr(config, "n_layer"):
            raise ValueError(f"kv_bits needs use_cache=True and a GPT (a config with n_layer), got kv_bits={kv_bits!r}")
        quantized_cache(config.n_layer, kv_bits)  # check the bits now, before the first step

    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
    cache = None
    cache_len = 0  # positions held in the cache
    for _ in range(max_new_tokens):
        if cache is not None and (block_size is None or cache_len < block_size):
            out = model(idx[:, -1:], past_key_values=cache, use_cache=True, **model_kwargs)  # feed the new token
            cache_len += 1
        else:
            idx_cond = idx if block_size is None else idx[:, -block_size:]  # (B, T') with T' <= block_size
            fresh = {} if kv_bits is None else {"past_key_values": quantized_cache(config.n_layer, kv_bits)}
            out = model(idx_cond, use_cache=use_cache, **fresh, **model_kwargs)
            cache_len = idx_cond.size(1)
        cache = out.past_key_values if use_cache else None
        logits = out.logits[:, -1, :]  # (B, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # sample in at least float32
        next_token = sample_next_token(logits, temperature, top_k, top_p, greedy, generator)  # (B,)
        if eos_token_id is not None:
            next_token = next_token.masked_fill(finished, eos_token_id)  # (B,)
            finished = finished | (next_token == eos_token_id)  # (B,)
        idx = torch.cat([idx, next_token[:, None]], dim=1)  # (B, T + 1)
        if eos_token_id is not None and bool(finished.all()):
            break
    return idx


@torch.no_grad()
def generate_seq2seq(
    model: Any,
    src: torch.Tensor,
    max_new_tokens: int,
    bos_token_id: int,
    src_padding_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Encode src (B, S) once, then decode from bos_token_id: returns target ids (B, 1 + n) starting with it.

    ``model`` is a ``mini_llm.nn.Seq2SeqTransformer``; the other keyword arguments are those of ``generate``.
    """
    tgt_vocab_size = model.config.tgt_vocab_size
    if not is_int(bos_token_id) or not 0 <= bos_token_id < tgt_vocab_size:
        raise ValueError(f"bos_token_id must be an integer in [0, {tgt_vocab_size}), got {bos_token_id!r}")
    memory = model.encode(src, src_padding_mask).memory  # (B, S, C)
    start = torch.full((src.size(0), 1), bos_token_id, dtype=torch.long, device=src.device)  # (B, 1)
    return generate(model.decode, start, max_new_tokens, memory=memory, src_padding_mask=src_padding_mask, **kwargs)
