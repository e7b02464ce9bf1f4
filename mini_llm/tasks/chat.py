"""A chat with a Llama-family model from a GGUF file: the chat template, streamed replies, one KV cache for all turns.

Each turn renders the whole conversation with the model's chat template, keeps the part of the KV cache whose tokens
are unchanged (the earlier turns: the template renders them the same way again) and feeds only the new tokens.
Replies are decoded as they are generated and handed out piece by piece, never splitting a multi-byte character.
A model with k-bit linear layers decodes through FusedLlamaDecoder (one compiled call per token) unless fused=False.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from mini_llm.generation import sample_next_token
from mini_llm.helpers import check_int
from mini_llm.nn.kv_cache import truncate_cache
from mini_llm.tasks.fused_llama import FusedLlamaDecoder, fusion_problem

Render = Callable[[list[dict[str, str]]], str]  # messages -> the prompt text, ending with the assistant's header


@dataclass
class ChatSettings:
    """How replies are drawn."""

    max_new_tokens: int = 256  # at most this many tokens per reply
    temperature: float = 0.7  # > 0; ignored when greedy
    top_k: int | None = None  # sample from the k likeliest
    top_p: float | None = 0.9  # nucleus mass
    greedy: bool = False  # always the likeliest token
    seed: int | None = None  # of the sampling generator (None: a random seed)


@dataclass
class Chat:
    """A conversation: the messages so far and the cache of every token the model has read."""

    model: torch.nn.Module
    tokenizer: Any  # a tokenizers.Tokenizer
    render: Render
    stop_ids: set[int]  # token ids that end a reply (the end-of-turn token)
    settings: ChatSettings = field(default_factory=ChatSettings)
    messages: list[dict[str, str]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # the ids the cache holds, in order
    cache: list | None = None  # the model's KV cache (None while fused)
    fused: bool | None = None  # decode with FusedLlamaDecoder: None = when the model allows it (k-bit linear layers)

    def __post_init__(self) -> None:
        check_int("max_new_tokens", self.settings.max_new_tokens, 1)
        problem = fusion_problem(self.model)
        if self.fused and problem is not None:
            raise ValueError(f"fused=True needs a model FusedLlamaDecoder can run: {problem}")
        self.decoder = FusedLlamaDecoder(self.model) if self.fused is not False and problem is None else None
        self.generator = torch.Generator()
        self.generator.manual_seed(self.settings.seed if self.settings.seed is not None else torch.seed())

    def _feed(self, ids: list[int]) -> torch.Tensor:
        """Bring the cache to the ids (keeping the common prefix); return the logits (V,) of the next token."""
        keep = 0
        while keep < min(len(ids) - 1, len(self.tokens)) and ids[keep] == self.tokens[keep]:
            keep += 1
        if self.cache is not None and keep < len(self.tokens):
            self.cache = truncate_cache(self.cache, keep)
        limit = self.model.config.block_size
        if len(ids) + self.settings.max_new_tokens > limit:
            raise ValueError(f"the conversation ({len(ids)} tokens) plus a reply of up to "
                             f"{self.settings.max_new_tokens} tokens exceeds the model's context of {limit} tokens: "
                             "start a new chat or lower --max-new-tokens")
        if self.decoder is not None:
            self.decoder.truncate(keep)
            logits = self.decoder.forward(ids[keep:])  # (V,)
            self.tokens = list(ids)
            return logits
        new = torch.tensor([ids[keep:]])  # (1, T_new)
        with torch.no_grad():
            out = self.model(new, past_key_values=self.cache, use_cache=True)
        self.cache, self.tokens = out.past_key_values, list(ids)
        return out.logits[0, -1]  # (V,)

    def reply(self, text: str) -> Iterator[str]:
        """Add the user's text, then generate the assistant's reply, yielding it piece by piece as it grows.

        Stopping early (KeyboardInterrupt, or closing the iterator) keeps the reply so far in the conversation.
        """
        self.messages.append({"role": "user", "content": text})
        ids = self.tokenizer.encode(self.render(self.messages), add_special_tokens=False).ids
        logits = self._feed(ids)
        s, answer, shown = self.settings, [], ""
        try:
            for _ in range(s.max_new_tokens):
                token = int(sample_next_token(logits[None].float(), s.temperature, s.top_k, s.top_p, s.greedy,
                                              self.generator))
                if token in self.stop_ids:
                    break
                answer.append(token)
                logits = self._feed(self.tokens + [token])
                decoded = self.tokenizer.decode(answer)
                if not decoded.endswith("\ufffd"):  # a character split across tokens waits for its last byte
                    yield decoded[len(shown):]
                    shown = decoded
        finally:
            self.messages.append({"role": "assistant", "content": self.tokenizer.decode(answer)})
