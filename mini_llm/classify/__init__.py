"""Review-sentiment classifiers of chapter 5: naive Bayes, transformers' BERT, and mini_llm's pre-trained BERT."""

import warnings

with warnings.catch_warnings():  # transformers -> huggingface_hub imports tqdm.auto, which warns in Jupyter kernels
    warnings.filterwarnings("ignore", message="IProgress not found")  # that lack ipywidgets; harmless, so silenced
    import transformers  # noqa: F401

from mini_llm.classify.finetune import FineTuneConfig, fine_tune, predict_logits
from mini_llm.classify.hf_bert import EncoderSize, hf_bert_classifier
from mini_llm.classify.hf_tokenizer import HFEncoder, train_char_tokenizer
from mini_llm.classify.imbalance import (
    TRUNCATION_SIDES,
    check_class_weights,
    class_prior,
    imbalanced_indices,
    inverse_frequency_weights,
    prior_shift,
    truncate_text,
    weighted_cross_entropy,
)
from mini_llm.classify.metrics import (
    ClassificationMetrics,
    bootstrap_macro_f1_interval,
    classification_metrics,
    confusion_matrix,
    macro_f1,
)
from mini_llm.classify.mlm import CharEncoder, MaskedWindows, SpecialVocabulary, masked_lm_loss
from mini_llm.classify.naive_bayes import CharNGramNaiveBayes, accuracy_interval
from mini_llm.classify.presets import MODELS, PRESETS, ClassifyPreset, PretrainConfig, get_preset
from mini_llm.classify.runs import (
    default_run_dir,
    evaluate_run,
    load_classifier,
    predict_texts,
    read_eval,
    review_split,
    select_naive_bayes,
    train_hf_bert,
    train_mini_llm,
    train_run,
    write_eval,
)
from mini_llm.classify.text_data import PaddingCollator, TextClassificationDataset, make_loader

__all__ = [
    "MODELS",
    "PRESETS",
    "TRUNCATION_SIDES",
    "CharEncoder",
    "CharNGramNaiveBayes",
    "ClassificationMetrics",
    "ClassifyPreset",
    "EncoderSize",
    "FineTuneConfig",
    "HFEncoder",
    "MaskedWindows",
    "PaddingCollator",
    "PretrainConfig",
    "SpecialVocabulary",
    "TextClassificationDataset",
    "accuracy_interval",
    "bootstrap_macro_f1_interval",
    "check_class_weights",
    "class_prior",
    "classification_metrics",
    "confusion_matrix",
    "default_run_dir",
    "evaluate_run",
    "fine_tune",
    "get_preset",
    "hf_bert_classifier",
    "imbalanced_indices",
    "inverse_frequency_weights",
    "load_classifier",
    "macro_f1",
    "make_loader",
    "masked_lm_loss",
    "predict_logits",
    "predict_texts",
    "prior_shift",
    "read_eval",
    "review_split",
    "select_naive_bayes",
    "train_char_tokenizer",
    "train_hf_bert",
    "train_mini_llm",
    "train_run",
    "truncate_text",
    "weighted_cross_entropy",
    "write_eval",
]
