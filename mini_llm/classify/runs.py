"""Train, save, load and evaluate the three review classifiers; one run directory per trained model.

A run directory holds ``run.json`` (format, model, preset, seed, timings, histories; written last, so a run
without it is incomplete) and the model's files, all safetensors or JSON (no pickle):
- naive-bayes: ``naive_bayes.safetensors`` (log prior, log likelihoods, classes) and ``ngrams.json``
- bert-hf:     ``model/`` (transformers' config.json + model.safetensors) and ``tokenizer/`` (tokenizer.json, ...)
- mini-llm:    ``model.safetensors``, ``bert_config.json`` and ``tokenizer.json`` (CharTokenizer)
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mini_llm import __version__
from mini_llm.atomic import read_safetensors, write_safetensors, write_text_atomic
from mini_llm.classify.finetune import fine_tune, predict_logits
from mini_llm.classify.hf_bert import hf_bert_classifier
from mini_llm.classify.hf_tokenizer import HFEncoder, train_char_tokenizer
from mini_llm.classify.metrics import classification_metrics
from mini_llm.classify.mlm import CharEncoder, MaskedWindows, SpecialVocabulary, masked_lm_loss
from mini_llm.classify.naive_bayes import CharNGramNaiveBayes
from mini_llm.classify.presets import ClassifyPreset, check_model, get_preset
from mini_llm.classify.text_data import Encoder, TextClassificationDataset, make_loader
from mini_llm.data import CharTokenizer, load_people_daily, load_reviews
from mini_llm.helpers import cache_root
from mini_llm.jsonfiles import Schema, check_schema, read_format_json, read_json
from mini_llm.train.checkpoint import load_unique_tensors, unique_tensors

RUN_FILE = "run.json"
RUN_FORMAT = "mini_llm.classify.run/1"
EVAL_FORMAT = "mini_llm.classify.eval/1"
SPLITS = ("validation", "test")
PRETRAIN_HELDOUT = 0.05  # the last 5% of People's Daily paragraphs measure the pre-training loss
NB_ARRAYS, NGRAMS_FILE, BERT_CONFIG_FILE = "naive_bayes.safetensors", "ngrams.json", "bert_config.json"
CURVE = [dict]  # a list of evaluation points (step, losses, accuracy)
# What run.json holds (see check_schema): the loaders use model, preset, seed and the fine-tuning max_length.
RUN_SCHEMA: Schema = {
    "model": str, "preset": str, "seed": int, "mini_llm_version": str, "torch_threads": int, "cpu_count": (int, None),
    "machine": str, "n_train": int, "seconds": float,
    "preset_settings": {"description": str, "max_train": (int, None), "nb_n_max": [int], "nb_alpha": [float],
                        "size": dict, "finetune": {"max_length": int}, "pretrain": dict},
    "selection?": CURVE, "chosen?": {"n_max": int, "alpha": float}, "ngrams?": int, "history?": CURVE,
    "vocab_size?": int, "pretrain_seconds?": float, "pretrain_history?": CURVE, "parameters?": int,
}
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
Log = Callable[[str], None]


def default_run_dir(model: str, preset: str, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """<cache>/classify/<model>-<preset>-seed<seed>; cache = cache_dir, $MINI_LLM_CACHE or ~/.cache/mini_llm."""
    return cache_root(cache_dir) / "classify" / f"{check_model(model)}-{preset}-seed{seed}"


def review_split(name: str, max_size: int | None = None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(texts, labels) of the fixed train / validation / test split, the first max_size of them if given."""
    if name not in ("train", *SPLITS):
        raise ValueError(f"split must be one of train, {', '.join(SPLITS)}; got {name!r}")
    part = getattr(load_reviews(), name)
    return part.texts[:max_size], part.labels[:max_size]


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


def select_naive_bayes(
    preset: ClassifyPreset, progress: bool = False
) -> tuple[CharNGramNaiveBayes, list[dict[str, float]]]:
    """Fit every (n_max, alpha) of the preset on the training split; keep the best on the validation split."""
    from tqdm import tqdm

    train_texts, train_labels = review_split("train", preset.max_train)
    val_texts, val_labels = review_split("validation")
    table, best, best_accuracy = [], None, -1.0
    grid = [(n_max, alpha) for n_max in preset.nb_n_max for alpha in preset.nb_alpha]
    for n_max, alpha in tqdm(grid, desc="naive Bayes grid", disable=not progress):
        model = CharNGramNaiveBayes(n_min=1, n_max=n_max, alpha=alpha).fit(train_texts, train_labels)
        accuracy = float(np.mean(model.predict(val_texts) == np.asarray(val_labels)))
        table.append({"n_max": n_max, "alpha": alpha, "val_accuracy": accuracy})
        if accuracy > best_accuracy:
            best, best_accuracy = model, accuracy
    return best, table


