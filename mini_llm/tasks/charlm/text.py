"""Prompts and generated text of a trained char-level GPT."""

from __future__ import annotations

from typing import Any

import torch

from mini_llm.data import CharTokenizer
from mini_llm.generation import generate
from mini_llm.nn import GPT


def unknown_characters(tokenizer: CharTokenizer, text: str) -> list[str]:
    """The distinct characters of ``text`` outside the tokenizer's vocabulary, in order of appearance."""
    return [char for char in dict.fromkeys(text) if tokenizer.encode(char)[0] == tokenizer.unk_id]


def encode_prompt(tokenizer: CharTokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt; ValueError if it is empty or has characters outside the vocabulary (listed)."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    unknown = unknown_characters(tokenizer, prompt)
    if unknown:
        listed = " ".join(repr(char) for char in unknown)
        raise ValueError(f"prompt has characters outside the model's vocabulary: {listed}")
    return tokenizer.encode(prompt)


def generate_text(
    model: GPT, tokenizer: CharTokenizer, prompt: str, max_new_tokens: int = 100, **sampling: Any
) -> str:
    """The prompt followed by ``max_new_tokens`` generated characters; ``sampling`` holds the keyword options of
    ``mini_llm.generation.generate`` (temperature, top_k, top_p, greedy, use_cache, seed)."""
    device = next(model.parameters()).device
    idx = torch.tensor([encode_prompt(tokenizer, prompt)], dtype=torch.long, device=device)  # (1, T)
    out = generate(model, idx, max_new_tokens, **sampling)  # (1, T + max_new_tokens)
    return tokenizer.decode(out[0].tolist())
