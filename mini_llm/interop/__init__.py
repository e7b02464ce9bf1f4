"""Interoperability with Hugging Face transformers: convert GPT-2 and BERT weights, load all-MiniLM-L6-v2.

transformers is imported only inside the functions that need it; loading MiniLM needs only safetensors and
tokenizers. Nothing here downloads: models come from memory or from local files.
May import: helpers, nn. Never train, tasks, evaluation, scaling or cli.
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
