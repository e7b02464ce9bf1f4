"""Learning-rate schedule: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def lr_at(step: int, max_lr: float, warmup_steps: int, decay_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate for optimisation step ``step`` (0-based).

    - warm-up, step < W:        lr = max_lr (step + 1) / W      (reaches max_lr at step W - 1, never 0)
    - cosine, W <= step <= D:   lr = min_lr + (max_lr - min_lr) (1 + cos(π (step - W) / (D - W))) / 2
    - after, step > D:          lr = min_lr
    with W = warmup_steps and D = decay_steps.
    """
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / (decay_steps - warmup_steps)  # in [0, 1)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class WarmupCosineSchedule:
    """The schedule of ``lr_at`` as an object; it holds no state, so a checkpoint only needs the step."""

    max_lr: float  # peak learning rate, reached at the end of warm-up
    warmup_steps: int  # W: steps of linear warm-up (0 = none)
    decay_steps: int  # D: step at which the cosine reaches min_lr (usually the last step); D >= W
    min_lr: float = 0.0  # floor after the decay

    def __post_init__(self) -> None:
        if not (isinstance(self.max_lr, int | float) and math.isfinite(self.max_lr) and self.max_lr >= 0):
            raise ValueError(f"max_lr must be a finite number >= 0, got {self.max_lr!r}")
        if not (isinstance(self.min_lr, int | float) and 0 <= self.min_lr <= self.max_lr):
            raise ValueError(f"min_lr must be a number in [0, max_lr={self.max_lr}], got {self.min_lr!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.decay_steps, int) or self.decay_steps < self.warmup_steps:
            raise ValueError(
                f"decay_steps must be an integer >= warmup_steps={self.warmup_steps}, got {self.decay_steps!r}"
            )

    def __call__(self, step: int) -> float:
        """Learning rate at ``step``."""
        return lr_at(step, self.max_lr, self.warmup_steps, self.decay_steps, self.min_lr)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set the learning rate of every parameter group of ``optimizer`` for ``step``; return it."""
        lr = self(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr
