"""A small sequence-to-sequence task: Chinese clauses from People's Daily -> tone-numbered pinyin (via pypinyin).

A clause is a run of Han characters between punctuation, digits or Latin letters, e.g. 迈向充满希望的新世纪.
Its target is one syllable per character, the tone as a digit 1-4 and 5 for the neutral tone:
mai4 xiang4 chong1 man3 xi1 wang4 de5 xin1 shi4 ji4. pypinyin picks the reading of a polyphonic character
(行 hang2 / xing2) from its phrase dictionary, so the labels are pypinyin's, not a person's: usually right, not always.

Training clauses come from the first 90% of the paragraphs, held-out clauses from the last 10%, with every
held-out clause that also occurs in the training part removed, so the held-out score is on unseen clauses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from mini_llm.data.corpora import load_people_daily
from mini_llm.helpers import check_int

HAN_RUN = re.compile(r"[\u4e00-\u9fff]+")  # CJK Unified Ideographs, the basic block
SYLLABLE = re.compile(r"[a-z]+[1-5]")  # letters, then the tone digit (ü is written v, as pypinyin does)
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in every Vocabulary
HELDOUT_FRACTION = 0.1  # the last 10% of the paragraphs give the held-out clauses (as in chapter 1)


def to_pinyin(text: str) -> list[str]:
    """One tone-numbered syllable per character of text (Han characters only): '中国' -> ['zhong1', 'guo2']."""
    if not isinstance(text, str) or not HAN_RUN.fullmatch(text):
        raise ValueError(f"text must be a non-empty string of Han characters (U+4E00-U+9FFF), got {text!r}")
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    if len(syllables) != len(text) or not all(SYLLABLE.fullmatch(s) for s in syllables):
        raise ValueError(f"pypinyin gave no tone-numbered syllable for every character of {text!r}: {syllables}")
    return syllables


def han_clauses(paragraphs: Iterable[str], min_chars: int = 4, max_chars: int = 12) -> list[str]:
    """The runs of Han characters in paragraphs with min_chars..max_chars characters, first occurrences, in order."""
    if isinstance(paragraphs, str):
        raise TypeError("paragraphs must be an iterable of strings, not a single string")
    if not (isinstance(min_chars, int) and isinstance(max_chars, int) and 1 <= min_chars <= max_chars):
        raise ValueError(
            f"need integers 1 <= min_chars <= max_chars, got min_chars={min_chars!r}, max_chars={max_chars!r}"
        )
    clauses = (run for paragraph in paragraphs for run in HAN_RUN.findall(paragraph))
    return list(dict.fromkeys(c for c in clauses if min_chars <= len(c) <= max_chars))


@dataclass(frozen=True)
class PinyinPair:
    """A clause and its syllables, one per character."""

    text: str
    pinyin: tuple[str, ...]


def pinyin_pairs(clauses: Iterable[str]) -> list[PinyinPair]:
    """Each clause with its tone-numbered pinyin."""
    return [PinyinPair(clause, tuple(to_pinyin(clause))) for clause in clauses]


class Vocabulary:
    """Tokens <-> ids; ids 0-3 are <pad>, <bos>, <eos>, <unk>, then the tokens in the order given."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        clashes = [t for t in tokens if t in SPECIAL_TOKENS]
        if clashes or len(set(tokens)) != len(tokens):
            raise ValueError(f"tokens must be distinct and must not be special tokens {SPECIAL_TOKENS}")
        self.tokens = list(SPECIAL_TOKENS) + tokens  # id -> token
        self.index = {token: i for i, token in enumerate(self.tokens)}  # token -> id
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.index[t] for t in SPECIAL_TOKENS)

    @classmethod
    def from_sequences(cls, sequences: Iterable[Iterable[str]], min_count: int = 1) -> Vocabulary:
        """The tokens seen at least min_count times, most frequent first (ties in order of first appearance)."""
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        counts = Counter(token for sequence in sequences for token in sequence)
        return cls([token for token, count in counts.most_common() if count >= min_count])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens (a string is read as its characters); unknown tokens become <unk>."""
        return [self.index.get(token, self.unk_id) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ids up to the first <eos>, leaving out <bos> and <pad>."""
        tokens = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"id {i} is outside the vocabulary [0, {len(self.tokens)})")
            if i == self.eos_id:
                break
            if i not in (self.bos_id, self.pad_id):
                tokens.append(self.tokens[i])
        return tokens


