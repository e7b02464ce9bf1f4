"""Batches and loss for encoder-decoder training with the Trainer: padded (source, target) pairs, teacher forcing.

A batch is (src, tgt): src (B, S) holds the source ids, tgt (B, T + 2) holds <bos>, the target ids and <eos>;
both are padded with pad_id on the right. ``seq2seq_loss`` feeds tgt[:, :-1] to the decoder and scores its
predictions against tgt[:, 1:], ignoring padding, with padding masks built from pad_id.
``sequence_log_probs`` scores whole targets the same way: log p(target | source) per pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Right-pad id sequences to the longest: (B, L) int64."""
    if len(sequences) == 0:
        raise ValueError("sequences is empty")
    longest = max(len(s) for s in sequences)
    out = torch.full((len(sequences), longest), pad_id, dtype=torch.long)  # (B, L)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return out


class PairBatches:
    """A ``BatchFn`` over (source, target) id pairs: random pairs -> (src (B, S), <bos> target <eos> (B, T + 2))."""

    def __init__(
        self,
        sources: Sequence[Sequence[int]],
        targets: Sequence[Sequence[int]],
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
    ) -> None:
        if len(sources) != len(targets) or len(sources) == 0:
            raise ValueError(f"need as many sources as targets, at least one; got {len(sources)} and {len(targets)}")
        if any(len(s) == 0 for s in sources):
            raise ValueError("every source must hold at least one id")
        self.sources = [list(s) for s in sources]
        self.targets = [[bos_id, *t, eos_id] for t in targets]
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.sources)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs at indices, padded: src (B, S), tgt (B, T + 2)."""
        src = pad_sequences([self.sources[i] for i in indices], self.pad_id)  # (B, S)
        tgt = pad_sequences([self.targets[i] for i in indices], self.pad_id)  # (B, T + 2)
        return src, tgt

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """batch_size pairs drawn at random (with replacement)."""
        indices = torch.randint(len(self.sources), (batch_size,), generator=generator).tolist()
        return self.batch(indices)

    def __repr__(self) -> str:
        return f"PairBatches(pairs={len(self.sources)}, pad_id={self.pad_id})"


def _teacher_forced(
    model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, T + 1, V), targets (B, T + 1)): the decoder reads tgt[:, :-1] and predicts tgt[:, 1:]."""
    decoder_input, targets = tgt[:, :-1], tgt[:, 1:]  # (B, T + 1), (B, T + 1)
    logits = model(
        src,
        decoder_input,
        src_padding_mask=(src != pad_id).long(),  # (B, S)
        tgt_padding_mask=(decoder_input != pad_id).long(),  # (B, T + 1)
    ).logits  # (B, T + 1, V)
    return logits, targets


def seq2seq_loss(model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Teacher forcing: decoder input tgt[:, :-1], mean cross-entropy against tgt[:, 1:] over non-padding targets."""
    logits, targets = _teacher_forced(model, src, tgt, pad_id)  # (B, T + 1, V), (B, T + 1)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id)


@torch.no_grad()
def sequence_log_probs(model: torch.nn.Module, src: torch.Tensor, tgt: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Total log-probability (float64) of each target in tgt (B, T + 2) given src (B, S): (B,).

    tgt holds <bos>, the target and <eos>, right-padded with pad_id, as ``PairBatches`` makes it; the sum runs
    over the tokens after <bos>, <eos> included, the same quantity ``beam_search_seq2seq`` reports as log_probs.
    """
    if src.dim() != 2 or tgt.dim() != 2 or src.size(0) != tgt.size(0) or tgt.size(1) < 2:
        raise ValueError(
            f"need src (B, S) and tgt (B, T + 2) with the same B and T + 2 >= 2, "
            f"got {tuple(src.shape)} and {tuple(tgt.shape)}"
        )
    logits, targets = _teacher_forced(model, src, tgt, pad_id)  # (B, T + 1, V), (B, T + 1)
    log_probs = torch.log_softmax(logits.double(), dim=-1)  # (B, T + 1, V)
    picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T + 1)
    return picked.masked_fill(targets == pad_id, 0.0).sum(dim=1)  # (B,)
