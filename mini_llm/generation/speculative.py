"""Speculative decoding: a small draft model proposes gamma tokens, the target model checks them in one forward pass.

Leviathan, Kalman & Matias (2023) and Chen et al. (2023). Per round, with p_i the target's and q_i the draft's
next-token distributions (softmax of the logits / temperature): the draft draws x_i ~ q_i for i = 1..gamma; the
target scores all of them at once; x_i is accepted with probability min(1, p_i(x_i) / q_i(x_i)); at the first
rejection the round ends with a token drawn from norm(max(0, p_i - q_i)); when all gamma are accepted it ends with one
more token drawn from p_{gamma+1}. Every token so produced is distributed exactly as the target alone would draw it.
Greedy decoding accepts while the draft's token is the target's argmax and takes the target's argmax at the first
mismatch, so its output equals the target's greedy output token for token.

Both models keep a KV cache, cut back to the accepted tokens after each round. Batch size 1; both models must have
the same vocabulary, and prompt + new tokens must fit in both models' block_size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mini_llm.helpers import check_int, check_number
from mini_llm.nn.kv_cache import cache_length, truncate_cache

KVPairs = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (B, H, S, D)


@dataclass
class SpeculativeOutput:
    """What speculative_generate returns: the tokens and how the drafts fared."""

    tokens: torch.Tensor  # (1, T + max_new_tokens)
    proposed: int  # draft tokens proposed
    accepted: int  # of those, accepted by the target
    target_calls: int  # forward passes of the target model

    @property
    def acceptance_rate(self) -> float:
        """Share of the proposed draft tokens that were accepted (nan if none was proposed)."""
        return self.accepted / self.proposed if self.proposed else math.nan


def accept_draft(
    p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor, greedy: bool, generator: torch.Generator | None
) -> tuple[int, int]:
    """The acceptance rule of one round: (draft tokens accepted n, the token that follows them).

    p (gamma + 1, V) target probabilities at each draft position and one beyond; q (gamma, V) the draft's; draft
    (gamma,) its tokens.
    """
    for i, token in enumerate(draft.tolist()):
        if greedy:
            best = int(p[i].argmax())
            if token != best:
                return i, best
            continue
        ratio = float(p[i, token] / q[i, token])  # q[i, token] > 0: the draft drew this token
        if ratio >= 1 or float(torch.rand((), generator=generator)) < ratio:
            continue
        residual = (p[i] - q[i]).clamp_min(0)  # (V,): > 0 somewhere, since p(token) < q(token)
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    last = p[len(draft)]  # (V,)
    return len(draft), int(last.argmax()) if greedy else int(torch.multinomial(last, 1, generator=generator))


def _cached(cache: KVPairs | None) -> int:
    """Positions a (keys, values) cache holds; 0 for None."""
    return 0 if cache is None else cache_length(cache[0])


def _check(target: Any, draft: Any, idx: Any, max_new_tokens: Any, gamma: Any, temperature: Any, greedy: bool) -> None:
    """ValueError naming the argument for anything speculative_generate cannot run."""
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.dim() != 2 or idx.size(0) != 1:
        got = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a torch.long tensor of shape (1, T) (batch size 1), got {got}")
    check_int("max_new_tokens", max_new_tokens, 1)
    check_int("gamma", gamma, 1, allowed="an integer >= 1 (draft tokens per round)")
    if not greedy:
        check_number("temperature", temperature, 0.0, math.inf, low_open=True, high_open=True,
                     allowed="a finite number > 0 (or greedy=True)")
    vocab = (target.config.vocab_size, draft.config.vocab_size)
    if vocab[0] != vocab[1]:
        raise ValueError(f"the draft model's vocabulary ({vocab[1]}) must be the target's ({vocab[0]}): the same "
                         "token ids must mean the same tokens")
    limit = min(target.config.block_size, draft.config.block_size)
    if idx.size(1) + max_new_tokens > limit:
        raise ValueError(f"prompt ({idx.size(1)}) + max_new_tokens ({max_new_tokens}) must fit in block_size {limit}")


@torch.no_grad()
def speculative_generate(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    gamma: int = 4,
    temperature: float = 1.0,
    greedy: bool = False,
    seed: int | None = None,
) -> SpeculativeOutput:
    """Append max_new_tokens tokens to idx (1, T), drafted by ``draft``, checked by ``target`` (both in eval mode)."""
    _check(target, draft, idx, max_new_tokens, gamma, temperature, greedy)
    generator = None if seed is None else torch.Generator(device=idx.device).manual_seed(seed)
    tau = 1.0 if greedy else float(temperature)
    caches: dict[str, KVPairs | None] = {"target": None, "draft": None}
    out = SpeculativeOutput(idx, proposed=0, accepted=0, target_calls=0)
    produced = 0
    while produced < max_new_tokens:
        tokens = out.tokens  # (1, L)
        n_draft = min(gamma, max_new_tokens - produced - 1)  # the round adds n_accepted + 1 <= what is left
        drafted, q = [], []
        fed = tokens[:, _cached(caches["draft"]):]  # the tokens the draft's cache lacks
        for _ in range(n_draft):
            result = draft(fed, past_key_values=caches["draft"], use_cache=True)
            caches["draft"] = result.past_key_values
            probs = torch.softmax(result.logits[0, -1].float() / tau, dim=-1)  # (V,)
            token = int(probs.argmax()) if greedy else int(torch.multinomial(probs, 1, generator=generator))
            drafted.append(token)
            q.append(probs)
            fed = torch.tensor([[token]], device=tokens.device)  # (1, 1)
        draft_tokens = torch.tensor(drafted, dtype=torch.long, device=tokens.device)  # (n_draft,)
        fed = torch.cat([tokens[:, _cached(caches["target"]):], draft_tokens[None]], dim=1)  # (1, t + n_draft)
        result = target(fed, past_key_values=caches["target"], use_cache=True)
        out.target_calls += 1
        p = torch.softmax(result.logits[0, -(n_draft + 1):].float() / tau, dim=-1)  # (n_draft + 1, V)
        q_matrix = torch.stack(q) if q else p[:0]  # (n_draft, V)
        n, following = accept_draft(p, q_matrix, draft_tokens, greedy, generator)
        new = torch.cat([draft_tokens[:n], torch.tensor([following], device=tokens.device)])  # (n + 1,)
        out.tokens = torch.cat([tokens, new[None]], dim=1)  # (1, L + n + 1)
        keep = tokens.size(1) + n  # every token but the one just drawn is in a cache after the next feed
        caches["target"] = truncate_cache(result.past_key_values, keep)
        if caches["draft"] is not None:
            caches["draft"] = truncate_cache(caches["draft"], min(keep, _cached(caches["draft"])))
        out.proposed, out.accepted = out.proposed + n_draft, out.accepted + n
        produced += n + 1
    return out
