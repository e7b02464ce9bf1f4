"""Character-level tokenizer with an explicit unknown token, saved as JSON."""

from __future__ import annotations

import json
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Literal

from mini_llm.atomic import write_text_atomic
from mini_llm.jsonfiles import read_json

UNK_TOKEN = "<unk>"
FILE_FORMAT = "mini_llm.CharTokenizer"
FILE_VERSION = 1
ON_UNKNOWN = ("unk", "error")


class CharTokenizer:
    """Maps single characters to ids; id 0 is the unknown token ``<unk>``."""

    def __init__(self, chars: Sequence[str]) -> None:
        for char in chars:
            if not isinstance(char, str) or len(char) != 1:
                raise ValueError(f"chars must be single characters, got {char!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not contain duplicates")
        self.chars: list[str] = list(chars)
        self.unk_id = 0
        self._id_of = {char: i + 1 for i, char in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> CharTokenizer:
        """Build the vocabulary from texts, keeping characters seen at least ``min_count`` times."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, not a single string")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter()
        for text in texts:
            counts.update(text)
        chars = sorted(char for char, count in counts.items() if count >= min_count)
        if not chars:
            raise ValueError("texts are empty (or min_count removed every character): no vocabulary")
        return cls(chars)

    @property
    def vocab_size(self) -> int:
        """Number of ids, the unknown token included."""
        return len(self.chars) + 1

    def encode(self, text: str, on_unknown: Literal["unk", "error"] = "unk") -> list[int]:
        """Turn text into ids; unknown characters become ``unk_id`` or raise (on_unknown='error')."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__} (decode bytes first)")
        if on_unknown not in ON_UNKNOWN:
            raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, got {on_unknown!r}")
        if on_unknown == "error":
            unknown = sorted({char for char in text if char not in self._id_of})
            if unknown:
                raise ValueError(f"text has characters outside the vocabulary: {''.join(unknown)!r}")
        return [self._id_of.get(char, self.unk_id) for char in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Turn ids back into text; ``unk_id`` becomes ``<unk>``."""
        pieces = []
        for i in ids:
            i = _token_id(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"id {i} is outside the vocabulary [0, {self.vocab_size})")
            pieces.append(UNK_TOKEN if i == self.unk_id else self.chars[i - 1])
        return "".join(pieces)

    def save(self, path: str | PathLike) -> None:
        """Write the vocabulary as UTF-8 JSON (atomically)."""
        payload = {"format": FILE_FORMAT, "version": FILE_VERSION, "unk_token": UNK_TOKEN, "chars": self.chars}
        write_text_atomic(path, json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | PathLike) -> CharTokenizer:
        """Read a vocabulary written by :meth:`save`; a corrupt file raises ValueError."""
        payload = read_json(path, "a CharTokenizer file")
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a CharTokenizer file (missing format {FILE_FORMAT!r})")
        if payload.get("version") != FILE_VERSION:
            raise ValueError(f"{path} has version {payload.get('version')!r}; supported: {FILE_VERSION}")
        chars = payload.get("chars")
        if not isinstance(chars, list):
            raise ValueError(f"{path} has no list of chars")
        try:
            return cls(chars)
        except ValueError as error:
            raise ValueError(f"{path} is not a CharTokenizer file: {error}") from error

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def _token_id(value: object) -> int:
    """value as a token id (an int, a numpy integer or a one-element integer tensor); TypeError for floats, bools."""
    if isinstance(value, bool) or str(getattr(value, "dtype", "")) in ("bool", "torch.bool"):
        raise TypeError(f"ids must be integers, got {value!r}")
    try:
        return operator.index(value)
    except TypeError as error:
        raise TypeError(f"ids must be integers, got {value!r}") from error
