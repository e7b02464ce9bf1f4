"""Store every linear layer of a model's blocks in one format, block after block, with GPTQ and AWQ calibrated as
in their papers.

Blocks are processed in order. For a calibrated format, the inputs of the block's linear layers are recorded on
calibration batches run through the model as it is at that point (earlier blocks already stored in the format), as
GPTQ's sequential reference does; the forward pass stops at the end of the block. GPTQ then picks each layer's codes
from its own inputs. AWQ searches one scale vector per fold (a previous operation and the linear layers that read its
output: a LayerNorm and q/k/v, up_proj and down_proj, v and the output projection), folds it into the model with
``fold_scales`` (the model computes the same function) and stores the layers by round-to-nearest; layers outside any
fold are stored by plain round-to-nearest, as in the reference code. The weights are replaced in place by what the
format stores, decoded to float: the model then computes exactly what the format's kernels compute, up to the order
of float summation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from mini_llm.quant.awq import awq_search, fold_scales
from mini_llm.quant.formats import WeightFormat, parse_format, store_matrix

Fold = tuple[str, tuple[str, ...]]  # (previous operation, linear layers reading its output), names inside a block


class _BlockDone(Exception):
    """Raised by a forward hook at the end of the block whose inputs are recorded."""


@torch.no_grad()
def record_inputs(
    model: nn.Module, block: nn.Module, linears: dict[str, nn.Linear], calibration: Iterable[object],
    forward: Callable[[nn.Module, object], object],
) -> dict[str, torch.Tensor]:
    """The inputs (n, in) float32 of each linear layer of block over the calibration batches (run as forward(model,
    batch), stopped after the block)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in linears}

    def keep(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple) -> None:
            seen[name].append(args[0].detach().float().reshape(-1, module.in_features))  # (tokens, in)
        return hook

    def stop(module: nn.Module, args: tuple, output: object) -> None:
        raise _BlockDone

    handles = [m.register_forward_pre_hook(keep(name)) for name, m in linears.items()]
    handles.append(block.register_forward_hook(stop))
    try:
        for batch in calibration:
            try:
                forward(model, batch)
            except _BlockDone:
                pass
    finally:
        for handle in handles:
            handle.remove()
    if any(not parts for parts in seen.values()):
        raise ValueError("calibration must hold at least one batch that runs through every linear layer")
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

    calibration and forward(model, batch) are needed by GPTQ and AWQ (and ignored otherwise; pass a list, it is
    read once per block); folds (previous operation, linear layers) name AWQ's folds inside a block.
    """
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    calibration = list(calibration)
    if fmt.calibrated and (not calibration or forward is None):
        raise ValueError(f"{fmt.spec} needs calibration batches and forward(model, batch)")
    names = {id(m): name for name, m in model.named_modules()}
    bits: dict[str, int] = {}
    for block in blocks:
        linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
        inputs = record_inputs(model, block, linears, calibration, forward) if fmt.calibrated else {}
        if fmt.method == "awq":
            _apply_awq(block, linears, inputs, fmt, folds)
        for name, layer in linears.items():
            stored, layer_bits = store_matrix(layer.weight, fmt, inputs.get(name))
            layer.weight.copy_(stored)
            bits[names[id(layer)]] = layer_bits
    return bits
