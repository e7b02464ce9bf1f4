"""Fine-tune a sequence classifier on DataLoader batches with AdamW; pick the step with the best validation accuracy.

Works for any model called as ``model(input_ids=..., attention_mask=..., labels=...)`` that returns an object with
``.loss`` and ``.logits`` (B, C): transformers' BertForSequenceClassification and mini_llm's alike.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mini_llm.helpers import check_int, eval_mode
from mini_llm.tasks.classify.imbalance import check_class_weights, weighted_cross_entropy


@dataclass(frozen=True)
class FineTuneConfig:
    """Settings of one fine-tuning run."""

    epochs: int = 2  # passes over the training set
    batch_size: int = 32  # reviews per step
    lr: float = 1e-3  # peak learning rate of AdamW, reached after the warm-up
    warmup_fraction: float = 0.1  # share of the steps with linear warm-up; then linear decay to 0
    weight_decay: float = 0.01  # AdamW's decoupled weight decay, on matrices only (not biases, LayerNorm)
    max_length: int = 128  # tokens kept per review ([CLS] and [SEP] included); longer reviews are truncated
    eval_every: int = 100  # steps between validation evaluations (and one at the end)
    grad_clip: float = 1.0  # clip the global gradient norm to this
    seed: int = 0  # seeds the shuffling and the dropout

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "eval_every"):
            check_int(name, getattr(self, name), 1, kinds=int)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """torch's AdamW with weight decay on the matrices only (BERT's recipe: no decay on biases and LayerNorm)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def linear_warmup_decay(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: rises linearly to 1 over ``warmup`` steps, then falls linearly to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@torch.no_grad()
def predict_logits(model: torch.nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(logits (N, C), labels (N,), mean loss) over a loader, in eval mode (no dropout)."""
    logits, labels, loss_sum = [], [], 0.0
    with eval_mode(model):
        for batch in loader:
            out = model(**batch)
            logits.append(out.logits.float())  # (B, C)
            labels.append(batch["labels"])  # (B,)
            loss_sum += out.loss.item() * len(batch["labels"])
    all_labels = torch.cat(labels)  # (N,)
    return torch.cat(logits), all_labels, loss_sum / len(all_labels)


def fine_tune(
    model: torch.nn.Module,
    train_loader: DataLoader,
    validation_loader: DataLoader,
    config: FineTuneConfig,
    progress: bool = False,
    class_weights: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; it ends with the weights of the best validation accuracy. Returns the history.

    With ``class_weights`` (C,) the training loss is the class-weighted cross-entropy (``weighted_cross_entropy``)
    instead of the model's own loss; the validation loss stays unweighted.
    """
    weights = None if class_weights is None else check_class_weights(class_weights, model.config.num_labels)
    torch.manual_seed(config.seed)  # dropout masks
    optimizer = adamw(model, config.lr, config.weight_decay)
    total = config.epochs * len(train_loader)
    warmup = int(config.warmup_fraction * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_warmup_decay(s, total, warmup))
    history: list[dict[str, Any]] = []
    best_accuracy, best_state = -1.0, None
    window: list[float] = []  # training losses since the last evaluation
    start, step = time.perf_counter(), 0
    model.train()
    with tqdm(total=total, desc="fine-tune", disable=not progress) as bar:
        for _ in range(config.epochs):
            for batch in train_loader:
                out = model(**batch)
                loss = out.loss if weights is None else weighted_cross_entropy(out.logits, batch["labels"], weights)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                schedule.step()
                step += 1
                window.append(loss.item())
                bar.update()
                if step % config.eval_every and step != total:
                    continue
                logits, labels, val_loss = predict_logits(model, validation_loader)
                val_accuracy = (logits.argmax(-1) == labels).double().mean().item()
                history.append(
                    {
                        "step": step,
                        "train_loss": sum(window) / len(window),
                        "val_loss": val_loss,
                        "val_accuracy": val_accuracy,
                        "seconds": time.perf_counter() - start,
                    }
                )
                window = []
                bar.set_postfix(val_accuracy=f"{val_accuracy:.4f}")
                if val_accuracy > best_accuracy:
                    best_accuracy, best_state = val_accuracy, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return history
