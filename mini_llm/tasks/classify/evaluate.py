"""Load a trained review classifier from its run directory, predict, and evaluate it on a split.

The run directories are those written by ``mini_llm.tasks.classify.runs``; an evaluation is a JSON file
(``write_eval`` / ``read_eval``) holding the metrics of ``mini_llm.evaluation.classification``, the training record
and the per-example predictions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mini_llm.atomic import read_safetensors
from mini_llm.data import CharTokenizer
from mini_llm.evaluation.classification import classification_metrics
from mini_llm.jsonfiles import Schema, check_schema, read_format_json, read_json
from mini_llm.tasks.classify.finetune import predict_logits
from mini_llm.tasks.classify.hf_tokenizer import HFEncoder
from mini_llm.tasks.classify.mlm import CharEncoder, SpecialVocabulary
from mini_llm.tasks.classify.naive_bayes import CharNGramNaiveBayes
from mini_llm.tasks.classify.runs import (
    BERT_CONFIG_FILE,
    CURVE,
    NB_ARRAYS,
    NGRAMS_FILE,
    RUN_FILE,
    RUN_SCHEMA,
    SPLITS,
    quiet_transformers,
    read_run,
    review_split,
)
from mini_llm.tasks.classify.text_data import Encoder, TextClassificationDataset, make_loader
from mini_llm.train.checkpoint import load_unique_tensors
from mini_llm.train.rundir import write_json

EVAL_FORMAT = "mini_llm.classify.eval/1"
# What an evaluation written by write_eval holds; its per-example lists have metrics.n entries.
EVAL_SCHEMA: Schema = {
    "command": (str, None), "model": str, "preset": str, "seed": int, "split": str, "predict_seconds": float,
    "metrics": {"n": int, "accuracy": dict, "macro_f1": dict, "per_class": [dict], "confusion_matrix": [[int]]},
    "training": {key.removesuffix("?") + "?": kind for key, kind in RUN_SCHEMA.items() if key.removesuffix("?") in (
        "seconds", "pretrain_seconds", "torch_threads", "cpu_count", "machine", "n_train", "parameters", "vocab_size",
        "ngrams", "chosen")},
    "curves": {"history?": CURVE, "pretrain_history?": CURVE, "selection?": CURVE},
    "predictions": [int], "positive_probability": [float],
}
NGRAMS_SCHEMA: Schema = {"n_min": int, "n_max": int, "alpha": float, "ngrams": [str]}


class NaiveBayesPredictor:
    """predict_proba for a fitted CharNGramNaiveBayes."""

    def __init__(self, model: CharNGramNaiveBayes) -> None:
        self.model = model

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) class probabilities."""
        return np.exp(self.model.predict_log_proba(list(texts)))


