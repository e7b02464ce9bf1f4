"""Decoding algorithms for any autoregressive model: how the next token is chosen.

A lower floor beside ``nn``: these functions take a model (anything called as ``model(idx, past_key_values=...,
use_cache=...)`` returning ``.logits`` and ``.past_key_values``) and know nothing of corpora, runs or chapters.
- ``sampling``  greedy, temperature, top-k and top-p sampling with a KV cache: ``generate``, ``generate_seq2seq``,
                ``sample_next_token``, ``top_k_filter``, ``top_p_filter``
- ``beam``      beam search for sequence-to-sequence models: ``beam_search_seq2seq``,
                ``batched_beam_search_seq2seq``
- ``speculative`` speculative decoding, a draft model checked by the target: ``speculative_generate``
A new decoding strategy (a new filter, contrastive search, speculative decoding, ...) goes here. Experiments that
compare strategies on the book's corpus (prompts, result files, copied spans) go to ``mini_llm.tasks.decoding``.
May import: helpers, nn (its quantized KV cache) and torch. Never data, train, tasks, evaluation, scaling or cli.
"""

from mini_llm.generation.beam import BeamSearchOutput, batched_beam_search_seq2seq, beam_search_seq2seq
from mini_llm.generation.sampling import (
    generate,
    generate_seq2seq,
    sample_next_token,
    top_k_filter,
    top_p_filter,
)
from mini_llm.generation.speculative import SpeculativeOutput, speculative_generate

__all__ = [
    "BeamSearchOutput",
    "SpeculativeOutput",
    "batched_beam_search_seq2seq",
    "beam_search_seq2seq",
    "generate",
    "generate_seq2seq",
    "sample_next_token",
    "speculative_generate",
    "top_k_filter",
    "top_p_filter",
]
