"""Beam search for a sequence-to-sequence model: the beam_size most probable target prefixes per source.

``beam_search_seq2seq`` searches one source at a time; ``batched_beam_search_seq2seq`` gives the same result with
the beams of all sources in one batch. The model is a ``mini_llm.nn.Seq2SeqTransformer`` (``encode`` / ``decode``
with a KV cache); sampling-based decoding lives in ``mini_llm.generation.sampling``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mini_llm.helpers import is_int, is_number


@dataclass
class BeamSearchOutput:
    """What beam_search_seq2seq returns: the best hypothesis per source."""

    sequences: torch.Tensor  # (B, 1 + n): bos_token_id, the hypothesis, then eos_token_id as padding
    scores: torch.Tensor  # (B,) float64: log_probs / lengths ** length_penalty, what the hypotheses were ranked by
    log_probs: torch.Tensor  # (B,) float64: total log-probability of the generated tokens (eos included)
    lengths: torch.Tensor  # (B,) long: generated tokens, eos included, bos and padding not


def _check_beam_arguments(
    model: Any,
    src: Any,
    beam_size: Any,
    max_new_tokens: Any,
    bos_token_id: Any,
    eos_token_id: Any,
    length_penalty: Any,
) -> None:
    config = model.config
    if not isinstance(src, torch.Tensor) or src.dtype != torch.long or src.dim() != 2 or src.numel() == 0:
        got = f"{src.dtype} tensor of shape {tuple(src.shape)}" if isinstance(src, torch.Tensor) else type(src).__name__
        raise ValueError(f"src must be a torch.long tensor of shape (B, S) with B, S >= 1, got {got}")
    if int(src.min()) < 0 or int(src.max()) >= config.src_vocab_size:
        raise ValueError(
            f"src must hold token ids in [0, {config.src_vocab_size}), "
            f"got values in [{int(src.min())}, {int(src.max())}]"
        )
    if not is_int(beam_size) or beam_size < 1:
        raise ValueError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    if not is_int(max_new_tokens) or not 0 <= max_new_tokens <= config.block_size:
        raise ValueError(
            f"max_new_tokens must be an integer in [0, block_size={config.block_size}], got {max_new_tokens!r}"
        )
    for name, value in (("bos_token_id", bos_token_id), ("eos_token_id", eos_token_id)):
        if (value is not None or name == "bos_token_id") and (
            not is_int(value) or not 0 <= value < config.tgt_vocab_size
        ):
            none = " (or None)" if name == "eos_token_id" else ""
            raise ValueError(f"{name} must be an integer in [0, {config.tgt_vocab_size}){none}, got {value!r}")
    if not is_number(length_penalty) or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")


def _length_normalised(log_prob: float, length: int, length_penalty: float) -> float:
    return log_prob / length**length_penalty if length > 0 else log_prob


def _beam_search_one(
    model: Any,
    src: torch.Tensor,
    src_padding_mask: torch.Tensor | None,
    beam_size: int,
    max_new_tokens: int,
    bos_token_id: int,
    eos_token_id: int | None,
    length_penalty: float,
    use_cache: bool,
) -> tuple[float, float, list[int]]:
    """Beam search for one source src (1, S): (score, log-probability, generated tokens) of the best hypothesis."""
    memory = model.encode(src, src_padding_mask).memory  # (1, S, C)
    tokens = torch.full((1, 1), bos_token_id, dtype=torch.long, device=src.device)  # (K, t + 1) live prefixes
    log_probs = torch.zeros(1, dtype=torch.float64, device=src.device)  # (K,) their total log-probabilities
    ended: list[tuple[float, float, list[int]]] = []  # (score, log-probability, tokens after bos)
    cache = None
    for step in range(max_new_tokens):
        K = tokens.size(0)
        mask = None if src_padding_mask is None else src_padding_mask.expand(K, -1)  # (K, S)
        if cache is not None:
            out = model.decode(tokens[:, -1:], memory.expand(K, -1, -1), mask, past_key_values=cache, use_cache=True)
        else:
            out = model.decode(tokens, memory.expand(K, -1, -1), mask, use_cache=use_cache)
        step_log_probs = torch.log_softmax(out.logits[:, -1, :].double(), dim=-1)  # (K, V)
        V = step_log_probs.size(-1)
        candidates = (log_probs[:, None] + step_log_probs).flatten()  # (K * V,)
        # The best (beam_size - ended) extensions; ties keep the earlier beam, then the smaller token id.
        chosen = torch.sort(candidates, descending=True, stable=True).indices[: beam_size - len(ended)]  # (K',)
        beam, token = chosen // V, chosen % V  # (K',), (K',)
        is_eos = token == eos_token_id if eos_token_id is not None else torch.zeros_like(token, dtype=torch.bool)
        for i in torch.nonzero(is_eos).flatten().tolist():
            log_prob = float(candidates[chosen[i]])
            hypothesis = tokens[beam[i], 1:].tolist() + [eos_token_id]
            ended.append((_length_normalised(log_prob, step + 1, length_penalty), log_prob, hypothesis))
        live = ~is_eos  # (K',)
        if not bool(live.any()):
            break
        beam = beam[live]  # (K'',)
        tokens = torch.cat([tokens[beam], token[live][:, None]], dim=1)  # (K'', t + 2)
        log_probs = candidates[chosen[live]]  # (K'',)
        if use_cache:
            cache = [(k[beam], v[beam]) for k, v in out.past_key_values]  # per layer (K'', H, t + 1, D)
    else:
        # max_new_tokens reached: the live hypotheses end here
        for row, log_prob in zip(tokens[:, 1:].tolist(), log_probs.tolist(), strict=True):
            ended.append((_length_normalised(log_prob, len(row), length_penalty), log_prob, row))
    return max(ended, key=lambda hypothesis: hypothesis[0])


def _beam_output(
    best: list[tuple[float, float, list[int]]], bos_token_id: int, eos_token_id: int | None, device: torch.device
) -> BeamSearchOutput:
    """The best (score, log-probability, tokens) of each source as a BeamSearchOutput, padded with eos (or bos)."""
    n = max(len(hypothesis) for _, _, hypothesis in best)
    pad = eos_token_id if eos_token_id is not None else bos_token_id  # without eos every hypothesis has length n
    sequences = torch.full((len(best), 1 + n), pad, dtype=torch.long, device=device)  # (B, 1 + n)
    sequences[:, 0] = bos_token_id
    for i, (_, _, hypothesis) in enumerate(best):
        sequences[i, 1 : 1 + len(hypothesis)] = torch.tensor(hypothesis, dtype=torch.long)
    return BeamSearchOutput(
        sequences=sequences,
        scores=torch.tensor([score for score, _, _ in best], dtype=torch.float64),
        log_probs=torch.tensor([log_prob for _, log_prob, _ in best], dtype=torch.float64),
        lengths=torch.tensor([len(hypothesis) for _, _, hypothesis in best], dtype=torch.long),
    )


@torch.no_grad()
def beam_search_seq2seq(
    model: Any,
    src: torch.Tensor,
    beam_size: int,
    max_new_tokens: int,
    bos_token_id: int,
    eos_token_id: int | None = None,
    length_penalty: float = 1.0,
    src_padding_mask: torch.Tensor | None = None,
    use_cache: bool = True,
) -> BeamSearchOutput:
    """Beam search for each source of src (B, S) with a ``mini_llm.nn.Seq2SeqTransformer``; call model.eval() first.

    Each step extends every live prefix by every token and keeps the beam_size - e most probable extensions
    (by total log-probability), where e counts the hypotheses that have ended: one ends when it emits
    eos_token_id, and the beam shrinks by one; all end after max_new_tokens. So beam_size=1 is greedy decoding.
    The ended hypotheses are ranked by log-probability / length ** length_penalty (length: generated tokens,
    eos included): 0 ranks by log-probability, which favours short hypotheses; 1 by the mean per token.
    Sources are searched one at a time; the beams of one source run as one batch.
    """
    _check_beam_arguments(model, src, beam_size, max_new_tokens, bos_token_id, eos_token_id, length_penalty)
    best = [
        _beam_search_one(
            model,
            src[i : i + 1],  # (1, S)
            None if src_padding_mask is None else src_padding_mask[i : i + 1],  # (1, S)
            beam_size,
            max_new_tokens,
            bos_token_id,
            eos_token_id,
            float(length_penalty),
            use_cache,
        )
        for i in range(src.size(0))
    ]
    return _beam_output(best, bos_token_id, eos_token_id, src.device)


def _stable_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, k) of the k largest scores per row of scores (B, N), ties broken by the smaller index.

    The same as a stable descending sort cut to k, without sorting all N: top-k, then a sort of the k; rows
    where the k-th score also occurs outside the top k fall back to the full stable sort.
    """
    top = torch.topk(scores, k, dim=1).indices  # (B, k), ties in no defined order
    by_index = torch.sort(top, dim=1).values  # (B, k)
    order = torch.sort(scores.gather(1, by_index), dim=1, descending=True, stable=True).indices  # (B, k)
    chosen = by_index.gather(1, order)  # (B, k)
    kth = scores.gather(1, chosen[:, -1:])  # (B, 1)
    tied = (scores >= kth).sum(dim=1) > k  # (B,): the cut falls inside a run of equal scores
    if bool(tied.any()):
        chosen[tied] = torch.sort(scores[tied], dim=1, descending=True, stable=True).indices[:, :k]
    return chosen


