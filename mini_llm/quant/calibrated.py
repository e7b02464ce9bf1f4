"""Store every linear layer of a model's blocks in one format, block after block, with GPTQ and AWQ calibrated as
in their papers.

Blocks are processed in order, each feeding the next (a transformer's list of layers). For a calibrated format, the
calibration batches run through the model once, stopped at the first block, whose call arguments are kept; each
block is then called on its kept arguments to record the inputs of its linear layers, stored, and called again to
give the next block its arguments (hidden states first, the rest such as positions or masks unchanged): the inputs
of a block come from the earlier blocks already stored in the format, as in GPTQ's sequential reference code.
GPTQ then picks each layer's codes from its own inputs. AWQ searches one scale vector per fold (a previous operation
and the linear layers that read its output: a LayerNorm and q/k/v, up_proj and down_proj, v and the output
projection), folds it into the model with ``fold_scales`` (the model computes the same function) and stores the
layers by round-to-nearest; layers outside any fold are stored by plain round-to-nearest, as in the reference code.
The weights are replaced in place by what the format stores, decoded to float: the model then computes exactly what
the format's kernels compute, up to the order of float summation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from mini_llm.quant.awq import awq_search, fold_scales
from mini_llm.quant.formats import WeightFormat, parse_format, store_matrix

Fold = tuple[str, tuple[str, ...]]  # (previous operation, linear layers reading its output), names inside a block
Call = tuple[tuple, dict]  # the positional and keyword arguments of one call of a block


class _BlockReached(Exception):
    """Raised by a forward pre-hook when the model reaches the block whose arguments are kept."""


@torch.no_grad()
def block_calls(
    model: nn.Module, block: nn.Module, calibration: Iterable[object], forward: Callable[[nn.Module, object], object]
) -> list[Call]:
    """The arguments block is called with for each calibration batch (run as forward(model, batch), stopped there)."""
    calls: list[Call] = []

    def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
        calls.append((args, kwargs))
        raise _BlockReached

    handle = block.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        for batch in calibration:
            try:
                forward(model, batch)
            except _BlockReached:
                pass
    finally:
        handle.remove()
    if not calls:
        raise ValueError("calibration must hold at least one batch that reaches the first block")
    return calls


@torch.no_grad()
def next_calls(block: nn.Module, calls: Sequence[Call]) -> list[Call]:
    """The arguments of the block after block: block's hidden-state output in place of its first argument."""
    following = []
    for args, kwargs in calls:
        out = block(*args, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out  # (B, T, C); blocks may also return a cache or weights
        following.append(((hidden, *args[1:]), kwargs))
    return following


@torch.no_grad()
def record_inputs(block: nn.Module, linears: dict[str, nn.Linear], calls: Sequence[Call]) -> dict[str, torch.Tensor]:
    """The inputs (n, in) float32 of each linear layer of block over its calls (from block_calls or next_calls)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in linears}

    def keep(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            seen[name].append(args[0].detach().float().reshape(-1, module.in_features))  # (tokens, in)
        return hook

    handles = [m.register_forward_pre_hook(keep(name)) for name, m in linears.items()]
    try:
        for args, kwargs in calls:
            block(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name, parts in seen.items() if not parts]
    if missing:
        raise ValueError(f"the block's calls never ran its linear layers {missing}")
    return {name: torch.cat(parts) for name, parts in seen.items()}


def _apply_awq(block: nn.Module, linears: dict[str, nn.Linear], inputs: dict[str, torch.Tensor], fmt: WeightFormat,
               folds: Sequence[Fold]) -> int:
    """Search and fold AWQ's scales for every applicable fold of block; returns how many folds were applied."""
    applied = 0
    for prev_name, names in folds:
        targets = [linears.get(name) for name in names]
        prev = block.get_submodule(prev_name) if prev_name else None
        if prev is None or any(t is None for t in targets):
            continue
        width = prev.out_features if isinstance(prev, nn.Linear) else prev.weight.numel()
        if any(t.in_features != width for t in targets):  # e.g. v -> o with grouped-query attention
            continue
        weight = torch.cat([t.weight for t in targets])  # (sum out, in) the layers reading the same input
        scales = awq_search(weight, inputs[names[0]], fmt.bits, fmt.name, fmt.blocksize)  # (in,)
        fold_scales(prev, targets, scales)
        applied += 1
    return applied


@torch.no_grad()
def store_blocks(
    model: nn.Module,
    blocks: Sequence[nn.Module],
    fmt: WeightFormat | str,
    calibration: Iterable[object] = (),
    forward: Callable[[nn.Module, object], object] | None = None,
    folds: Sequence[Fold] = (),
) -> dict[str, int]:
    """Replace the weight of every nn.Linear inside blocks (in place) by what fmt stores; {layer name: stored bits}.

    blocks must follow each other in the forward pass, each feeding the next. calibration and forward(model, batch)
    are needed by GPTQ and AWQ (and ignored otherwise); folds (previous operation, linear layers) name AWQ's folds
    inside a block.
    """
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    calibration = list(calibration)
    if fmt.calibrated and (not calibration or forward is None):
        raise ValueError(f"{fmt.spec} needs calibration batches and forward(model, batch)")
    names = {id(m): name for name, m in model.named_modules()}
    bits: dict[str, int] = {}
    calls = block_calls(model, blocks[0], calibration, forward) if fmt.calibrated and blocks else []
    for index, block in enumerate(blocks):
        linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
        inputs = record_inputs(block, linears, calls) if fmt.calibrated else {}
        if fmt.method == "awq":
            _apply_awq(block, linears, inputs, fmt, folds)
        for name, layer in linears.items():
            stored, layer_bits = store_matrix(layer.weight, fmt, inputs.get(name))
            layer.weight.copy_(stored)
            bits[names[id(layer)]] = layer_bits
        if fmt.calibrated and index + 1 < len(blocks):
            calls = next_calls(block, calls)  # the stored block's outputs feed the next one
    return bits
