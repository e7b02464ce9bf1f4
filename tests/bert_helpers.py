"""Helpers shared by test_nn and test_interop: a tiny BERT shape, its transformers config, padded inputs, and
random weights that leave no mapping error hidden."""

from __future__ import annotations

import torch

# the shape of the tiny BERT both modules compare with transformers
TINY_BERT = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=40)


def hf_bert_config(**overrides):
    """A transformers BertConfig of the TINY_BERT shape with overrides."""
    from transformers import BertConfig as HFBertConfig

    return HFBertConfig(**{**TINY_BERT, **overrides})


def bert_inputs(segments: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, token_type_ids), each (3, 12): rows padded after 12, 8 and 3 tokens, token types
    0 and 1 (and with segments=3 a type 2 at the end of row 0)."""
    g = torch.Generator().manual_seed(8)
    input_ids = torch.randint(1, 60, (3, 12), generator=g)  # (B, T)
    attention_mask = torch.ones(3, 12, dtype=torch.long)  # (B, T)
    attention_mask[1, 8:] = 0
    attention_mask[2, 3:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros(3, 12, dtype=torch.long)  # (B, T)
    token_type_ids[:, 6:] = 1
    if segments == 3:
        token_type_ids[0, 10:] = 2
    return input_ids, attention_mask, token_type_ids


def randomize(model: torch.nn.Module, std: float = 0.3, seed: int | None = None) -> torch.nn.Module:
    """Draw every parameter (LayerNorm gains and all biases too) from N(0, std²), after torch.manual_seed(seed)
    unless seed is None, so that no mapping error (a wrong GELU or LayerNorm) hides."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, std)
    return model
