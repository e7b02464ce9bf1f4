"""Masked-language-model pre-training data for mini_llm's BERT: a shared character vocabulary and masked windows.

The special tokens are appended after the CharTokenizer's ids: [PAD] = V_char, [CLS] = V_char + 1,
[MASK] = V_char + 2, so the model's vocabulary has V_char + 3 ids (chapter 2.3's layout).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mini_llm.data import CharTokenizer
from mini_llm.nn import BertForMaskedLM

MASK_PROB = 0.15  # share of character positions the model must predict
IGNORE = -100  # label of positions that are not predicted (skipped by F.cross_entropy)


class SpecialVocabulary:
    """A CharTokenizer plus [PAD], [CLS] and [MASK] ids after its characters."""

    def __init__(self, tokenizer: CharTokenizer) -> None:
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.vocab_size  # [PAD]: fills short texts up to a common length
        self.cls_id = tokenizer.vocab_size + 1  # [CLS]: first position of every sequence
        self.mask_id = tokenizer.vocab_size + 2  # [MASK]: stands in for the characters the model must guess
        self.vocab_size = tokenizer.vocab_size + 3  # V: characters, <unk> and the three special tokens

    @classmethod
    def from_texts(cls, texts: Sequence[str], min_count: int = 5) -> SpecialVocabulary:
        """Characters seen at least ``min_count`` times in texts, plus the special tokens."""
        return cls(CharTokenizer.from_texts(texts, min_count=min_count))

    def encode_batch(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        """[CLS] + the first max_length - 1 characters of each text, padded with [PAD] to the batch's longest."""
        rows = [[self.cls_id, *self.tokenizer.encode(text[: max_length - 1])] for text in texts]
        length = max(len(row) for row in rows)
        ids = torch.full((len(rows), length), self.pad_id)  # (B, T)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return {"input_ids": ids, "attention_mask": (ids != self.pad_id).long()}  # (B, T) each


class CharEncoder:
    """encode(texts) for the collator, with a SpecialVocabulary and a maximum length."""

    def __init__(self, vocabulary: SpecialVocabulary, max_length: int) -> None:
        self.vocabulary, self.max_length = vocabulary, max_length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.vocabulary.encode_batch(texts, self.max_length)


class MaskedWindows:
    """Batch source for masked language modelling: random windows of a 1-D id sequence, masked as in BERT.

    Of the chosen positions (MASK_PROB of the characters; never [CLS]) 80% become [MASK], 10% a random
    character and 10% stay; labels hold the original id at chosen positions and IGNORE elsewhere.
    """

    def __init__(
        self, ids: torch.Tensor, vocabulary: SpecialVocabulary, seq_len: int = 64, mask_prob: float = MASK_PROB
    ) -> None:
        if len(ids) < seq_len:
            raise ValueError(f"ids must hold at least seq_len = {seq_len} characters, got {len(ids)}")
        self.ids = ids  # (N,) character ids
        self.vocabulary = vocabulary
        self.seq_len = seq_len  # T, [CLS] included
        self.mask_prob = mask_prob  # chance that a character position is chosen for prediction

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels), each (B, T)."""
        vocab, n_chars = self.vocabulary, self.seq_len - 1
        starts = torch.randint(len(self.ids) - n_chars, (batch_size,), generator=generator)  # (B,)
        chars = self.ids[starts[:, None] + torch.arange(n_chars)]  # (B, T - 1)
        original = torch.cat([torch.full((batch_size, 1), vocab.cls_id), chars], dim=1)  # (B, T)
        chosen = torch.rand(original.shape, generator=generator) < self.mask_prob  # (B, T)
        chosen[:, 0] = False  # [CLS] is never predicted
        action = torch.rand(original.shape, generator=generator)  # (B, T): < 0.8 mask, < 0.9 random, else keep
        random_chars = torch.randint(1, vocab.tokenizer.vocab_size, original.shape, generator=generator)  # (B, T)
        inputs = original.clone()
        inputs[chosen & (action < 0.8)] = vocab.mask_id
        swap = chosen & (action >= 0.8) & (action < 0.9)
        inputs[swap] = random_chars[swap]
        labels = original.masked_fill(~chosen, IGNORE)  # (B, T)
        return inputs, labels


def masked_lm_loss(model: BertForMaskedLM, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the chosen positions (labels != IGNORE); the output head sees only those."""
    hidden = model.bert(inputs).last_hidden_state  # (B, T, C)
    chosen = labels != IGNORE  # (B, T)
    logits = model.mlm(hidden[chosen])  # (K, V) for the K chosen positions
    return F.cross_entropy(logits, labels[chosen])
