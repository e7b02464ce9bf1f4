"""Sentence embeddings as sentence-transformers makes them: mean of the token states, then unit length."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tokenizers import Encoding, Tokenizer

from mini_llm.nn.bert import BertEncoder


def mean_pool_normalize(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where attention_mask is 1, scaled to unit L2 norm: (B, T, C), (B, T) -> (B, C)."""
    if last_hidden_state.dim() != 3:
        raise ValueError(f"last_hidden_state must have shape (B, T, C), got {tuple(last_hidden_state.shape)}")
    if attention_mask.shape != last_hidden_state.shape[:2]:
        raise ValueError(
            f"attention_mask must have shape {tuple(last_hidden_state.shape[:2])}, got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.to(last_hidden_state.dtype).unsqueeze(-1)  # (B, T, 1)
    summed = (last_hidden_state * mask).sum(dim=1)  # (B, C)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1); an all-padding row gives 0, not NaN
    return F.normalize(summed / counts, p=2, dim=1)  # (B, C)


def pad_encodings(encodings: Sequence[Encoding], pad_token_id: int) -> tuple[torch.Tensor, ...]:
    """Right-pad tokenizer encodings to the longest: (input_ids, attention_mask, token_type_ids), each (B, T)."""
    T = max(len(e.ids) for e in encodings)
    input_ids = torch.full((len(encodings), T), pad_token_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros(len(encodings), T, dtype=torch.long)  # (B, T)
    token_type_ids = torch.zeros(len(encodings), T, dtype=torch.long)  # (B, T)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        input_ids[row, :n] = torch.tensor(e.ids)  # (n,)
        attention_mask[row, :n] = torch.tensor(e.attention_mask)  # (n,); 0 where the tokenizer padded itself
        token_type_ids[row, :n] = torch.tensor(e.type_ids)  # (n,)
    return input_ids, attention_mask, token_type_ids


@torch.no_grad()
def encode_sentences(
    model: BertEncoder, tokenizer: Tokenizer, sentences: Sequence[str], batch_size: int = 32
) -> torch.Tensor:
    """Unit-length sentence embeddings (N, C) of N sentences (call model.eval() first; load_minilm does)."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be a sequence of strings, got a single str; wrap it in a list")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    device = next(model.parameters()).device
    embeddings = []
    for start in range(0, len(sentences), batch_size):
        encodings = tokenizer.encode_batch(list(sentences[start : start + batch_size]))
        input_ids, attention_mask, token_type_ids = (
            t.to(device) for t in pad_encodings(encodings, model.config.pad_token_id)
        )  # 3 x (B, T)
        hidden = model(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, C)
        embeddings.append(mean_pool_normalize(hidden, attention_mask))  # (B, C)
    if not embeddings:
        return torch.empty(0, model.config.hidden_size, device=device)  # (0, C)
    return torch.cat(embeddings)  # (N, C)
