"""Review-sentiment classifiers of chapter 5: naive Bayes, transformers' BERT, and mini_llm's pre-trained BERT.

- ``naive_bayes``, ``hf_bert``, ``hf_tokenizer``, ``mlm``  the three models, their tokenizers and the MLM pre-training
- ``text_data``, ``finetune``, ``imbalance``               batches of reviews, fine-tuning and accuracy, class weights
- ``presets``                                             named sizes and recipes
- ``runs``                                                train and save a run directory (run.json + model files)
- ``evaluate``                                            load a run, predict, evaluate on a split, write_eval
- ``imbalance_sweep``                                     the class-imbalance sweep of the chapter
The metrics (accuracy interval, macro F1, confusion matrix) are in ``mini_llm.evaluation``.
May import: the lower floors (helpers, atomic, jsonfiles, data, nn, train) and evaluation; transformers is imported
here, so importing this package costs seconds. Never scaling or cli.
"""

import warnings

with warnings.catch_warnings():  # transformers -> huggingface_hub imports tqdm.auto, which warns in Jupyter kernels
    warnings.filterwarnings("ignore", message="IProgress not found")  # that lack ipywidgets; harmless, so silenced
    import transformers  # noqa: F401

from mini_llm.tasks.classify.evaluate import evaluate_run, load_classifier, predict_texts, read_eval, write_eval
from mini_llm.tasks.classify.finetune import FineTuneConfig, accuracy, batch_loss, fine_tune, predict_logits
from mini_llm.tasks.classify.hf_bert import EncoderSize, hf_bert_classifier
from mini_llm.tasks.classify.hf_tokenizer import HFEncoder, train_char_tokenizer
from mini_llm.tasks.classify.imbalance import (
    TRUNCATION_SIDES,
    check_class_weights,
    class_prior,
    imbalanced_indices,
    inverse_frequency_weights,
    prior_shift,
    truncate_text,
    weighted_cross_entropy,
)
from mini_llm.tasks.classify.mlm import CharEncoder, MaskedWindows, SpecialVocabulary, masked_lm_loss
from mini_llm.tasks.classify.naive_bayes import CharNGramNaiveBayes
from mini_llm.tasks.classify.presets import MODELS, PRESETS, ClassifyPreset, PretrainConfig, get_preset
from mini_llm.tasks.classify.runs import (
    default_run_dir,
    review_split,
    select_naive_bayes,
    train_hf_bert,
    train_mini_llm,
    train_run,
)
from mini_llm.tasks.classify.text_data import PaddingCollator, SampledBatches, TextClassificationDataset, make_loader

__all__ = [
    "MODELS",
    "PRESETS",
    "TRUNCATION_SIDES",
    "CharEncoder",
    "CharNGramNaiveBayes",
    "ClassifyPreset",
    "EncoderSize",
    "FineTuneConfig",
    "HFEncoder",
    "MaskedWindows",
    "PaddingCollator",
    "PretrainConfig",
    "SampledBatches",
    "SpecialVocabulary",
    "TextClassificationDataset",
    "accuracy",
    "batch_loss",
    "check_class_weights",
    "class_prior",
    "default_run_dir",
    "evaluate_run",
    "fine_tune",
    "get_preset",
    "hf_bert_classifier",
    "imbalanced_indices",
    "inverse_frequency_weights",
    "load_classifier",
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
