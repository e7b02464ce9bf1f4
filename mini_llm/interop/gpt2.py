"""Convert between transformers' GPT2LMHeadModel and mini_llm's GPT, both ways.

The parameter names are the same (mini_llm's GPT uses GPT-2's); only the layout differs: Hugging Face stores
c_attn, c_proj and c_fc as Conv1D with weight (in, out), mini_llm as nn.Linear with weight (out, in).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from mini_llm.interop.common import (
    activation_from_hf,
    check_model_type,
    config_fields,
    fields_or_defaults,
    load_converted,
    reject,
)
from mini_llm.nn.gpt import GPT, GPTConfig

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

CONV1D_WEIGHT = re.compile(r"\.(c_attn|c_proj|c_fc)\.weight$")  # Conv1D (in, out) <-> Linear (out, in)
GPT2_FIELDS = {  # GPTConfig field -> the transformers GPT2Config field that holds the same number
    "vocab_size": "vocab_size",
    "block_size": "n_positions",
    "n_layer": "n_layer",
    "n_head": "n_head",
    "n_embd": "n_embd",
    "n_inner": "n_inner",
    "layer_norm_epsilon": "layer_norm_epsilon",
}
HF_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older transformers versions
GPT2_DEFAULT_EOS = 50256  # GPT-2's <|endoftext|>, its bos and eos token


def gpt2_config_from_hf(hf_config: GPT2Config | Mapping[str, Any], attn_impl: str = "sdpa") -> GPTConfig:
    """A GPTConfig equal to a transformers GPT2Config (or its config.json); ValueError for what GPT lacks."""
    fields = config_fields(hf_config)
    check_model_type(fields, "gpt2")
    reject(fields, "scale_attn_weights", True, True)
    reject(fields, "scale_attn_by_inverse_layer_idx", False, False)
    reject(fields, "reorder_and_upcast_attn", False, False)
    reject(fields, "add_cross_attention", False, False)
    dropouts = {name: fields.get(name, 0.1) for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(set(dropouts.values())) > 1:
        raise ValueError(f"mini_llm's GPT has one dropout rate; resid_pdrop, embd_pdrop, attn_pdrop differ: {dropouts}")
    defaults = GPTConfig()
    return GPTConfig(
        **fields_or_defaults(fields, defaults, GPT2_FIELDS),
        activation=activation_from_hf("activation_function", fields.get("activation_function", "gelu_new")),
        dropout=dropouts["resid_pdrop"],
        bias=True,  # Hugging Face's GPT-2 always has biases
        tie_weights=fields.get("tie_word_embeddings", True),
        attn_impl=attn_impl,
    )


def gpt2_config_to_hf(config: GPTConfig, **overrides: Any) -> GPT2Config:
    """A transformers GPT2Config equal to a GPTConfig; overrides set fields GPTConfig lacks (e.g. pad_token_id).

    bos/eos default to GPT-2's 50256 when the vocabulary holds it and to None otherwise; they may be overridden,
    the fields that shape the weights may not. ValueError for ``bias=False``: Hugging Face's GPT-2 always has biases.
    """
    from transformers import GPT2Config

    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a mini_llm GPTConfig, got {type(config).__name__}")
    if not config.bias:
        raise ValueError("bias=False is not supported by transformers' GPT-2, which always has biases")
    special = GPT2_DEFAULT_EOS if config.vocab_size > GPT2_DEFAULT_EOS else None
    fields: dict[str, Any] = dict(
        {hf_name: getattr(config, name) for name, hf_name in GPT2_FIELDS.items()},
        activation_function=config.activation,  # mini_llm's names are Hugging Face's
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        tie_word_embeddings=config.tie_weights,
        bos_token_id=special,
        eos_token_id=special,
    )
    clash = sorted((set(fields) - {"bos_token_id", "eos_token_id"}) & set(overrides))
    if clash:
        raise ValueError(f"overrides may not set fields that come from the GPTConfig, got {clash}")
    fields.update(overrides)
    return GPT2Config(**fields)


def gpt2_state_from_hf(hf_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel state dict -> GPT state dict: transpose the Conv1D weights, drop causal-mask buffers."""
    state = {}
    for name, tensor in hf_state.items():
        if name.endswith(HF_MASK_BUFFERS):
            continue
        state[name] = tensor.t() if CONV1D_WEIGHT.search(name) else tensor  # (out, in) for the Conv1D weights
    return state


def gpt2_state_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """GPT state dict -> GPT2LMHeadModel state dict: transpose the Linear weights into Conv1D's (in, out)."""
    return {name: tensor.t() if CONV1D_WEIGHT.search(name) else tensor for name, tensor in state.items()}


def gpt2_from_hf(model: GPT2LMHeadModel, attn_impl: str = "sdpa") -> GPT:
    """A mini_llm GPT with a copy of a transformers GPT2LMHeadModel's weights (same device, dtype and mode)."""
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT2LMHeadModel):
        raise TypeError(f"model must be a transformers GPT2LMHeadModel, got {type(model).__name__}")
    gpt = GPT(gpt2_config_from_hf(model.config, attn_impl=attn_impl))
    return load_converted(gpt, gpt2_state_from_hf(model.state_dict()), like=model)


def gpt2_to_hf(model: GPT, **config_overrides: Any) -> GPT2LMHeadModel:
    """A transformers GPT2LMHeadModel with a copy of a mini_llm GPT's weights (an untied head stays untied)."""
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT):
        raise TypeError(f"model must be a mini_llm GPT, got {type(model).__name__}")
    hf = GPT2LMHeadModel(gpt2_config_to_hf(model.config, **config_overrides))
    return load_converted(hf, gpt2_state_to_hf(model.state_dict()), like=model)
