"""The corrected transformers version: a small BertConfig from scratch and BertForSequenceClassification."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast


@dataclass(frozen=True)
class EncoderSize:
    """The size of a small BERT encoder (both the transformers and the mini_llm versions use it)."""

    hidden_size: int = 128  # model width C
    num_hidden_layers: int = 2  # encoder layers
    num_attention_heads: int = 4  # heads per layer
    intermediate_size: int = 512  # FFN hidden width (4C, as in BERT)
    dropout: float = 0.1  # hidden and attention dropout

    def as_dict(self) -> dict:
        """The fields as a dict (for config.json)."""
        return asdict(self)

    def bert_config_fields(self) -> dict:
        """The BertConfig fields this size sets; transformers' and mini_llm's BertConfig share these names."""
        return {
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_dropout_prob": self.dropout,
            "attention_probs_dropout_prob": self.dropout,
        }


def hf_bert_classifier(
    tokenizer: PreTrainedTokenizerFast, size: EncoderSize, max_length: int, seed: int = 0
) -> BertForSequenceClassification:
    """A randomly initialised (seeded) BertForSequenceClassification with 2 labels for the tokenizer's vocabulary."""
    config = BertConfig(
        vocab_size=len(tokenizer),
        **size.bert_config_fields(),
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
    )
    torch.manual_seed(seed)
    return BertForSequenceClassification(config)
