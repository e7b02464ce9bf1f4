"""LoRA (Hu et al. 2021, arXiv 2106.09685): a frozen linear layer plus a trainable low-rank update.

    y = base(x) + (alpha / r) · x Aᵀ Bᵀ,   A (r, in_features), B (out_features, r)

A starts Kaiming-uniform and B at zero (as in Microsoft's loralib and PEFT), so an adapted layer starts equal to its
base; only A and B are trained. The base may be any module mapping (..., in_features) -> (..., out_features): a torch
nn.Linear, or a k-bit ``mini_llm.quant.QuantizedLinear`` (LoRA on a frozen 4-bit NormalFloat base is QLoRA, Dettmers
et al. 2023, arXiv 2305.14314). The shape is read from the base's ``in_features`` / ``out_features`` or else from a
2-D ``weight`` (out, in), so this module needs nothing of quant.

``add_lora`` wraps the chosen layers of a model in place and freezes every other parameter; ``merge_lora`` folds each
update back into a plain nn.Linear (W + (alpha / r) · B A); ``lora_state_dict`` / ``adapter_bytes`` are what one
adapted domain costs to store.

May import: helpers (and torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mini_llm.helpers import check_int, check_number, is_int

# The attention and MLP linears of GPT (c_attn, attn.c_proj, c_fc, mlp.c_proj) and Llama; the LM head (tied to the
# token embedding) and the embeddings are left alone.
DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                   "down_proj")


def layer_features(module: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a linear-like module, from those attributes or a 2-D weight (out, in), or None."""
    n_in, n_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if is_int(n_in) and is_int(n_out):
        return int(n_in), int(n_out)
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Embedding) or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    return int(weight.shape[1]), int(weight.shape[0])


