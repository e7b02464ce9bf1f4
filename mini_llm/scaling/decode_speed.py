"""Chapter 9 (questions 2 and 4): measured decode speed — plain, speculative, and what zeros do to a matmul.

- ``decode_rows``: greedy decoding with the KV cache, new tokens per second (best of a few repeats).
- ``speculative_rows``: a small draft model proposes gamma tokens, the target checks them in one call
  (``generation.speculative_generate``); acceptance rate, target calls, wall time against the target alone, and
  whether the output is the target's own greedy output.
- ``sparse_matmul_rows``: a dense matrix with zeros against the same matrix in torch's CSR format.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from mini_llm import helpers
from mini_llm.generation import generate
from mini_llm.generation.speculative import speculative_generate
from mini_llm.nn import WindowKV, window_cache

GAMMAS = (1, 2, 3, 4, 6, 8)
SPARSITIES = (0.0, 0.5, 0.9, 0.99)


def held_out_prompts(tokens: torch.Tensor, n_prompts: int, length: int) -> list[torch.Tensor]:
    """n_prompts evenly spaced windows of ``length`` tokens of a 1-D token tensor, each (1, length)."""
    n_prompts = helpers.check_int("n_prompts", n_prompts, 1)
    length = helpers.check_int("length", length, 1)
    if len(tokens) < n_prompts * length:
        raise ValueError(f"tokens must hold at least n_prompts x length = {n_prompts * length} ids, got {len(tokens)}")
    step = len(tokens) // n_prompts
    return [tokens[i * step : i * step + length][None] for i in range(n_prompts)]


def _best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """The shortest wall time of ``repeats`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


@torch.no_grad()
def greedy_outputs(model: nn.Module, prompts: Sequence[torch.Tensor], new_tokens: int) -> list[torch.Tensor]:
    """Greedy continuations with the KV cache, each (1, prompt + new_tokens)."""
    with helpers.eval_mode(model):
        return [generate(model, p, new_tokens, greedy=True, use_cache=True) for p in prompts]


def decode_rows(
    models: Mapping[str, nn.Module], prompts: Sequence[torch.Tensor], new_tokens: int, repeats: int = 3
) -> Iterator[dict[str, object]]:
    """New tokens per second of greedy decoding with the KV cache, one row per model."""
    for name, model in models.items():
        seconds, _ = _best_time(lambda model=model: greedy_outputs(model, prompts, new_tokens), repeats)
        yield {"model": name, "new_tokens": new_tokens * len(prompts), "seconds": round(seconds, 4),
               "tokens_per_second": new_tokens * len(prompts) / seconds}


@torch.no_grad()
def speculative_rows(
    target: nn.Module, drafts: Mapping[str, nn.Module], prompts: Sequence[torch.Tensor], new_tokens: int,
    gammas: Sequence[int] = GAMMAS, repeats: int = 3, log: Callable[[str], None] = print,
) -> Iterator[dict[str, object]]:
    """Greedy speculative decoding for every draft and gamma, against the target decoding alone."""
    baseline, reference = _best_time(lambda: greedy_outputs(target, prompts, new_tokens), repeats)
    total = new_tokens * len(prompts)
    yield {"draft": "none", "gamma": 0, "acceptance_rate": "", "target_calls": total, "identical": True,
           "seconds": round(baseline, 4), "tokens_per_second": total / baseline, "speedup": 1.0}
    for name, draft in drafts.items():
        for gamma in gammas:
            def run(draft: nn.Module = draft, gamma: int = gamma) -> list:
                return [speculative_generate(target, draft, p, new_tokens, gamma=gamma, greedy=True) for p in prompts]

            seconds, outputs = _best_time(run, repeats)
            proposed = sum(o.proposed for o in outputs)
            identical = all(torch.equal(o.tokens, r) for o, r in zip(outputs, reference, strict=True))
            accepted = sum(o.accepted for o in outputs)
            row = {"draft": name, "gamma": gamma, "acceptance_rate": accepted / max(1, proposed),
                   "target_calls": sum(o.target_calls for o in outputs), "identical": identical,
                   "seconds": round(seconds, 4), "tokens_per_second": total / seconds, "speedup": baseline / seconds}
            log(f"speculative {name} gamma {gamma}: acceptance {row['acceptance_rate']:.2f}, "
                f"speed-up {row['speedup']:.2f}x, identical {identical}")
            yield row


def _with_zeros(n: int, sparsity: float, generator: torch.Generator) -> torch.Tensor:
    """A random (n, n) float32 matrix with round(sparsity * n * n) entries set to zero at random places."""
    weight = torch.randn(n, n, generator=generator)  # (n, n)
    drop = torch.randperm(n * n, generator=generator)[: round(sparsity * n * n)]
    weight.view(-1)[drop] = 0.0
    return weight


def sparse_matmul_rows(
    n: int = 2048, sparsities: Sequence[float] = SPARSITIES, columns: Sequence[int] = (1, 128), repeats: int = 20,
) -> Iterator[dict[str, object]]:
    """Time of W @ X for W (n, n) with zeros, stored dense and as CSR, X (n, columns); the results must agree."""
    generator = torch.Generator().manual_seed(0)
    for sparsity in sparsities:
        weight = _with_zeros(n, sparsity, generator)  # (n, n)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": measured here as it is
            warnings.simplefilter("ignore", UserWarning)
            csr = weight.to_sparse_csr()
        for width in columns:
            x = torch.randn(n, width, generator=generator)  # (n, width)
            dense_s, dense = _best_time(lambda w=weight, x=x: w @ x, repeats)
            csr_s, sparse = _best_time(lambda w=csr, x=x: w @ x, repeats)
            torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-3)
            yield {"n": n, "sparsity": sparsity, "columns": width, "dense_ms": dense_s * 1e3, "csr_ms": csr_s * 1e3,
                   "csr_over_dense": csr_s / dense_s}


def kv_cache_bytes(past_key_values: Sequence[tuple[torch.Tensor, torch.Tensor] | WindowKV]) -> int:
    """Bytes of a float KV cache: every layer's keys and values (a sliding-window cache: those it holds)."""
    return sum(layer.nbytes() if isinstance(layer, WindowKV) else sum(t.numel() * t.element_size() for t in layer)
               for layer in past_key_values)


def _empty_cache(model: nn.Module) -> list[WindowKV] | None:
    """The bounded cache a sliding-window GPT decodes with (``attn_window`` set), else None (a growing cache)."""
    window = getattr(model.config, "attn_window", None)
    return None if window is None else window_cache(model.config.n_layer, window)


def predicted_kv_cache_bytes(config: object, batch: int, length: int, bytes_per_element: int = 4) -> int:
    """2 (keys and values) x layers x batch x length x width x bytes per element."""
    return 2 * config.n_layer * batch * length * config.n_embd * bytes_per_element


def _decode_seconds(model: nn.Module, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> float:
    """Seconds of new_tokens greedy steps after the prompt (B, T): with the KV cache one token per forward, without
    it the whole sequence again."""
    out = model(prompt, past_key_values=_empty_cache(model) if use_cache else None, use_cache=use_cache)
    past, tokens = out.past_key_values, prompt  # tokens: (B, T + i)
    start = time.perf_counter()
    for _ in range(new_tokens):
        following = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        tokens = torch.cat([tokens, following], dim=1)
        out = model(following, past_key_values=past, use_cache=True) if use_cache else model(tokens)
        past = out.past_key_values
    return time.perf_counter() - start


@torch.no_grad()
def prefill_decode_row(
    model: nn.Module, batch: int, prompt_length: int, new_tokens: int, use_cache: bool = True, repeats: int = 3,
) -> dict[str, object]:
    """Time to first token (one forward of a random prompt) and time per decoded token, best of ``repeats``.

    A GPT with ``attn_window`` decodes with its bounded ``window_cache``; kv_cache_bytes is what the cache holds
    after the prompt.
    """
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (batch, prompt_length), generator=generator)  # (B, T)
    with helpers.eval_mode(model):
        prefill, out = _best_time(lambda: model(prompt, past_key_values=_empty_cache(model), use_cache=True), repeats)
        decode = min(_decode_seconds(model, prompt, new_tokens, use_cache) for _ in range(repeats)) / new_tokens
    return {"batch": batch, "prompt_length": prompt_length, "use_cache": use_cache, "prefill_ms": prefill * 1e3,
            "decode_ms_per_token": decode * 1e3, "tokens_per_second": batch / decode,
            "kv_cache_bytes": kv_cache_bytes(out.past_key_values)}


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second that summing a large float32 tensor reads (a simple measure of memory bandwidth)."""
    x = torch.ones(megabytes * 2**20 // 4)
    seconds, _ = _best_time(lambda: x.sum(), repeats)
    return x.numel() * 4 / seconds
