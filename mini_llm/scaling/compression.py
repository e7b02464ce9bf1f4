"""Chapter 9, question 4 (推理效率): pruning, distillation and lower precision on the zoo, on one perplexity axis.

Every model is evaluated like the k-bit sweep: ``sweep.held_out_windows`` of the validation split (64 windows of the
zoo's context), weights rounded to 16 bits first, so the rows sit beside ``results/kbit_sweep.csv``. Bits are counted
honestly: a pruned matrix stores its kept 16-bit values plus the index overhead of the smaller of its possible
formats (``quant.pruning.pruned_bits``); every other parameter counts 16 bits (``sweep.PARAM_BITS``).

- pruning: magnitude (whole matrix), Wanda (per output row, |W| x input norm on calibration text) and 2:4 of the
  linear layers inside the blocks (the tied embedding / LM head stays dense), optionally followed by a short
  recovery fine-tune that keeps the pruned weights at zero (their gradients are masked).
- distillation: small students trained for the same tokens from scratch and against the teacher's logits
  (``train.distill.Distillation``), and one trained under bf16 autocast.
- precision: the teacher evaluated in float32, under bf16 autocast and with bf16 weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from fractions import Fraction

import torch
from torch import nn

from mini_llm import helpers
from mini_llm.data import CharData
from mini_llm.nn import GPT
from mini_llm.quant.pruning import magnitude_mask, pruned_bits, semi_structured_mask, wanda_mask
from mini_llm.scaling import sweep
from mini_llm.scaling.zoo import ZooSize, plan, zoo_checkpoints
from mini_llm.tasks.charlm.training import build_model
from mini_llm.train import TokenBatches, Trainer, TrainerConfig, next_token_loss
from mini_llm.train.checkpoint import load_weights
from mini_llm.train.distill import Distillation

PRUNE_METHODS = ("magnitude", "wanda", "2:4-magnitude", "2:4-wanda")
SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RECOVERY = (("magnitude", 0.5), ("wanda", 0.5), ("magnitude", 0.7), ("wanda", 0.7), ("2:4-wanda", 0.5))
PRECISIONS = ("float32", "bf16-autocast", "bf16-weights")


def zoo_model(size: str, preset_set: str = "main", seed: int = 0, cache_dir=None) -> GPT:
    """The zoo model of ``size`` after its whole budget (eval mode); FileNotFoundError naming the command if absent."""
    found = zoo_checkpoints(plan(preset_set, [size], [seed]), cache_dir, [Fraction(1)])
    if not found:
        raise FileNotFoundError(f"the zoo model {size}-seed{seed} ({preset_set}) is not trained: run "
                                f"`mini-llm zoo train --preset-set {preset_set} --sizes {size} --seeds {seed}`")
    return load_weights(found[0].path)[0].eval()


def zoo_size(size: str, preset_set: str = "main") -> ZooSize:
    """The ZooSize called ``size`` in the preset set."""
    return plan(preset_set, [size], [0])[0].size


@dataclass(frozen=True)
class EvalSet:
    """The held-out windows every model is measured on, and training windows for calibration."""

    x: torch.Tensor  # (W, T) inputs
    y: torch.Tensor  # (W, T) next tokens
    calibration: torch.Tensor  # (16, T) training windows

    @classmethod
    def of(cls, data: CharData, block_size: int) -> EvalSet:
        """The sweep's held-out windows and calibration windows for a context of block_size."""
        x, y = sweep.held_out_windows(data.val, block_size, sweep.EVAL_WINDOWS)
        calibration = sweep.held_out_windows(data.train, block_size, sweep.CALIBRATION_WINDOWS)[0]
        return cls(x, y, calibration)

    def perplexity(self, model: nn.Module, precision: str = "float32") -> float:
        """Held-out perplexity of model (``precision`` "bf16-autocast" runs it under torch.autocast)."""
        with autocast(precision == "bf16-autocast"):
            return sweep.evaluate(model, self.x, self.y)["perplexity"]