def base_weight(base: nn.Module) -> torch.Tensor:
    """The (out_features, in_features) weight a base layer computes with: nn.Linear's weight, a quantized layer's
    ``dequantized_weight()``, or a 2-D ``weight``; TypeError for anything else."""
    if isinstance(base, nn.Linear):
        return base.weight
    dequantized = getattr(base, "dequantized_weight", None)
    if callable(dequantized):
        return dequantized()
    weight = getattr(base, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return weight
    raise TypeError(f"base must be an nn.Linear, have dequantized_weight() or a 2-D weight, got {type(base).__name__}")


def _factor_options(base: nn.Module) -> dict[str, object]:
    """Device and dtype for A and B: those of the base's floating weight, else float32 on the base's device."""
    weight = getattr(base, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        return {"device": weight.device, "dtype": weight.dtype}
    tensors = [*base.parameters(), *base.buffers()]
    return {"device": tensors[0].device if tensors else torch.device("cpu"), "dtype": torch.float32}


def check_alpha(alpha: float | None, rank: int) -> float:
    """alpha as a float (None means alpha = rank, a scaling of 1); ValueError unless finite and > 0."""
    if alpha is None:
        return float(rank)
    return check_number("alpha", alpha, 0.0, math.inf, low_open=True, high_open=True,
                        allowed="None or a finite number > 0")


def check_rank(rank: int, features: tuple[int, int], layer: str = "the layer") -> int:
    """rank as an int in [1, min(in_features, out_features)]; ValueError naming rank and the layer otherwise."""
    limit = min(features)
    return check_int("rank", rank, 1, limit, allowed=f"an integer in [1, {limit}] (min(in, out) of {layer})")


class LoRALinear(nn.Module):
    """base(x) + (alpha / rank) · dropout(x) Aᵀ Bᵀ with the base frozen and A (rank, in), B (out, rank) trainable."""

    def __init__(self, base: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        features = layer_features(base)
        if features is None:
            raise TypeError(
                f"base must be a linear layer (in_features/out_features or a 2-D weight), got {type(base).__name__}"
            )
        self.in_features, self.out_features = features
        self.rank = check_rank(rank, features)
        self.alpha = check_alpha(alpha, self.rank)
        dropout = check_number("dropout", dropout, 0.0, 1.0, high_open=True)
        self.scaling = self.alpha / self.rank
        self.base = base.requires_grad_(False)
        options = _factor_options(base)
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, **options))  # (r, K)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, **options))  # (N, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and loralib: U(±1/√K)
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> base(x) + scaling · dropout(x) Aᵀ Bᵀ, (..., out_features)."""
        y = self.base(x)  # (..., N)
        h = self.lora_dropout(x).to(self.lora_A.dtype) @ self.lora_A.t()  # (..., r)
        return y + (self.scaling * (h @ self.lora_B.t())).to(y.dtype)  # (..., N)

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / rank) · B A of the weight, (out_features, in_features)."""
        return self.scaling * (self.lora_B @ self.lora_A)  # (N, K)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing W + (alpha / rank) · B A (and the base's bias).

        A quantized base is dequantized first: the merged layer is a float32 layer, no longer k-bit (quantizing it
        again rounds the sum, which loses part of the update). Its parameters are frozen, like the base's.
        """
        weight = base_weight(self.base)  # (N, K)
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        bias = getattr(self.base, "bias", None)
        layer = nn.Linear(self.in_features, self.out_features, bias=bias is not None, device=weight.device,
                          dtype=dtype)
        layer.weight.copy_(weight.float() + self.delta_weight().float())  # (N, K)
        if bias is not None:
            layer.bias.copy_(bias)
        return layer.requires_grad_(False)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def _targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """targets as a tuple of non-empty names; ValueError naming targets otherwise."""
    names = (targets,) if isinstance(targets, str) else tuple(targets) if isinstance(targets, Sequence) else None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"targets must be a module name or a sequence of non-empty module names, got {targets!r}")
    return names


def _matches(name: str, targets: Sequence[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The LoRALinear layers of model by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def add_lora(
    model: nn.Module, rank: int, alpha: float | None = None, targets: str | Sequence[str] = DEFAULT_TARGETS,
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap every linear layer named by targets (names or name suffixes) in a LoRALinear, in place; freeze the rest.

    Afterwards only the A and B factors require gradients. alpha=None means alpha = rank (scaling 1). Returns model.
    """
    names = _targets(targets)
    if lora_layers(model):
        raise ValueError(f"model already has LoRA layers ({', '.join(lora_layers(model))}): merge_lora(model) first")
    chosen = {name: m for name, m in model.named_modules()
              if name and _matches(name, names) and layer_features(m) is not None}
    if not chosen:
        raise ValueError(f"targets must name at least one linear layer of the model, got {names!r}")
    check_int("rank", rank, 1)
    for name, module in chosen.items():  # every check before the model changes
        check_rank(rank, layer_features(module), repr(name))
    check_alpha(alpha, rank)
    check_number("dropout", dropout, 0.0, 1.0, high_open=True)
    model.requires_grad_(False)
    for name, module in chosen.items():
        _replace(model, name, LoRALinear(module, rank, alpha, dropout))
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable factors A and B of every LoRA layer of model (what the optimizer gets)."""
    return [p for layer in lora_layers(model).values() for p in (layer.lora_A, layer.lora_B)]


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear of model (in place) by a plain nn.Linear holding W + (alpha / r) · B A; returns model.

    A QuantizedLinear base is dequantized: its merged layer is float32 (see ``LoRALinear.merged``). A model that is
    itself a LoRALinear comes back as its merged nn.Linear. ValueError if model has no LoRA layer.
    """
    if isinstance(model, LoRALinear):
        return model.merged()
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers to merge (add_lora adds them)")
    for name, layer in layers.items():
        _replace(model, name, layer.merged())
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors only, under the model's state_dict names (``model.load_state_dict(sd, strict=False)``)."""
    return {f"{name}.{factor}": getattr(layer, factor).detach().clone()
            for name, layer in lora_layers(model).items() for factor in ("lora_A", "lora_B")}


def adapter_bytes(model: nn.Module) -> int:
    """Bytes of the adapter tensors of model (A and B of every LoRA layer, at their dtype)."""
    return sum(t.numel() * t.element_size() for t in lora_state_dict(model).values())
