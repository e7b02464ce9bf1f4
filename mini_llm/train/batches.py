"""Batches for next-token prediction cut from one long 1-D token sequence."""

from __future__ import annotations

from collections.abc import Callable

import torch

# A batch source: (batch_size, generator) -> (x, y), both (B, T) int64; the trainer owns the generator.
BatchFn = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def random_batch(
    tokens: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows of the sequence: x = tokens[i : i + T], y = tokens[i + 1 : i + T + 1] (the next tokens)."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 1 or tokens.dtype != torch.long:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a 1-D int64 (LongTensor) sequence, got {got}")
    if not isinstance(block_size, int) or not 1 <= block_size < len(tokens):
        raise ValueError(
            f"block_size must be an integer in [1, len(tokens) - 1 = {len(tokens) - 1}], got {block_size!r}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    index = starts[:, None] + offsets[None, :]  # (B, T)
    return tokens[index], tokens[index + 1]  # (B, T), (B, T)


class TokenBatches:
    """A ``BatchFn`` over a 1-D token tensor: ``TokenBatches(tokens, block_size)(batch_size, generator)``."""

    def __init__(self, tokens: torch.Tensor, block_size: int) -> None:
        random_batch(tokens, block_size, 1, torch.Generator())  # validate now, not at the first step
        self.tokens = tokens  # (N,) int64
        self.block_size = block_size  # T: context length of each example

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (x, y), each (batch_size, block_size)."""
        return random_batch(self.tokens, self.block_size, batch_size, generator)

    def __repr__(self) -> str:
        return f"TokenBatches(tokens={len(self.tokens)}, block_size={self.block_size})"