def autocast(enabled: bool) -> torch.autocast | nullcontext:
    """bf16 autocast on the CPU when enabled, else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else nullcontext()


def block_linears(model: GPT) -> dict[str, nn.Linear]:
    """The linear layers inside the transformer blocks (what pruning prunes), by name."""
    modules = model.named_modules()
    return {name: m for name, m in modules if isinstance(m, nn.Linear) and name.startswith("transformer.h")}


@torch.no_grad()
def layer_inputs(model: GPT, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inputs each block linear sees on windows (B, T): name -> (B * T, in_features)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, args[0].flatten(0, -2)))
             for name, m in block_linears(model).items()]
    try:
        with helpers.eval_mode(model):
            model(windows)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def prune_mask(weight: torch.Tensor, method: str, sparsity: float, inputs: torch.Tensor) -> torch.Tensor:
    """The kept-weight mask of one matrix (out, in) for a method of PRUNE_METHODS (2:4 methods ignore sparsity)."""
    helpers.check_choice("method", method, PRUNE_METHODS)
    if method == "magnitude":
        return magnitude_mask(weight, sparsity)
    if method == "wanda":
        return wanda_mask(weight, inputs, sparsity)
    return semi_structured_mask(weight, 2, 4, inputs if method == "2:4-wanda" else None)


@torch.no_grad()
def pruned_copy(
    model: GPT, method: str, sparsity: float, calibration: torch.Tensor
) -> tuple[GPT, dict[str, torch.Tensor]]:
    """A copy of model with its block linears pruned; returns (copy, masks by layer name)."""
    inputs = layer_inputs(model, calibration) if "wanda" in method else {}
    pruned = copy.deepcopy(model)
    masks = {}
    for name, layer in block_linears(pruned).items():
        # nn.Linear stores (out, in): the masks work on rows = outputs, columns = inputs
        masks[name] = prune_mask(layer.weight, method, sparsity, inputs.get(name))
        layer.weight.mul_(masks[name])
    return pruned, masks


def sparse_bits(model: GPT, masks: dict[str, torch.Tensor], method: str) -> dict[str, int]:
    """Stored bits: pruned matrices in their smallest format, every other parameter at 16 bits (tied matrix once)."""
    formats = ("2:4",) if method.startswith("2:4") else ("bitmask", "csr")
    parts = sweep.bit_breakdown(model)
    dense = sum(sweep.PARAM_BITS * layer.weight.numel() for layer in block_linears(model).values())
    stored = sum(min(pruned_bits(mask, sweep.PARAM_BITS, f) for f in formats) for mask in masks.values())
    return parts | {"linear": parts["linear"] - dense + stored}


@contextmanager
def frozen_zeros(model: GPT, masks: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within the block, gradients of pruned weights are zero: AdamW then leaves them exactly at zero."""
    layers = block_linears(model)
    hooks = [layers[name].weight.register_hook(lambda grad, mask=mask: grad * mask) for name, mask in masks.items()]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def train_model(
    model: GPT, config: TrainerConfig, data: CharData, loss_fn: Callable = next_token_loss
) -> tuple[GPT, float]:
    """Train model in place with the Trainer on the training split; returns (model in eval mode, seconds)."""
    block = model.config.block_size
    trainer = Trainer(model, config, TokenBatches(data.train, block), loss_fn=loss_fn)
    start = time.perf_counter()
    trainer.train()
    return model.eval(), time.perf_counter() - start


