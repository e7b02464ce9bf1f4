"""Evaluation metrics, one room for all of them: a new metric goes here, in the module of its kind.

- ``text``            metrics of generated, translated and extracted text: distinct-n, repetition rate, edit
                      distance, character error rate and accuracy, corpus BLEU, exact match and character F1 (QA)
- ``classification``  confusion matrix, per-class precision / recall / F1, macro F1 with its bootstrap interval,
                      ``classification_metrics`` (everything of one prediction run)
- ``intervals``       confidence intervals of a share: the Wilson score interval of an accuracy
- ``ranking``         metrics of a score before a threshold: both recalls at every threshold, ROC AUC
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

__all__ = [
    "BleuScore",
    "ClassificationMetrics",
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
    "macro_f1",
    "ngrams",
    "normalize_answer",
    "qa_scores",
    "recall_curve",
    "repetition_rate",
    "roc_auc",
]