@dataclass
class PinyinTask:
    """Training and held-out pairs with their source (character) and target (syllable) vocabularies."""

    train: list[PinyinPair]
    heldout: list[PinyinPair]
    source_vocab: Vocabulary  # the characters of the training clauses
    target_vocab: Vocabulary  # the syllables of the training clauses

    def encode(self, pairs: Sequence[PinyinPair]) -> tuple[list[list[int]], list[list[int]]]:
        """(source ids, target ids) of pairs, without <bos>/<eos>."""
        return [self.source_vocab.encode(p.text) for p in pairs], [self.target_vocab.encode(p.pinyin) for p in pairs]


def load_pinyin_task(
    n_train: int = 20_000, n_heldout: int = 1_000, min_chars: int = 4, max_chars: int = 12, seed: int = 0
) -> PinyinTask:
    """People's Daily clauses -> pinyin: n_train random training clauses, n_heldout unseen held-out clauses."""
    for name, value in (("n_train", n_train), ("n_heldout", n_heldout)):
        check_int(name, value, 1, kinds=int)
    paragraphs = load_people_daily(form="text")
    split = int((1 - HELDOUT_FRACTION) * len(paragraphs))
    train_clauses = han_clauses(paragraphs[:split], min_chars, max_chars)
    seen = set(train_clauses)
    heldout_clauses = [c for c in han_clauses(paragraphs[split:], min_chars, max_chars) if c not in seen]
    for name, wanted, available in (("n_train", n_train, train_clauses), ("n_heldout", n_heldout, heldout_clauses)):
        if wanted > len(available):
            raise ValueError(
                f"{name}={wanted} exceeds the {len(available)} clauses of {min_chars}-{max_chars} characters"
            )
    rng = np.random.default_rng(seed)
    train_rows = sorted(rng.choice(len(train_clauses), n_train, replace=False))
    heldout_rows = sorted(rng.choice(len(heldout_clauses), n_heldout, replace=False))
    train = pinyin_pairs(train_clauses[i] for i in train_rows)
    heldout = pinyin_pairs(heldout_clauses[i] for i in heldout_rows)
    return PinyinTask(
        train=train,
        heldout=heldout,
        source_vocab=Vocabulary.from_sequences(p.text for p in train),
        target_vocab=Vocabulary.from_sequences(p.pinyin for p in train),
    )


def reading_counts(pairs: Iterable[PinyinPair]) -> dict[str, Counter[str]]:
    """How often each character is read as each syllable in pairs: {'行': Counter({'xing2': 9, 'hang2': 4}), ...}."""
    counts: dict[str, Counter[str]] = {}
    for pair in pairs:
        if len(pair.text) != len(pair.pinyin):
            raise ValueError(f"pair {pair.text!r} has {len(pair.text)} characters but {len(pair.pinyin)} syllables")
        for char, syllable in zip(pair.text, pair.pinyin, strict=True):
            counts.setdefault(char, Counter())[syllable] += 1
    return counts


def syllable_accuracy(
    predictions: Sequence[Sequence[str]],
    pairs: Sequence[PinyinPair],
    characters: Container[str] | None = None,
) -> tuple[int, int]:
    """(matches, total): syllable k of a prediction equals syllable k of its pair, over every character of the pairs.

    With ``characters`` only the positions whose character is in it count. A prediction shorter than its clause
    misses the positions it lacks; extra syllables of a longer one are not counted.
    """
    if isinstance(predictions, str) or len(predictions) != len(pairs):
        got = "a str" if isinstance(predictions, str) else f"{len(predictions)} predictions"
        raise ValueError(f"need one prediction (a list of syllables) per pair: {len(pairs)} pairs, got {got}")
    matches = total = 0
    for prediction, pair in zip(predictions, pairs, strict=True):
        if isinstance(prediction, str):
            raise ValueError(f"each prediction must be a list of syllables, got the string {prediction!r}")
        for k, (char, syllable) in enumerate(zip(pair.text, pair.pinyin, strict=True)):
            if characters is None or char in characters:
                total += 1
                matches += k < len(prediction) and prediction[k] == syllable
    return matches, total