@torch.no_grad()
def batched_beam_search_seq2seq(
    model: Any,
    src: torch.Tensor,
    beam_size: int,
    max_new_tokens: int,
    bos_token_id: int,
    eos_token_id: int | None = None,
    length_penalty: float = 1.0,
    src_padding_mask: torch.Tensor | None = None,
    use_cache: bool = True,
) -> BeamSearchOutput:
    """The search of ``beam_search_seq2seq`` for all sources at once: B * beam_size decoder rows per step.

    Each source owns beam_size rows; its live prefixes fill the first rows, in the order the one-source search
    keeps them, and the other rows are dead (log-probability -inf, never chosen). So the hypotheses, their order,
    ties and scores are those of ``beam_search_seq2seq``, up to the float rounding of a larger batch.
    """
    _check_beam_arguments(model, src, beam_size, max_new_tokens, bos_token_id, eos_token_id, length_penalty)
    length_penalty = float(length_penalty)
    B, K, device = src.size(0), beam_size, src.device
    memory = model.encode(src, src_padding_mask).memory  # (B, S, C)
    memory = memory.repeat_interleave(K, dim=0)  # (B * K, S, C): row b * K + k is beam k of source b
    mask = None if src_padding_mask is None else src_padding_mask.repeat_interleave(K, dim=0)  # (B * K, S)
    tokens = torch.full((B * K, 1), bos_token_id, dtype=torch.long, device=device)  # (B * K, t + 1)
    log_probs = torch.full((B, K), float("-inf"), dtype=torch.float64, device=device)  # (B, K); -inf: dead row
    log_probs[:, 0] = 0.0  # one live prefix per source: <bos>
    n_live = torch.ones(B, dtype=torch.long, device=device)  # (B,) live rows per source
    ended: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(B)]  # per source, in the order found
    n_ended = torch.zeros(B, dtype=torch.long, device=device)  # (B,)
    cache = None
    rows = torch.arange(K, device=device)  # (K,)
    base = torch.arange(B, device=device)[:, None] * K  # (B, 1): first row of each source
    for step in range(max_new_tokens):
        if cache is not None:
            out = model.decode(tokens[:, -1:], memory, mask, past_key_values=cache, use_cache=True)
        else:
            out = model.decode(tokens, memory, mask, use_cache=use_cache)
        step_log_probs = torch.log_softmax(out.logits[:, -1, :].double(), dim=-1)  # (B * K, V)
        V = step_log_probs.size(-1)
        candidates = (log_probs[:, :, None] + step_log_probs.view(B, K, V)).view(B, K * V)  # (B, K * V)
        # Live rows come first, so the stable sort breaks ties as the one-source search does.
        order = _stable_top_k(candidates, K)  # (B, K)
        beam, token = order // V, order % V  # (B, K), (B, K)
        taken = (rows[None, :] < (K - n_ended)[:, None]) & (beam < n_live[:, None])  # (B, K): chosen extensions
        chosen_log_probs = candidates.gather(1, order)  # (B, K)
        if eos_token_id is not None:
            is_eos = taken & (token == eos_token_id)  # (B, K)
            for b, k in torch.nonzero(is_eos).tolist():
                log_prob = float(chosen_log_probs[b, k])
                hypothesis = tokens[b * K + int(beam[b, k]), 1:].tolist() + [eos_token_id]
                ended[b].append((_length_normalised(log_prob, step + 1, length_penalty), log_prob, hypothesis))
            n_ended += is_eos.sum(dim=1)
            live = taken & ~is_eos  # (B, K)
        else:
            live = taken
        n_live = live.sum(dim=1)  # (B,)
        if not bool(n_live.any()):
            break
        keep = torch.sort((~live).long(), dim=1, stable=True).indices  # (B, K): live extensions first, in order
        beam, token = beam.gather(1, keep), token.gather(1, keep)  # (B, K), (B, K)
        log_probs = chosen_log_probs.gather(1, keep).masked_fill(rows[None, :] >= n_live[:, None], float("-inf"))
        parent = (base + beam).flatten()  # (B * K,) row each new prefix extends
        tokens = torch.cat([tokens[parent], token.flatten()[:, None]], dim=1)  # (B * K, t + 2)
        if use_cache:
            cache = [(k[parent], v[parent]) for k, v in out.past_key_values]  # per layer (B * K, H, t + 1, D)
    else:
        # max_new_tokens reached: the live hypotheses end here
        for b in range(B):
            for k in range(int(n_live[b])):
                row, log_prob = tokens[b * K + k, 1:].tolist(), float(log_probs[b, k])
                ended[b].append((_length_normalised(log_prob, len(row), length_penalty), log_prob, row))
    best = [max(hypotheses, key=lambda hypothesis: hypothesis[0]) for hypotheses in ended]
    return _beam_output(best, bos_token_id, eos_token_id, device)
