"""The texts chapter 8 measures the zoo on, as ids of its character vocabulary, and the loss with <unk> targets apart.

The zoo learned People's Daily only; the shopping reviews (``load_reviews``) are the other domain. Review characters
outside the news vocabulary become ``<unk>``: a model that never saw ``<unk>`` as a target pays heavily for them, so
the loss is also reported over the other targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm import helpers
from mini_llm.data import CharTokenizer, load_reviews


def review_tokens(tokenizer: CharTokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """The reviews' train and test splits as ids (N,) of tokenizer, one review per line; unknown characters -> <unk>."""
    splits = load_reviews()
    return tuple(torch.tensor(tokenizer.encode("\n".join(part.texts)), dtype=torch.long)
                 for part in (splits.train, splits.test))


def unk_share(tokens: torch.Tensor, unk_id: int = 0) -> float:
    """Share of the ids (N,) that are the unknown token."""
    return float((tokens == unk_id).double().mean())


@torch.no_grad()
def domain_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, unk_id: int = 0,
                batch_size: int = 16) -> dict[str, float]:
    """Mean nats per target of model on x, y (W, T): over all targets, over the non-<unk> ones; the <unk> share."""
    nats = []
    with helpers.eval_mode(model):
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size]).logits  # (B, T, V)
            nats.append(F.cross_entropy(logits.flatten(0, 1), y[i : i + batch_size].flatten(), reduction="none"))
    every = torch.cat(nats).double()  # (W * T,)
    known = y.flatten() != unk_id  # (W * T,)
    return {"loss": float(every.mean()), "loss_known": float(every[known].mean()) if known.any() else float("nan"),
            "unk_share": 1.0 - float(known.double().mean())}