def _save_naive_bayes(model: CharNGramNaiveBayes, out: Path) -> None:
    """naive_bayes.safetensors (arrays) and ngrams.json (settings and the n-gram of every column), atomically."""
    arrays = {
        "class_log_prior": model.class_log_prior,
        "feature_log_prob": model.feature_log_prob,
        "classes": model.classes.astype(np.int64),
    }
    write_safetensors(out / NB_ARRAYS, arrays)
    settings = {"n_min": model.n_min, "n_max": model.n_max, "alpha": model.alpha, "ngrams": list(model.vocabulary)}
    write_text_atomic(out / NGRAMS_FILE, json.dumps(settings, ensure_ascii=False))


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


@contextmanager
def _quiet_transformers(quiet: bool = True) -> Iterator[None]:
    """Hide transformers' own progress bars (saving and loading shards) inside the block when ``quiet``."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _loaders(encode: Encoder, preset: ClassifyPreset) -> tuple[Any, Any]:
    """(shuffled training loader, validation loader) of padded batches."""
    config = preset.finetune
    train = TextClassificationDataset(*review_split("train", preset.max_train))
    validation = TextClassificationDataset(*review_split("validation"))
    return (
        make_loader(train, encode, config.batch_size, shuffle=True, seed=config.seed),
        make_loader(validation, encode, 128),
    )


def train_hf_bert(preset: ClassifyPreset, out: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Tokenizer on the training texts, small BERT from scratch, fine-tuning; saved to ``out`` when given."""
    start = time.perf_counter()
    tokenizer = train_char_tokenizer(review_split("train", preset.max_train)[0])
    model = hf_bert_classifier(tokenizer, preset.size, preset.finetune.max_length, seed=preset.finetune.seed)
    encode = HFEncoder(tokenizer, preset.finetune.max_length)
    history = fine_tune(model, *_loaders(encode, preset), preset.finetune, progress=progress)
    if out is not None:
        with _quiet_transformers():
            model.save_pretrained(out / "model", safe_serialization=True)
            tokenizer.save_pretrained(out / "tokenizer")
    return {
        "model": model,
        "tokenizer": tokenizer,
        "encode": encode,
        "history": history,
        "seconds": time.perf_counter() - start,
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _mini_bert_config(vocabulary: SpecialVocabulary, preset: ClassifyPreset) -> Any:
    """mini_llm's BertConfig for the shared vocabulary and the preset's size."""
    from mini_llm.nn import BertConfig

    return BertConfig(
        vocab_size=vocabulary.vocab_size,
        **preset.size.bert_config_fields(),
        max_position_embeddings=preset.finetune.max_length,
        pad_token_id=vocabulary.pad_id,
    )


def _eval_points(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The Trainer's per-step history cut to its evaluation steps, with the mean training loss since the last one."""
    points, window = [], []
    for record in history:
        window.append(record["train_loss"])
        if record["eval_loss"] is not None:
            points.append(
                {"step": record["step"], "train_loss": sum(window) / len(window), "eval_loss": record["eval_loss"]}
            )
            window = []
    return points


def train_mini_llm(preset: ClassifyPreset, out: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """MLM pre-training of mini_llm's BERT on People's Daily, then fine-tuning on the reviews."""
    from mini_llm.nn import BertForMaskedLM, BertForSequenceClassification
    from mini_llm.train import Trainer, TrainerConfig

    start = time.perf_counter()
    cfg, seed, seq_len = preset.pretrain, preset.finetune.seed, preset.finetune.max_length
    paragraphs = load_people_daily(form="text")
    split = int((1 - PRETRAIN_HELDOUT) * len(paragraphs))
    text = "".join(paragraphs[:split])[: cfg.max_chars]
    heldout = "".join(paragraphs[split:])[: cfg.max_chars]
    vocabulary = SpecialVocabulary.from_texts([text, *review_split("train", preset.max_train)[0]], cfg.min_count)
    config = _mini_bert_config(vocabulary, preset)
    torch.manual_seed(seed)
    mlm_model = BertForMaskedLM(config)
    trainer_config = TrainerConfig(
        max_steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=min(cfg.warmup_steps, cfg.steps // 2),
        min_lr=cfg.lr / 10,
        weight_decay=0.01,
        eval_interval=max(1, cfg.steps // 10),
        eval_batches=5,
        seed=seed,
        progress=progress,
    )
    windows = [
        MaskedWindows(torch.tensor(vocabulary.tokenizer.encode(part)), vocabulary, seq_len) for part in (text, heldout)
    ]
    trainer = Trainer(mlm_model, trainer_config, *windows, loss_fn=masked_lm_loss)
    trainer.train()
    pretrain_seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.bert.load_state_dict(mlm_model.bert.state_dict())
    encode = CharEncoder(vocabulary, seq_len)
    history = fine_tune(model, *_loaders(encode, preset), preset.finetune, progress=progress)
    if out is not None:
        write_safetensors(out / "model.safetensors", unique_tensors(model))
        write_text_atomic(out / BERT_CONFIG_FILE, json.dumps(asdict(config)))
        vocabulary.tokenizer.save(out / "tokenizer.json")
    return {
        "model": model,
        "encode": encode,
        "history": history,
        "vocab_size": vocabulary.vocab_size,
        "seconds": time.perf_counter() - start,
        "pretrain_seconds": pretrain_seconds,
        "pretrain_history": _eval_points(trainer.history),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def train_run(
    model: str,
    preset: str,
    out: str | os.PathLike,
    seed: int = 0,
    progress: bool = False,
    overwrite: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train one classifier into the run directory ``out``; return the contents of its run.json."""
    from dataclasses import replace

    check_model(model)
    settings = get_preset(preset)
    settings = replace(settings, finetune=replace(settings.finetune, seed=seed))
    out = Path(out)
    if (out / RUN_FILE).exists() and not overwrite:
        raise ValueError(f"{out} already holds a trained run; pass overwrite=True (--overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).unlink(missing_ok=True)
    info: dict[str, Any] = {
        "format": RUN_FORMAT,
        "model": model,
        "preset": preset,
        "seed": seed,
        "preset_settings": settings.as_dict(),
        "mini_llm_version": __version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "n_train": len(review_split("train", settings.max_train)[0]),
    }
    start = time.perf_counter()
    if model == "naive-bayes":
        nb, table = select_naive_bayes(settings, progress)
        _save_naive_bayes(nb, out)
        info |= {"selection": table, "chosen": {"n_max": nb.n_max, "alpha": nb.alpha}, "ngrams": len(nb.vocabulary)}
    else:
        trained = (train_hf_bert if model == "bert-hf" else train_mini_llm)(settings, out, progress)
        info |= {key: value for key, value in trained.items() if key not in ("model", "tokenizer", "encode")}
    info["seconds"] = time.perf_counter() - start
    write_text_atomic(out / RUN_FILE, json.dumps(info, ensure_ascii=False, indent=1))
    if log is not None:
        log(f"trained {model} ({preset}) in {info['seconds']:.1f} s with {info['torch_threads']} torch threads")
    return info


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run.json of a run directory; FileNotFoundError / ValueError saying what is wrong."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not run_dir.exists():
        raise FileNotFoundError(f"no trained classifier in {run_dir}: the directory does not exist")
    if not path.exists():
        raise FileNotFoundError(f"no trained classifier in {run_dir}: {path} does not exist (training unfinished?)")
    info = read_format_json(path, RUN_FORMAT, "a classifier run")
    check_schema(info, RUN_SCHEMA, path)
    try:
        check_model(info["model"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return info


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

            with _quiet_transformers():
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
    long_lists = ("predictions", "positive_probability")
    text = json.dumps({k: v for k, v in result.items() if k not in long_lists}, ensure_ascii=False, indent=1)
    tails = [f' "{key}": {json.dumps(result[key], separators=(",", ":"))}' for key in long_lists if key in result]
    text = text[: text.rindex("}")].rstrip() + "".join(",\n" + tail for tail in tails) + "\n}\n"
    write_text_atomic(path, text)
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
