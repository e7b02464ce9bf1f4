"""Chapter 9, question 4 (动态推理): early exit by confidence on a zoo model (after Schuster et al. 2022, CALM).

After every block but the last, an exit head (its own LayerNorm, feeding the model's tied LM head) predicts the next
token. A position leaves the network at the first exit whose top-1 probability reaches the threshold; otherwise it
runs every block. The heads are trained with the model frozen (its weights never change).

Cost is counted in matmul FLOPs per token, honestly: every block a position runs and every head it evaluates (an
exit head that did not fire was paid for too); attention's length-dependent term is left out. Wall-clock decoding is
not measured: a position that exits early leaves no keys and values in the blocks it skipped, which later positions
attend to (CALM copies the exited state there), so the teacher-forced evaluation here runs every block and counts
what an early exit would have cost.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mini_llm import helpers
from mini_llm.atomic import write_csv_atomic
from mini_llm.data import prepare_data
from mini_llm.nn import GPT
from mini_llm.scaling import sweep
from mini_llm.scaling.compression import EvalSet, zoo_model
from mini_llm.train import TokenBatches
from mini_llm.train.anatomy import matmul_params

THRESHOLDS = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, math.inf)  # inf: never exit early


def block_outputs(model: GPT, idx: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(the output (B, T, C) of every block, the model's logits (B, T, V)) of one forward on idx (B, T)."""
    seen: list[torch.Tensor] = []
    blocks = model.transformer.h
    hooks = [block.register_forward_hook(lambda module, args, out: seen.append(out[0])) for block in blocks]
    try:
        logits = model(idx).logits
    finally:
        for hook in hooks:
            hook.remove()
    return seen, logits


class ExitHeads(nn.Module):
    """One LayerNorm per block but the last (initialised as the final ln_f); each feeds the model's LM head."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        if model.config.n_layer < 2:
            raise ValueError(f"early exit needs a model with at least 2 layers, got n_layer={model.config.n_layer}")
        self.norms = nn.ModuleList(copy.deepcopy(model.transformer.ln_f) for _ in range(model.config.n_layer - 1))

    def forward(self, states: Sequence[torch.Tensor], lm_head: nn.Module) -> list[torch.Tensor]:
        """Logits (B, T, V) of each exit from the outputs (B, T, C) of the blocks before the last."""
        return [lm_head(norm(state)) for norm, state in zip(self.norms, states, strict=True)]


def exit_logits(model: GPT, heads: ExitHeads, idx: torch.Tensor) -> list[torch.Tensor]:
    """Logits (B, T, V) after every block: the exits' and, last, the model's own; the model gets no gradient."""
    with torch.no_grad():
        states, logits = block_outputs(model, idx)
    return [*heads(states[:-1], model.lm_head), logits]


def train_exit_heads(
    model: GPT, tokens: torch.Tensor, steps: int = 300, batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
) -> tuple[ExitHeads, list[float]]:
    """Exit heads trained on random windows of tokens (N,) by the summed next-token loss of the exits; losses."""
    steps = helpers.check_int("steps", steps, 1)
    heads = ExitHeads(model)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.0)
    batches, generator = TokenBatches(tokens, model.config.block_size), torch.Generator().manual_seed(seed)
    losses = []
    with helpers.eval_mode(model):
        for _ in range(steps):
            x, y = batches(batch_size, generator)  # (B, T) each
            logits = exit_logits(model, heads, x)[:-1]
            loss = sum(F.cross_entropy(lg.flatten(0, 1), y.flatten()) for lg in logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() / len(logits))
    return heads.eval(), losses


def flops_per_token(model: GPT, blocks: float, heads: float) -> float:
    """Matmul FLOPs of one token that runs ``blocks`` blocks and evaluates ``heads`` LM heads (exits included)."""
    per_block = 2 * matmul_params(model.transformer.h[0])
    per_head = 2 * model.lm_head.weight.numel()
    return blocks * per_block + heads * per_head


@torch.no_grad()
def exit_rows(
    model: GPT, heads: ExitHeads, x: torch.Tensor, y: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS,
) -> Iterator[dict[str, object]]:
    """Per threshold: held-out perplexity on x, y (W, T), mean blocks run, share exiting at each exit, FLOPs ratio."""
    for threshold in thresholds:
        helpers.check_number("threshold", threshold, 0.0, math.inf, allowed="a number >= 0 (inf: never exit)")
    n_layer = model.config.n_layer
    with helpers.eval_mode(model):
        log_probs = [F.log_softmax(lg.double(), dim=-1) for lg in exit_logits(model, heads, x)]  # L x (W, T, V)
    nll = torch.stack([-lp.gather(-1, y[..., None])[..., 0] for lp in log_probs])  # (L, W, T)
    confidence = torch.stack([lp.max(dim=-1).values.exp() for lp in log_probs[:-1]])  # (L - 1, W, T)
    full = flops_per_token(model, n_layer, 1)
    for threshold in thresholds:
        fires = torch.cat([confidence >= threshold, torch.ones_like(confidence[:1])])  # (L, W, T): last always fires
        blocks = fires.to(torch.int64).argmax(dim=0) + 1  # (W, T): the first exit that fires, 1-based
        chosen = nll.gather(0, (blocks - 1)[None])[0]  # (W, T)
        mean_blocks = float(blocks.double().mean())
        heads_run = mean_blocks if math.isfinite(threshold) else 1  # with no early exit, no exit head is evaluated
        row = {"threshold": threshold, "perplexity": math.exp(float(chosen.mean())), "mean_blocks": mean_blocks,
               "flops_ratio": flops_per_token(model, mean_blocks, heads_run) / full}
        for layer in range(1, n_layer):
            row[f"exit_{layer}_share"] = float((blocks == layer).double().mean())
        yield row


def run_early_exit(
    out: str | os.PathLike, preset_set: str = "main", target: str = "3x144", steps: int = 300, seed: int = 0,
    cache_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print,
) -> list[dict[str, object]]:
    """Train exit heads on the zoo's ``target`` and write one row per threshold to ``out`` (CSV); returns the rows."""
    model = sweep.to_16bit(zoo_model(target, preset_set, cache_dir=cache_dir))  # weights as the sweep evaluates them
    data = prepare_data()
    evals = EvalSet.of(data, model.config.block_size)
    start = time.perf_counter()
    heads, losses = train_exit_heads(model, data.train, steps, seed=seed)
    log(f"exit heads of {target}: {steps} steps in {time.perf_counter() - start:.0f} s, last loss {losses[-1]:.3f}")
    rows = [{"model": target, "head_steps": steps, **row} for row in exit_rows(model, heads, evals.x, evals.y)]
    for row in rows:
        log(f"threshold {row['threshold']}: perplexity {row['perplexity']:.2f}, {row['mean_blocks']:.2f} blocks, "
            f"{row['flops_ratio']:.2f} of the FLOPs")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(Path(out), list(rows[0]), rows)
    return rows