def recover(model: GPT, masks: dict[str, torch.Tensor], size: ZooSize, data: CharData, steps: int) -> float:
    """A short fine-tune at the zoo recipe's final learning rate that keeps the pruned weights at zero; seconds."""
    lr = size.trainer_config().min_lr
    config = TrainerConfig(max_steps=steps, batch_size=size.batch_size, lr=lr, warmup_steps=max(1, steps // 10),
                           min_lr=lr / 10, betas=(0.9, 0.95), eval_interval=0, progress=False, seed=1)
    with frozen_zeros(model, masks):
        _, seconds = train_model(model.train(), config, data)
    for name, layer in block_linears(model).items():
        if bool((layer.weight[~masks[name]] != 0).any()):
            raise RuntimeError(f"recovery fine-tune moved pruned weights of {name}")
    return seconds


def pruning_rows(
    teacher: GPT, size: ZooSize, data: CharData, evals: EvalSet, sparsities: Sequence[float] = SPARSITIES,
    recovery: Sequence[tuple[str, float]] = RECOVERY, recovery_steps: int = 100, log: Callable = print,
) -> Iterator[dict[str, object]]:
    """One row per (method, sparsity[, recovered]): perplexity and honest bits of the pruned 16-bit model."""
    model16 = sweep.to_16bit(teacher)
    params = sum(p.numel() for p in model16.parameters())
    grid = [(m, s) for m in PRUNE_METHODS for s in ((0.5,) if m.startswith("2:4") else sparsities)]
    for method, sparsity in [("none", 0.0), *grid]:
        start = time.perf_counter()
        pruned, masks = (model16, {}) if method == "none" else pruned_copy(model16, method, sparsity, evals.calibration)
        runs = [("no", pruned)]
        if (method, sparsity) in set(recovery):
            recovered = copy.deepcopy(pruned)
            recover(recovered, masks, size, data, recovery_steps)
            runs.append((f"{recovery_steps} steps", sweep.to_16bit(recovered)))
        for fine_tune, model in runs:
            parts = sparse_bits(model, masks, method) if masks else sweep.bit_breakdown(model)
            kept = sum(int(m.sum()) for m in masks.values()) / max(1, sum(m.numel() for m in masks.values()))
            row = {"method": method, "sparsity": sparsity, "measured_sparsity": round(1 - kept, 6) if masks else 0.0,
                   "recovery": fine_tune, "perplexity": evals.perplexity(model), "total_bits": sum(parts.values()),
                   "bits_per_param": sum(parts.values()) / params, "seconds": round(time.perf_counter() - start, 3)}
            log(f"pruning {method} {sparsity:.1f} recovery {fine_tune}: perplexity {row['perplexity']:.2f}")
            yield row


def student_config(size: ZooSize, fraction: Fraction, seed: int) -> TrainerConfig:
    """The zoo recipe for a student trained on ``fraction`` of the zoo's token budget (no evaluations).

    The cosine decays over the shorter run, but the warm-up stays the whole run's: 5% of a short run is too short
    (1x64 on a quarter of the budget, seed 0: held-out perplexity 388 with 18 warm-up steps, 301 with the zoo's 73).
    """
    short = replace(size, tokens=int(size.tokens * fraction))
    config = short.trainer_config()
    warmup = min(size.trainer_config().warmup_steps, config.max_steps // 2)
    return replace(config, warmup_steps=warmup, eval_interval=0, checkpoint_interval=0, progress=False, seed=seed)


def distillation_rows(
    teacher: GPT, students: Sequence[str], seeds: Sequence[int], fraction: Fraction, data: CharData, evals: EvalSet,
    preset_set: str = "main", temperature: float = 2.0, alpha: float = 0.5, log: Callable = print,
) -> Iterator[dict[str, object]]:
    """Students trained from scratch, distilled from the teacher, and (first seed) under bf16 autocast."""
    teacher16 = sweep.to_16bit(teacher)
    yield {"model": "teacher", "student": "", "method": "zoo", "seed": 0, "tokens": "",
           "perplexity": evals.perplexity(teacher16), "params": sum(p.numel() for p in teacher.parameters()),
           "seconds": ""}
    distill = Distillation(teacher, temperature, alpha)

    def bf16_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(True):
            return next_token_loss(model, x, y)

    for name in students:
        size = zoo_size(name, preset_set)
        for seed in seeds:
            methods = {"scratch": next_token_loss, "distilled": distill}
            if seed == seeds[0]:
                methods["scratch-bf16-autocast"] = bf16_loss
            for method, loss_fn in methods.items():
                config = student_config(size, fraction, seed)
                model = build_model(size.gpt_config(data.tokenizer.vocab_size), seed)
                model, seconds = train_model(model, config, data, loss_fn)
                row = {"model": "student", "student": name, "method": method, "seed": seed,
                       "tokens": config.max_steps * size.batch_size * size.block_size,
                       "perplexity": evals.perplexity(sweep.to_16bit(model)),
                       "params": sum(p.numel() for p in model.parameters()), "seconds": round(seconds, 2)}
                log(f"student {name} seed {seed} {method}: perplexity {row['perplexity']:.2f} ({seconds:.0f} s)")
                yield row


def precision_rows(teacher: GPT, evals: EvalSet, repeats: int = 3) -> Iterator[dict[str, object]]:
    """The teacher's held-out perplexity and evaluation time in float32, under bf16 autocast, with bf16 weights."""
    for precision in PRECISIONS:
        model = copy.deepcopy(teacher).to(torch.bfloat16) if precision == "bf16-weights" else teacher
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            perplexity = evals.perplexity(model, precision)
            times.append(time.perf_counter() - start)
        yield {"precision": precision, "perplexity": perplexity, "eval_tokens": evals.y.numel(),
               "tokens_per_second": evals.y.numel() / min(times), "seconds": round(min(times), 4)}


def gap_recovered(scratch: float, distilled: float, teacher: float) -> float:
    """Share of the student-to-teacher gap in loss (log perplexity) that distillation closes."""
    return (math.log(scratch) - math.log(distilled)) / (math.log(scratch) - math.log(teacher))
