"""Chapter 8 (个性化模型): adapt the zoo's 2x64 model to shopping reviews with LoRA, QLoRA and full fine-tuning.

The model was trained on People's Daily (January 1998) with that corpus's character vocabulary; review characters
outside it become ``<unk>``. Each method trains on the same random windows of the reviews' train split and is measured
on held-out windows of the reviews' test split (the new domain) and of People's Daily's validation split (what the
model forgets). LoRA (Hu et al. 2021) adapts the attention and MLP linears of both blocks (c_attn, attn.c_proj, c_fc,
mlp.c_proj); the tied token embedding / LM head, the position table and the LayerNorms stay frozen. QLoRA (Dettmers et
al. 2023) puts the same adapters on a base whose block linears are stored as NF4 with blocksize 64 by mini_llm's own
QuantizedLinear (the tied embedding / LM head stays float32, as QLoRA keeps it in 16 bits). Full fine-tuning trains
every weight, embeddings included, as the reference.

Bytes: ``model_bytes`` is what the adapted model takes as it runs (``quant.model_bits``: float32 tensors, k-bit codes
with their scales, adapters); ``adapter_bytes`` is what each further domain adds on top of the shared base: the LoRA
factors, or for full fine-tuning a whole new copy of the model.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm import helpers
from mini_llm.atomic import write_csv_atomic
from mini_llm.data import prepare_data
from mini_llm.nn import GPT, adapter_bytes, add_lora, lora_parameters, merge_lora
from mini_llm.quant import model_bits, quantize_model
from mini_llm.scaling import sweep
from mini_llm.scaling.compression import zoo_model
from mini_llm.train import TokenBatches
from mini_llm.trends.domains import domain_loss, review_tokens, unk_share

MODEL = "2x64"  # the zoo model adapted (final checkpoint of preset set "main")
RANKS = (1, 4, 16)
TARGETS = ("c_attn", "c_proj", "c_fc")  # attention (c_attn, attn.c_proj) and MLP (c_fc, mlp.c_proj) linears
NF4 = {"bits": 4, "codebook": "nf", "blocksize": 64}  # the QLoRA base format
ALPHA = 16.0  # LoRA alpha, the same for every rank (Hu et al. 4.1): scaling alpha / r
# Learning rates: chosen on the reviews' validation split (not the test split) from {3e-3, 1e-2, 3e-2} for LoRA
# (3e-3 and 1e-2 tie at rank 4; 3e-3 is better at rank 1, 1e-2 at rank 16; 3e-2 diverges) and {3e-4, 1e-3, 3e-3}
# for full fine-tuning (3e-3 adapts a little better than 1e-3 but doubles the forgetting).
LORA_LR = 3e-3  # AdamW learning rate of the LoRA factors
FULL_LR = 1e-3  # AdamW learning rate of full fine-tuning
STEPS = 80  # optimizer steps of every method: 80 x 8 x 128 = 81,920 review characters, 8% of the train split
BATCH_SIZE = 8  # windows of the model's context (128 characters) per step
GRAD_CLIP = 1.0  # gradient-norm clip, as the zoo was trained
EVAL_WINDOWS = sweep.EVAL_WINDOWS  # 64 evenly spaced held-out windows of each corpus (8,192 targets), as the sweep
FILE = "future_lora.csv"
COLUMNS = (
    "method", "rank", "alpha", "base_bits", "trainable_params", "adapter_bytes", "model_bytes", "steps", "batch_size",
    "lr", "seconds", "train_loss", "review_perplexity", "review_perplexity_known", "people_daily_perplexity",
    "merged_review_perplexity", "requantized_review_perplexity", "review_unk_share",
)


def perplexities(model: nn.Module, x: torch.Tensor, y: torch.Tensor, unk_id: int = 0,
                 batch_size: int = 16) -> tuple[float, float]:
    """(perplexity over every target of y, perplexity over the targets that are not <unk>) of model on x, y (W, T)."""
    measured = domain_loss(model, x, y, unk_id, batch_size)
    return math.exp(measured["loss"]), math.exp(measured["loss_known"])


def fine_tune(
    model: nn.Module, params: Sequence[nn.Parameter], batches: TokenBatches, steps: int, batch_size: int, lr: float,
    seed: int,
) -> tuple[float, float]:
    """Train params by AdamW on next-token loss (constant lr, clipped); (seconds, mean loss over the last tenth)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)  # every method sees the same windows
    losses = []
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        x, y = batches(batch_size, generator)  # (B, T) each
        loss = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    tail = losses[-max(1, steps // 10):]
    return time.perf_counter() - start, sum(tail) / len(tail)


def trainable_params(model: nn.Module) -> int:
    """Number of parameters that require gradients (a tied tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Evaluator:
    """The held-out windows of both corpora and the rows' shared fields."""

    def __init__(self, review_test: torch.Tensor, people_daily_val: torch.Tensor, block_size: int,
                 windows: int = EVAL_WINDOWS) -> None:
        self.review = sweep.held_out_windows(review_test, block_size, windows)  # x, y (W, T)
        self.people_daily = sweep.held_out_windows(people_daily_val, block_size, windows)  # x, y (W, T)
        self.unk_share = unk_share(self.review[1])

    def row(self, model: nn.Module, **fields: object) -> dict[str, object]:
        """One CSV row: the given fields, then the model's bytes and perplexities on both corpora."""
        review, known = perplexities(model, *self.review)
        people_daily, _ = perplexities(model, *self.people_daily)
        return {**dict.fromkeys(COLUMNS, ""), **fields, "model_bytes": model_bits(model) // 8,
                "review_perplexity": review, "review_perplexity_known": known,
                "people_daily_perplexity": people_daily, "review_unk_share": self.unk_share}

    def review_perplexity(self, model: nn.Module) -> float:
        """Perplexity of model on the held-out reviews."""
        return perplexities(model, *self.review)[0]


def nf4_copy(model: GPT) -> GPT:
    """A copy of model with its block linears in NF4 (blocksize 64); the tied embedding / LM head stays float32."""
    return quantize_model(copy.deepcopy(model), **NF4)


def lora_row(
    base: GPT, base_bits: int, rank: int, evaluator: Evaluator, batches: TokenBatches, steps: int, batch_size: int,
    alpha: float, lr: float, seed: int,
) -> dict[str, object]:
    """Adapt a copy of base with LoRA of rank on TARGETS; its row, with the merged model's review perplexity."""
    torch.manual_seed(seed)  # the initial A
    model = add_lora(copy.deepcopy(base), rank, alpha, TARGETS)
    seconds, loss = fine_tune(model, lora_parameters(model), batches, steps, batch_size, lr, seed)
    method = "lora" if base_bits == 32 else "qlora"
    row = evaluator.row(model, method=method, rank=rank, alpha=alpha, base_bits=base_bits,
                        trainable_params=trainable_params(model), adapter_bytes=adapter_bytes(model), steps=steps,
                        batch_size=batch_size, lr=lr, seconds=round(seconds, 2), train_loss=loss)
    merged = merge_lora(copy.deepcopy(model))  # float32 layers, also on the NF4 base
    row["merged_review_perplexity"] = evaluator.review_perplexity(merged)
    if method == "qlora":  # the merged weights stored as NF4 again
        row["requantized_review_perplexity"] = evaluator.review_perplexity(quantize_model(merged, **NF4))
    return row


def full_row(base: GPT, evaluator: Evaluator, batches: TokenBatches, steps: int, batch_size: int, lr: float,
             seed: int) -> dict[str, object]:
    """Fine-tune every weight of a copy of base; its row (adapter_bytes: the whole new model)."""
    model = copy.deepcopy(base).requires_grad_(True)
    seconds, loss = fine_tune(model, list(model.parameters()), batches, steps, batch_size, lr, seed)
    return evaluator.row(model, method="full", base_bits=32, trainable_params=trainable_params(model),
                         adapter_bytes=model_bits(model) // 8, steps=steps, batch_size=batch_size, lr=lr,
                         seconds=round(seconds, 2), train_loss=loss)


def run_lora(
    out_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None, threads: int = 1,
    ranks: Sequence[int] = RANKS, steps: int = STEPS, seed: int = 0, batch_size: int = BATCH_SIZE,
    alpha: float = ALPHA, lr: float = LORA_LR, full_lr: float = FULL_LR, log: Callable[[str], None] = print,
) -> Path:
    """Adapt the zoo's 2x64 to reviews (none, LoRA and QLoRA per rank, full); returns out_dir/future_lora.csv."""
    ranks = tuple(helpers.check_int("ranks", r, 1, allowed="integers >= 1") for r in ranks)
    steps = helpers.check_int("steps", steps, 1)
    batch_size = helpers.check_int("batch_size", batch_size, 1)
    seed = helpers.check_seed(seed)
    for name, value in (("alpha", alpha), ("lr", lr), ("full_lr", full_lr)):
        helpers.check_number(name, value, 0.0, math.inf, low_open=True, high_open=True,
                             allowed="a finite number > 0")
    with helpers.threads(threads):
        base = zoo_model(MODEL, cache_dir=cache_dir)
        data = prepare_data()  # the zoo's People's Daily split and vocabulary
        review_train, review_test = review_tokens(data.tokenizer)
        log(f"reviews: {len(review_train)} train and {len(review_test)} test characters, <unk> "
            f"{unk_share(review_train):.2%} / {unk_share(review_test):.2%}")
        evaluator = Evaluator(review_test, data.val, base.config.block_size)
        batches = TokenBatches(review_train, base.config.block_size)
        nf4 = nf4_copy(base)
        rows = [evaluator.row(base, method="none", base_bits=32, trainable_params=0, adapter_bytes=0, steps=0)]
        rows += [lora_row(base, 32, r, evaluator, batches, steps, batch_size, alpha, lr, seed) for r in ranks]
        rows.append(evaluator.row(nf4, method="none", base_bits=4, trainable_params=0, adapter_bytes=0, steps=0))
        rows += [lora_row(nf4, 4, r, evaluator, batches, steps, batch_size, alpha, lr, seed) for r in ranks]
        rows.append(full_row(base, evaluator, batches, steps, batch_size, full_lr, seed))
    for row in rows:
        log(f"{row['method']:5} rank {row['rank']!s:2} {row['base_bits']:2}-bit: review ppl "
            f"{row['review_perplexity']:.2f}, People's Daily ppl {row['people_daily_perplexity']:.2f}, "
            f"{row['trainable_params']} trainable, {row['seconds'] or 0} s")
    path = Path(out_dir) / FILE
    write_csv_atomic(path, COLUMNS, rows)
    return path
