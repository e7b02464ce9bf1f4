"""The anatomy of one training step, measured: FLOPs, the memory of its state, and the activations kept for backward.

- ``matmul_params``: the parameters every token multiplies (linear weights, the LM head; not the embedding lookup).
- ``predicted_step_flops``: 6 x matmul params + 12 x layers x T x C per token (the attention scores and their use,
  the whole T x T matrix as the explicit formula computes it), times the tokens of the batch.
- ``measured_step_flops``: what torch's ``FlopCounterMode`` counts in one forward and backward.
- ``state_bytes``: parameters, gradients and the optimizer's per-parameter state (Adam: two moments).
- ``saved_activation_bytes``: the bytes of the tensors autograd keeps for the backward pass (parameters excluded),
  collected with ``torch.autograd.graph.saved_tensors_hooks``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of a model returning logits (B, T, V) or an output with .logits."""
    logits = getattr(out := model(x), "logits", out)  # (B, T, V)
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def matmul_params(model: nn.Module) -> int:
    """Weights of every nn.Linear (the LM head included, a tied matrix once): what each token multiplies."""
    seen = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)}
    return sum(seen.values())


def predicted_step_flops(model: nn.Module, batch: int, length: int) -> int:
    """6 N + 12 L T C FLOPs per token of a GPT's training step (N = matmul_params), times batch x length tokens."""
    config = model.config
    per_token = 6 * matmul_params(model) + 12 * config.n_layer * length * config.n_embd
    return per_token * batch * length


def measured_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = _loss) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs that FlopCounterMode counts for one step on x, y (B, T); no update."""
    with FlopCounterMode(display=False) as counter:
        loss = loss_fn(model, x, y)
        forward = counter.get_total_flops()
        loss.backward()
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops()


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes of parameters, their gradients and the optimizer's state tensors (after at least one step)."""
    params = list(model.parameters())  # shared tensors appear once
    optimizer_bytes = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            optimizer_bytes += sum(t.numel() * t.element_size() for t in state.values()
                                   if isinstance(t, torch.Tensor) and t.dim() > 0)
    return {
        "parameters": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer": optimizer_bytes,
    }


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn = _loss) -> int:
    """Bytes autograd saves for backward in one forward on x, y (B, T): distinct storages, parameters left out."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and storage.nbytes():
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = loss_fn(model, x, y)
    del loss  # frees the graph and what it saved
    return sum(storages.values())
