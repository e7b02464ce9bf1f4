"""Evaluation metrics, one room for all of them: a new metric goes here, in the module of its kind.

- ``text``            metrics of generated, translated and extracted text: distinct-n, repetition rate, edit
                      distance, character error rate and accuracy, corpus BLEU, exact match and character F1 (QA)
- ``classification``  confusion matrix, per-class precision / recall / F1, macro F1 with its bootstrap interval,
                      ``classification_metrics`` (everything of one prediction run)
- ``intervals``       confidence intervals of a share: the Wilson score interval of an accuracy
- ``ranking``         metrics of a score before a threshold: both recalls at every threshold, ROC AUC
- ``memorization``    exposure of a canary (Carlini et al. 2019), exact-continuation lengths and rates, how often text
                      windows repeat
- ``weat``            the word-embedding association test (Caliskan et al. 2017): effect size, permutation p-value
Metrics take predictions and references (token sequences, strings, class ids) and never a model, so they sit below
the applications (``mini_llm.tasks``) that compute them.
May import: helpers (and numpy). Never data, nn, train, tasks, scaling or cli.
"""

from mini_llm.evaluation.classification import (
    ClassificationMetrics,
    bootstrap_macro_f1_interval,
    classification_metrics,
    confusion_matrix,
    macro_f1,
)
from mini_llm.evaluation.intervals import accuracy_interval
from mini_llm.evaluation.memorization import exposure, extraction_lengths, extraction_rate, random_rank_exposure
from mini_llm.evaluation.ranking import recall_curve, roc_auc
from mini_llm.evaluation.text import (
    BleuScore,
    char_f1,
    character_accuracy,
    character_error_rate,
    corpus_bleu,
    distinct_n,
    edit_distance,
    exact_match,
    ngrams,
    normalize_answer,
    qa_scores,
    repetition_rate,
)
from mini_llm.evaluation.weat import WeatResult, weat_effect_size, weat_test

__all__ = [
    "BleuScore",
    "ClassificationMetrics",
    "WeatResult",
    "accuracy_interval",
    "bootstrap_macro_f1_interval",
    "char_f1",
    "character_accuracy",
    "character_error_rate",
    "classification_metrics",
    "confusion_matrix",
    "corpus_bleu",
    "distinct_n",
    "edit_distance",
    "exact_match",
    "exposure",
    "extraction_lengths",
    "extraction_rate",
    "macro_f1",
    "ngrams",
    "normalize_answer",
    "qa_scores",
    "random_rank_exposure",
    "recall_curve",
    "repetition_rate",
    "roc_auc",
    "weat_effect_size",
    "weat_test",
]
