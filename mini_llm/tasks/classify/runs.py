"""Train and save the three review classifiers; one run directory per trained model (read back by ``evaluate``).

A run directory follows ``mini_llm.train.rundir`` (``<cache>/classify/<model>-<preset>-seed<seed>`` unless given,
every file written atomically). It holds ``run.json`` (format, model, preset, seed, timings, histories; written
last, so a run without it is incomplete) and the model's files, all safetensors or JSON (no pickle):
- naive-bayes: ``naive_bayes.safetensors`` (log prior, log likelihoods, classes) and ``ngrams.json``
- bert-hf:     ``model/`` (transformers' config.json + model.safetensors) and ``tokenizer/`` (tokenizer.json, ...)
- mini-llm:    ``model.safetensors``, ``bert_config.json`` and ``tokenizer.json`` (CharTokenizer)
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mini_llm import __version__
from mini_llm.atomic import write_safetensors
from mini_llm.data import load_people_daily, load_reviews
from mini_llm.jsonfiles import Schema
from mini_llm.tasks.classify.finetune import fine_tune
from mini_llm.tasks.classify.hf_bert import hf_bert_classifier
from mini_llm.tasks.classify.hf_tokenizer import HFEncoder, train_char_tokenizer
from mini_llm.tasks.classify.mlm import CharEncoder, MaskedWindows, SpecialVocabulary, masked_lm_loss
from mini_llm.tasks.classify.naive_bayes import CharNGramNaiveBayes
from mini_llm.tasks.classify.presets import ClassifyPreset, check_model, get_preset
from mini_llm.tasks.classify.text_data import Encoder, TextClassificationDataset, make_loader
from mini_llm.train.checkpoint import unique_tensors
from mini_llm.train.rundir import read_record, run_dir, write_json, write_record

RUN_FILE = "run.json"
RUN_FORMAT = "mini_llm.classify.run/1"
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
Log = Callable[[str], None]


def default_run_dir(model: str, preset: str, seed: int = 0, cache_dir: str | os.PathLike | None = None) -> Path:
    """<cache>/classify/<model>-<preset>-seed<seed>; cache = cache_dir, $MINI_LLM_CACHE or ~/.cache/mini_llm."""
    return run_dir("classify", f"{check_model(model)}-{preset}-seed{seed}", cache_dir)


def review_split(name: str, max_size: int | None = None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(texts, labels) of the fixed train / validation / test split, the first max_size of them if given."""
    if name not in ("train", *SPLITS):
        raise ValueError(f"split must be one of train, {', '.join(SPLITS)}; got {name!r}")
    part = getattr(load_reviews(), name)
    return part.texts[:max_size], part.labels[:max_size]


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
    write_json(out / NGRAMS_FILE, settings, indent=None)


@contextmanager
def quiet_transformers(quiet: bool = True) -> Iterator[None]:
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
        with quiet_transformers():
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
        write_json(out / BERT_CONFIG_FILE, asdict(config), indent=None)
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
    write_record(out / RUN_FILE, info)
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
    info = read_record(path, RUN_FORMAT, "a classifier run", RUN_SCHEMA)
    try:
        check_model(info["model"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return info


