"""Labelled texts as a torch Dataset, a collate function that pads a batch and builds its attention mask, and the
batch sources that feed them to a loader or to ``mini_llm.train.Trainer``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from mini_llm.tasks.classify.naive_bayes import check_labelled_texts

# encode(texts) -> {"input_ids": (B, T), "attention_mask": (B, T), ...}: padded to the longest text of the batch
Encoder = Callable[[list[str]], dict[str, torch.Tensor]]


class TextClassificationDataset(Dataset):
    """(text, label) pairs; the texts stay strings until a batch is collated (TensorDataset cannot hold str)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int]) -> None:
        self.texts, self.labels = check_labelled_texts(texts, labels)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.texts[index], self.labels[index]


class PaddingCollator:
    """Turn a list of (text, label) into one batch: encode(texts) (padded ids, attention mask) plus labels (B,)."""

    def __init__(self, encode: Encoder) -> None:
        self.encode = encode

    def __call__(self, examples: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
        texts, labels = zip(*examples, strict=True)
        batch = dict(self.encode(list(texts)))  # input_ids (B, T), attention_mask (B, T), maybe token_type_ids
        batch["labels"] = torch.tensor(labels, dtype=torch.long)  # (B,)
        return batch


def make_loader(
    dataset: TextClassificationDataset, encode: Encoder, batch_size: int, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A DataLoader of padded batches; with shuffle=True the order comes from a generator seeded with ``seed``.

    Every loader gets its own generator: without one, each ``iter(loader)`` draws a seed from torch's global
    generator, so evaluating more or less often would change the dropout masks of the training steps after it.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=PaddingCollator(encode)
    )


class SampledBatches:
    """A Trainer batch source: ``batch_size`` examples drawn at random (with replacement) with the Trainer's
    generator, collated as (batch, labels) with the batch padded to its longest text."""

    def __init__(self, dataset: TextClassificationDataset, encode: Encoder) -> None:
        self.dataset = dataset
        self.collate = PaddingCollator(encode)

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        index = torch.randint(len(self.dataset), (batch_size,), generator=generator)  # (B,)
        batch = self.collate([self.dataset[i] for i in index.tolist()])  # input_ids (B, T'), labels (B,), ...
        return batch, batch["labels"]
