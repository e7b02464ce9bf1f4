"""Interoperability: convert GPT-2 and BERT weights of Hugging Face transformers, load all-MiniLM-L6-v2, and read
GGUF files of Llama-family models (``gguf``: SmolLM2-135M, its tokenizer and chat template).

transformers and gguf are imported only inside the functions that need them; loading MiniLM needs only safetensors
and tokenizers. Nothing here downloads: models come from memory, local files or installed packages.
May import: helpers, nn, quant (GGUF's block formats). Never train, tasks, evaluation, scaling or cli.
"""

from mini_llm.interop.bert import BERT_NAME_MAP, bert_config_from_hf, bert_from_hf, bert_state_from_hf
from mini_llm.interop.gpt2 import (
    gpt2_config_from_hf,
    gpt2_config_to_hf,
    gpt2_from_hf,
    gpt2_state_from_hf,
    gpt2_state_to_hf,
    gpt2_to_hf,
)
from mini_llm.interop.minilm import MINILM_DISTRIBUTION, MINILM_FILES, check_minilm_files, load_minilm, minilm_dir
from mini_llm.interop.sentence_embedding import encode_sentences, mean_pool_normalize, pad_encodings

__all__ = [
    "BERT_NAME_MAP",
    "MINILM_DISTRIBUTION",
    "MINILM_FILES",
    "bert_config_from_hf",
    "bert_from_hf",
    "bert_state_from_hf",
    "check_minilm_files",
    "encode_sentences",
    "gpt2_config_from_hf",
    "gpt2_config_to_hf",
    "gpt2_from_hf",
    "gpt2_state_from_hf",
    "gpt2_state_to_hf",
    "gpt2_to_hf",
    "load_minilm",
    "mean_pool_normalize",
    "minilm_dir",
    "pad_encodings",
]
