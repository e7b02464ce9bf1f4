"""Fine-tune a sequence classifier on DataLoader batches with AdamW; pick the step with the best validation accuracy.

The fine-tuning is a configuration of ``mini_llm.train.Trainer`` (its optimizer, schedule, clipping and evaluation
swapped for BERT's recipe), not a loop of its own.

Works for any model called as ``model(input_ids=..., attention_mask=..., labels=...)`` that returns an object with
``.loss`` and ``.logits`` (B, C): transformers' BertForSequenceClassification and mini_llm's alike.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from mini_llm.helpers import check_int, eval_mode
from mini_llm.tasks.classify.imbalance import check_class_weights, weighted_cross_entropy
from mini_llm.train import Trainer, TrainerConfig


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


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    """Fraction of the loader's examples whose most probable class is the label, in eval mode."""
    logits, labels, _ = predict_logits(model, loader)
    return (logits.argmax(-1) == labels).double().mean().item()


def batch_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """The model's own loss on a collated batch (input_ids, attention_mask, labels): a Trainer ``loss_fn``."""
    return model(**batch).loss


class LoaderBatches:
    """A Trainer batch source over a DataLoader: its batches in order, epoch after epoch, as (batch, labels).

    The loader's own generator orders each epoch (``iter`` is called when the previous epoch is used up), so the
    Trainer's batch generator and size are not used.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.batches: Iterator[dict[str, torch.Tensor]] | None = None

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        batch = next(self.batches, None) if self.batches is not None else None
        if batch is None:  # the first call, or the end of an epoch
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return batch, batch["labels"]


@dataclass
class LinearWarmupDecay:
    """The Trainer schedule of ``linear_warmup_decay``: lr times the factor of the step (as torch's LambdaLR)."""

    lr: float  # peak learning rate
    total: int  # steps in all
    warmup: int  # steps of linear warm-up

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr * linear_warmup_decay(step, self.total, self.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr


def fine_tune(
    model: torch.nn.Module,
    train_loader: DataLoader,
    validation_loader: DataLoader,
    config: FineTuneConfig,
    progress: bool = False,
    class_weights: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; it ends with the weights of the best validation accuracy. Returns the history.

    A ``mini_llm.train.Trainer`` configuration: torch's AdamW (``adamw``), the linear warm-up and decay
    (``LinearWarmupDecay``), torch's gradient clipping, the loader's batches, an evaluation of the validation
    accuracy every ``eval_every`` steps and at the end. Dropout draws from torch's global generator seeded with
    ``config.seed``, which is left where the training leaves it. With ``class_weights`` (C,) the training loss is
    the class-weighted cross-entropy (``weighted_cross_entropy``) instead of the model's own loss; the validation
    loss stays unweighted.
    """
    weights = None if class_weights is None else check_class_weights(class_weights, model.config.num_labels)
    total = config.epochs * len(train_loader)
    warmup = int(config.warmup_fraction * total)
    trainer_config = TrainerConfig(
        max_steps=total, batch_size=config.batch_size, lr=config.lr, warmup_steps=0, min_lr=0.0,
        weight_decay=config.weight_decay, grad_clip=config.grad_clip, eval_interval=config.eval_every,
        seed=config.seed, progress=progress,
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"accuracy": -1.0, "state": None}
    last_eval = [0]  # the step of the previous evaluation: the training losses since then are averaged
    start = time.perf_counter()

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if weights is None:
            return batch_loss(model, batch, labels)
        return weighted_cross_entropy(model(**batch).logits, labels, weights)

    def evaluate(model: torch.nn.Module) -> dict[str, Any]:
        logits, labels, val_loss = predict_logits(model, validation_loader)
        val_accuracy = (logits.argmax(-1) == labels).double().mean().item()
        window = [record["train_loss"] for record in trainer.history[last_eval[0]:]]
        last_eval[0] = trainer.step
        history.append({"step": trainer.step, "train_loss": sum(window) / len(window), "val_loss": val_loss,
                        "val_accuracy": val_accuracy, "seconds": time.perf_counter() - start})
        if val_accuracy > best["accuracy"]:
            best.update(accuracy=val_accuracy, state=copy.deepcopy(model.state_dict()))
        return {"loss": val_loss, "accuracy": val_accuracy}

    def clip(params: list[torch.Tensor], max_norm: float) -> float:  # torch's, over the model's parameter order
        return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))

    trainer = Trainer(
        model, trainer_config, LoaderBatches(train_loader), loss_fn=loss_fn,
        optimizer=lambda model, cfg: adamw(model, cfg.lr, cfg.weight_decay),
        schedule=lambda cfg: LinearWarmupDecay(cfg.lr, total, warmup), clip=clip, evaluate=evaluate,
    )
    torch.manual_seed(config.seed)  # dropout masks: the model's generators start from the seeded global state
    trainer.model_rng = {"cpu": torch.get_rng_state()}
    if trainer.device.type == "cuda":
        trainer.model_rng["cuda"] = torch.cuda.get_rng_state(trainer.device)
    trainer.train()
    torch.set_rng_state(trainer.model_rng["cpu"])  # where the dropout masks left the global generator
    if "cuda" in trainer.model_rng:
        torch.cuda.set_rng_state(trainer.model_rng["cuda"], trainer.device)
    model.load_state_dict(best["state"])
    return history
