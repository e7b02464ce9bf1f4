"""Decoding strategies of a char-level GPT compared on held-out People's Daily prompts.

Each strategy (greedy, temperature, top-k, top-p) continues the same prompts; the result keeps every prompt, its
real continuation from the newspaper and each strategy's continuation, with the model's own log-probability of
each continuation, so that the diversity and fluency measures of chapter 6.3 can be computed from the texts.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mini_llm.data import CharTokenizer, load_people_daily
from mini_llm.generation import generate
from mini_llm.jsonfiles import Schema, check_schema, read_format_json
from mini_llm.train.rundir import write_json

RESULT_FORMAT = "mini_llm.decoding/1"
# What a result written by write_result holds (see mini_llm.jsonfiles.check_schema).
RESULT_SCHEMA: Schema = {
    "settings": {"n_prompts": int, "prompt_chars": int, "new_chars": int, "seed": int, "prompt_lengths": [int],
                 "prompt_strategy": str, "torch_threads": int},
    "prompts": [str], "references": [str], "reference_log_probs": [float], "seconds": float,
    "runs": [{"strategy": {"name": str}, "prompt_chars": int, "continuations": [str], "log_probs": [float]}],
}
HELDOUT_FRACTION = 0.1  # prompts come from the last 10% of the paragraphs, as the validation split of charlm


@dataclass(frozen=True)
class DecodingStrategy:
    """A named way to pick the next character: greedy, or a draw after temperature / top-k / top-p."""

    name: str
    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None


STRATEGIES = (
    DecodingStrategy("greedy", greedy=True),
    DecodingStrategy("temperature 0.7", temperature=0.7),
    DecodingStrategy("temperature 1.0", temperature=1.0),
    DecodingStrategy("temperature 1.3", temperature=1.3),
    DecodingStrategy("top-k 20", top_k=20),
    DecodingStrategy("top-p 0.9", top_p=0.9),
)


def heldout_prompts(n_prompts: int, prompt_chars: int, new_chars: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, real continuation) pairs: the start of n_prompts random held-out paragraphs long enough for both."""
    for name, value in (("n_prompts", n_prompts), ("prompt_chars", prompt_chars), ("new_chars", new_chars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    paragraphs = load_people_daily(form="text")
    heldout = paragraphs[int((1 - HELDOUT_FRACTION) * len(paragraphs)) :]
    long_enough = [p for p in heldout if len(p) >= prompt_chars + new_chars]
    if n_prompts > len(long_enough):
        raise ValueError(f"n_prompts={n_prompts} exceeds the {len(long_enough)} held-out paragraphs of at least "
                         f"{prompt_chars + new_chars} characters")
    chosen = sorted(np.random.default_rng(seed).choice(len(long_enough), n_prompts, replace=False).tolist())
    return [(long_enough[i][:prompt_chars], long_enough[i][prompt_chars : prompt_chars + new_chars]) for i in chosen]


UNKNOWN_SHOWN_AS = "\N{REPLACEMENT CHARACTER}"  # one character for <unk>, so a text keeps one character per id


def _encode_all(tokenizer: CharTokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Token ids of texts of one length, as a (B, T) tensor."""
    if not texts or len({len(t) for t in texts}) != 1:
        raise ValueError("texts must be a non-empty list of strings of one length, to be decoded as one batch")
    return torch.tensor([tokenizer.encode(t) for t in texts], dtype=torch.long)  # (B, T)


def decode_chars(tokenizer: CharTokenizer, ids: Sequence[int]) -> str:
    """One character per id (<unk> shown as U+FFFD), so len(text) == len(ids)."""
    return "".join(UNKNOWN_SHOWN_AS if i == tokenizer.unk_id else tokenizer.decode([i]) for i in ids)


def continue_prompts(
    model: torch.nn.Module, tokenizer: CharTokenizer, prompts: Sequence[str], new_chars: int,
    strategy: DecodingStrategy, seed: int = 0,
) -> torch.Tensor:
    """The ids of the new_chars characters the model adds to each prompt with ``strategy``: (B, new_chars)."""
    idx = _encode_all(tokenizer, prompts)  # (B, T)
    out = generate(model, idx, new_chars, temperature=strategy.temperature, top_k=strategy.top_k,
                   top_p=strategy.top_p, greedy=strategy.greedy, seed=None if strategy.greedy else seed)
    return out[:, idx.size(1) :]  # (B, new_chars)


@torch.no_grad()
def continuation_log_probs(model: torch.nn.Module, prompt_ids: torch.Tensor, new_ids: torch.Tensor) -> list[float]:
    """Natural-log probability the model gives each row of new_ids (B, N) after prompt_ids (B, T)."""
    if prompt_ids.dim() != 2 or new_ids.dim() != 2 or prompt_ids.size(0) != new_ids.size(0) or new_ids.size(1) < 1:
        raise ValueError(f"need prompt_ids (B, T) and new_ids (B, N >= 1), got {tuple(prompt_ids.shape)} and "
                         f"{tuple(new_ids.shape)}")
    ids = torch.cat([prompt_ids, new_ids], dim=1)  # (B, T + N)
    T, L, block = prompt_ids.size(1), ids.size(1), model.config.block_size
    total = torch.zeros(ids.size(0), dtype=torch.float64)  # (B,)
    if L - 1 <= block:  # one pass: position t - 1 predicts token t
        log_probs = torch.log_softmax(model(ids[:, :-1]).logits.double(), dim=-1)  # (B, L - 1, V)
        for t in range(T, L):
            total += log_probs[:, t - 1].gather(1, ids[:, t : t + 1])[:, 0]
    else:  # the last block_size tokens before each predicted one, as generate() sees them
        for t in range(T, L):
            logits = model(ids[:, max(0, t - block) : t]).logits[:, -1].double()  # (B, V)
            total += torch.log_softmax(logits, dim=-1).gather(1, ids[:, t : t + 1])[:, 0]
    return total.tolist()


def copied_share(texts: Sequence[str], known: AbstractSet[str]) -> float:
    """Share of the character n-grams of texts found in ``known`` (the retrieval.char_ngram_set of a source; n
    from it)."""
    if not known:
        raise ValueError("known must be a non-empty set of n-grams of one length (see retrieval.char_ngram_set)")
    n = len(next(iter(known)))
    grams = [t[i : i + n] for t in texts for i in range(len(t) - n + 1)]
    return sum(g in known for g in grams) / len(grams) if grams else 0.0


def longest_copied_span(text: str, source: str, known: AbstractSet[str]) -> str:
    """The longest substring of text found verbatim in source, if it is at least as long as known's n-grams
    (known = retrieval.char_ngram_set(source, n)); '' when no n-gram of text is in source."""
    if not known:
        raise ValueError("known must be a non-empty set of n-grams of one length (see retrieval.char_ngram_set)")
    n = len(next(iter(known)))
    best = ""
    for i in range(len(text) - n + 1):
        if text[i : i + n] not in known:
            continue
        j = i + max(n, len(best) + 1)  # only a longer span can replace the best so far
        while j <= len(text) and text[i:j] in source:
            best, j = text[i:j], j + 1
    return best


def evaluate_decoding(
    model: torch.nn.Module, tokenizer: CharTokenizer, n_prompts: int = 100, prompt_chars: int = 16,
    new_chars: int = 100, seed: int = 0, strategies: Sequence[DecodingStrategy] = STRATEGIES,
    prompt_lengths: Sequence[int] = (4, 64), prompt_strategy: str = "top-p 0.9",
) -> dict[str, Any]:
    """Every strategy's continuations of the same held-out prompts, with the model's log-probabilities; then
    ``prompt_strategy`` again with the prompts cut to each of ``prompt_lengths`` characters (ending where the
    others end, so every run continues the text at the same place)."""
    names = [s.name for s in strategies]
    if prompt_strategy not in names:
        raise ValueError(f"prompt_strategy must be one of the strategies {names}, got {prompt_strategy!r}")
    longest = max([prompt_chars, *prompt_lengths])
    pairs = heldout_prompts(n_prompts, longest, new_chars, seed)
    references = [r for _, r in pairs]
    plan = [(strategy, prompt_chars) for strategy in strategies]
    plan += [(strategies[names.index(prompt_strategy)], n) for n in prompt_lengths if n != prompt_chars]
    start = time.perf_counter()
    runs = []
    for strategy, n in plan:
        prompts = [p[len(p) - n :] for p, _ in pairs]
        new_ids = continue_prompts(model, tokenizer, prompts, new_chars, strategy, seed)  # (B, new_chars)
        runs.append({
            "strategy": asdict(strategy),
            "prompt_chars": n,
            "continuations": [decode_chars(tokenizer, row) for row in new_ids.tolist()],
            "log_probs": continuation_log_probs(model, _encode_all(tokenizer, prompts), new_ids),
        })
    prompts = [p[len(p) - prompt_chars :] for p, _ in pairs]
    return {
        "format": RESULT_FORMAT,
        "settings": {"n_prompts": n_prompts, "prompt_chars": prompt_chars, "new_chars": new_chars, "seed": seed,
                     "prompt_lengths": list(prompt_lengths), "prompt_strategy": prompt_strategy,
                     "torch_threads": torch.get_num_threads()},
        "prompts": [p for p, _ in pairs],  # the longest prompts; a run's prompt is the end of each
        "references": references,
        "reference_log_probs": continuation_log_probs(
            model, _encode_all(tokenizer, prompts), _encode_all(tokenizer, references)),
        "runs": runs,
        "seconds": time.perf_counter() - start,
    }


def write_result(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write an evaluate_decoding result as JSON (UTF-8, one run per strategy)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    return out


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """A result written by write_result; ValueError if the file is not one."""
    result = read_format_json(path, RESULT_FORMAT, "a decoding result")
    check_schema(result, RESULT_SCHEMA, path)
    n = len(result["prompts"])
    if len(result["references"]) != n or len(result["reference_log_probs"]) != n:
        raise ValueError(f"{path}: references and reference_log_probs must have one entry per prompt ({n})")
    for run in result["runs"]:
        if len(run["continuations"]) != n or len(run["log_probs"]) != n:
            raise ValueError(f"{path}: run {run['strategy'].get('name')!r} does not have one text per prompt")
    return result


def perplexity(log_probs: Sequence[float], n_chars: int) -> float:
    """exp of the mean negative log-probability per character over texts of n_chars characters each."""
    if n_chars < 1 or not log_probs:
        raise ValueError("need at least one text of at least one character")
    return math.exp(-sum(log_probs) / (n_chars * len(log_probs)))
