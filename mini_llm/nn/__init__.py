"""Torch models: GPT (decoder-only), Llama (RMSNorm, RoPE, grouped-query attention, SwiGLU), a BERT encoder and an
encoder-decoder Transformer, on one attention function;
a KV cache kept as int8/int4 codes (``kv_cache``); rotary embeddings and ALiBi (``positions``, GPTConfig.position);
LoRA adapters on any linear layer, k-bit ones included (``lora``).

May import: helpers (and torch). Never data, train, generation, tasks, evaluation, scaling or cli.
"""

from mini_llm.nn.attention import ATTN_IMPLS, MultiHeadAttention, attention, causal_mask, padding_mask
from mini_llm.nn.bert import (
    BertConfig,
    BertEncoder,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertHeadOutput,
    BertOutput,
)
from mini_llm.nn.gpt import GPT, GPTConfig, GPTOutput
from mini_llm.nn.kv_cache import QuantizedKV, WindowKV, quantized_cache, window_cache
from mini_llm.nn.layers import MLP, EncoderLayer, sinusoidal_positions
from mini_llm.nn.llama import Llama, LlamaConfig
from mini_llm.nn.lora import LoRALinear, adapter_bytes, add_lora, lora_parameters, lora_state_dict, merge_lora
from mini_llm.nn.seq2seq import EncoderOutput, Seq2SeqConfig, Seq2SeqOutput, Seq2SeqTransformer

__all__ = [
    "ATTN_IMPLS",
    "BertConfig",
    "BertEncoder",
    "BertForMaskedLM",
    "BertForSequenceClassification",
    "BertHeadOutput",
    "BertOutput",
    "EncoderLayer",
    "EncoderOutput",
    "GPT",
    "Llama",
    "LlamaConfig",
    "LoRALinear",
    "adapter_bytes",
    "add_lora",
    "lora_parameters",
    "lora_state_dict",
    "merge_lora",
    "GPTConfig",
    "GPTOutput",
    "MLP",
    "MultiHeadAttention",
    "QuantizedKV",
    "Seq2SeqConfig",
    "Seq2SeqOutput",
    "Seq2SeqTransformer",
    "WindowKV",
    "attention",
    "causal_mask",
    "padding_mask",
    "quantized_cache",
    "sinusoidal_positions",
    "window_cache",
]