class TorchPredictor:
    """predict_proba for a BERT classifier and its encode function."""

    def __init__(self, model: torch.nn.Module, encode: Encoder, batch_size: int = 128) -> None:
        self.model, self.encode, self.batch_size = model, encode, batch_size

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, C) class probabilities (softmax of the logits), computed in eval mode."""
        dataset = TextClassificationDataset(texts, [0] * len(texts))
        logits, _, _ = predict_logits(self.model, make_loader(dataset, self.encode, self.batch_size))
        return logits.softmax(-1).double().numpy()  # (N, C)


def _load_naive_bayes(run_dir: Path) -> CharNGramNaiveBayes:
    """Inverse of _save_naive_bayes; ValueError naming the file that is damaged or does not fit the other."""
    settings = read_json(run_dir / NGRAMS_FILE, "a naive-Bayes n-gram file")
    check_schema(settings, NGRAMS_SCHEMA, run_dir / NGRAMS_FILE)
    try:
        model = CharNGramNaiveBayes(n_min=settings["n_min"], n_max=settings["n_max"], alpha=settings["alpha"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{run_dir / NGRAMS_FILE}: {error}") from error
    model.vocabulary = {gram: column for column, gram in enumerate(settings["ngrams"])}
    if len(model.vocabulary) != len(settings["ngrams"]):
        raise ValueError(f"{run_dir / NGRAMS_FILE}: the n-gram list repeats entries")
    arrays, _ = read_safetensors(run_dir / NB_ARRAYS, "a naive-Bayes array file", framework="numpy")
    _check_naive_bayes_arrays(arrays, len(model.vocabulary), run_dir)
    model.classes = arrays["classes"]
    model.class_log_prior, model.feature_log_prob = arrays["class_log_prior"], arrays["feature_log_prob"]
    return model


def _check_naive_bayes_arrays(arrays: dict[str, np.ndarray], n_ngrams: int, run_dir: Path) -> None:
    """ValueError naming both files unless the arrays hold C classes, C log priors and (C, n_ngrams) finite log
    likelihoods, n_ngrams the length of the n-gram list."""
    source = run_dir / NB_ARRAYS
    n_classes = arrays["classes"].shape[0] if "classes" in arrays and arrays["classes"].ndim == 1 else -1
    want = {"classes": ((n_classes,), "int64"), "class_log_prior": ((n_classes,), "float64"),
            "feature_log_prob": ((n_classes, n_ngrams), "float64")}
    got = {name: (tuple(a.shape), a.dtype.name) for name, a in arrays.items()}
    if n_classes < 2 or got != want:
        raise ValueError(f"{source}: arrays must be {want} for the {n_ngrams} n-grams of {run_dir / NGRAMS_FILE}, "
                         f"got {got}")
    if not all(np.isfinite(arrays[name]).all() for name in ("class_log_prior", "feature_log_prob")):
        raise ValueError(f"{source}: the log probabilities hold NaN or Inf values; the file is damaged")


def load_classifier(run_dir: str | os.PathLike) -> tuple[NaiveBayesPredictor | TorchPredictor, dict[str, Any]]:
    """(predictor with predict_proba(texts), run.json) of a trained run directory."""
    from mini_llm.nn import BertForSequenceClassification

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    max_length = info["preset_settings"]["finetune"]["max_length"]
    try:
        if info["model"] == "naive-bayes":
            return NaiveBayesPredictor(_load_naive_bayes(run_dir)), info
        if info["model"] == "bert-hf":
            from transformers import BertForSequenceClassification as HFBertForSequenceClassification
            from transformers import PreTrainedTokenizerFast

            with quiet_transformers():
                tokenizer = PreTrainedTokenizerFast.from_pretrained(run_dir / "tokenizer", local_files_only=True)
                model = HFBertForSequenceClassification.from_pretrained(  # safetensors only: never a pickle
                    run_dir / "model", local_files_only=True, use_safetensors=True
                )
            return TorchPredictor(model.eval(), HFEncoder(tokenizer, max_length)), info
    except OSError as error:  # transformers' loaders: name the run (their message names the file)
        message = " ".join(str(error).split())
        raise ValueError(f"{run_dir} holds an incomplete or corrupt {info['model']} run: {message}") from error
    config = _read_bert_config(run_dir / BERT_CONFIG_FILE)
    vocabulary = SpecialVocabulary(CharTokenizer.load(run_dir / "tokenizer.json"))
    if vocabulary.vocab_size != config.vocab_size:
        raise ValueError(f"{run_dir / 'tokenizer.json'} gives {vocabulary.vocab_size} ids but "
                         f"{run_dir / BERT_CONFIG_FILE} says vocab_size {config.vocab_size}: different runs")
    if not 1 <= max_length <= config.max_position_embeddings:
        raise ValueError(f"{run_dir / RUN_FILE}: max_length {max_length} is not in 1..{config.max_position_embeddings} "
                         f"(max_position_embeddings of {run_dir / BERT_CONFIG_FILE})")
    model = BertForSequenceClassification(config)
    tensors, _ = read_safetensors(run_dir / "model.safetensors", "a mini_llm BERT weights file")
    source = f"{run_dir / 'model.safetensors'} (the model of {run_dir / BERT_CONFIG_FILE})"
    load_unique_tensors(model, tensors, source)
    return TorchPredictor(model.eval(), CharEncoder(vocabulary, max_length)), info


def _read_bert_config(path: Path) -> Any:
    """The BertConfig saved in path; ValueError naming the file when it is not one."""
    from mini_llm.nn import BertConfig

    kinds = {f.name: {"int": int, "float": float, "str": str}[f.type] for f in fields(BertConfig)}
    values = read_json(path, "a BERT config")
    check_schema(values, {name + "?": kind for name, kind in kinds.items()}, path)
    if not set(values) <= set(kinds):
        raise ValueError(f"{path}: unknown BERT config entries {sorted(set(values) - set(kinds))}")
    try:
        return BertConfig(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: invalid BERT config: {error}") from error


def predict_texts(run_dir: str | os.PathLike, texts: Sequence[str]) -> np.ndarray:
    """(N, C) class probabilities of ``texts`` under the classifier in run_dir."""
    texts = list(texts)
    if not texts or not all(isinstance(text, str) and text.strip() for text in texts):
        raise ValueError("texts must be a non-empty list of non-blank strings")
    predictor, _ = load_classifier(run_dir)
    return predictor.predict_proba(texts)


def evaluate_run(run_dir: str | os.PathLike, split: str = "test", command: str | None = None) -> dict[str, Any]:
    """Metrics, per-example predictions and the training record of a run on one split, as a JSON-ready dict."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    predictor, info = load_classifier(run_dir)
    texts, labels = review_split(split)
    start = time.perf_counter()
    probabilities = predictor.predict_proba(texts)  # (N, C)
    seconds = time.perf_counter() - start
    predictions = probabilities.argmax(axis=1)  # (N,)
    training = {
        key: info[key]
        for key in (
            "seconds",
            "pretrain_seconds",
            "torch_threads",
            "cpu_count",
            "machine",
            "n_train",
            "parameters",
            "vocab_size",
            "ngrams",
            "chosen",
        )
        if key in info
    }
    curves = {key: info[key] for key in ("history", "pretrain_history", "selection") if key in info}
    return {
        "format": EVAL_FORMAT,
        "command": command,
        "model": info["model"],
        "preset": info["preset"],
        "seed": info["seed"],
        "split": split,
        "metrics": classification_metrics(labels, predictions).to_dict(),
        "predict_seconds": seconds,
        "training": training,
        "curves": curves,
        "predictions": predictions.tolist(),
        "positive_probability": [round(float(p), 4) for p in probabilities[:, 1]],
    }


def write_eval(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write an evaluate_run result as indented JSON, the per-example lists on one line each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result, one_line=("predictions", "positive_probability"))
    return path


def read_eval(path: str | os.PathLike) -> dict[str, Any]:
    """An evaluation written by write_eval; ValueError if the file is not one."""
    payload = read_format_json(path, EVAL_FORMAT, "a classifier evaluation")
    check_schema(payload, EVAL_SCHEMA, path)
    n = payload["metrics"]["n"]
    if not len(payload["predictions"]) == len(payload["positive_probability"]) == n:
        raise ValueError(f"{path}: predictions and positive_probability must have metrics.n = {n} entries, got "
                         f"{len(payload['predictions'])} and {len(payload['positive_probability'])}")
    return payload

