"""Helpers shared by the converters: reading a Hugging Face config, mapping activations, loading a state dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import nn

# Hugging Face activation names (transformers.activations.ACT2FN) that compute what a mini_llm activation computes.
HF_ACTIVATIONS = {
    "gelu": "gelu",  # exact x Φ(x) with erf
    "gelu_python": "gelu",  # the same formula written in Python
    "gelu_new": "gelu_new",  # tanh approximation (GPT-2)
    "gelu_pytorch_tanh": "gelu_new",  # the same approximation, torch's fused kernel
    "relu": "relu",
}

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def config_fields(hf_config: Any) -> dict[str, Any]:
    """The fields of a transformers PretrainedConfig, or a copy of a mapping read from a config.json."""
    if isinstance(hf_config, Mapping):
        return dict(hf_config)
    if hasattr(hf_config, "to_dict"):
        return hf_config.to_dict()
    raise TypeError(f"hf_config must be a transformers config or a mapping, got {type(hf_config).__name__}")


def fields_or_defaults(fields: Mapping[str, Any], defaults: Any, names: Mapping[str, str]) -> dict[str, Any]:
    """{mini_llm field: the Hugging Face field's value, else the mini_llm default} for names (mini_llm -> HF name)."""
    return {name: fields.get(hf_name, getattr(defaults, name)) for name, hf_name in names.items()}


def check_model_type(fields: Mapping[str, Any], expected: str) -> None:
    """Raise ValueError unless the config's model_type is expected (a config without one is accepted)."""
    model_type = fields.get("model_type")
    if model_type not in (None, "", expected):
        raise ValueError(f"model_type must be {expected!r}, got {model_type!r}")


def reject(fields: Mapping[str, Any], name: str, supported: Any, default: Any) -> None:
    """Raise ValueError when fields[name] (default if absent) is not the one value mini_llm supports."""
    value = fields.get(name, default)
    if value != supported:
        raise ValueError(f"{name}={value!r} is not supported by mini_llm; only {name}={supported!r} is")


def activation_from_hf(field: str, name: str) -> str:
    """mini_llm's name for the Hugging Face activation ``name`` read from config field ``field``."""
    if name not in HF_ACTIVATIONS:
        raise ValueError(f"{field}={name!r} is not supported by mini_llm; allowed: {sorted(HF_ACTIVATIONS)}")
    return HF_ACTIVATIONS[name]


def load_converted(target: ModuleT, state: Mapping[str, torch.Tensor], like: nn.Module) -> ModuleT:
    """Load state into target (strict: a missing or extra key is an error), then match like's device, dtype, mode.

    ``load_state_dict`` copies every tensor into target's own parameters, so target shares no storage with the
    model the state came from.
    """
    target.load_state_dict(state, strict=True)
    reference = next(like.parameters(), None)
    if reference is not None:
        target.to(device=reference.device, dtype=reference.dtype)
    return target.train(like.training)
