"""transformers' BERT trained on imbalanced subsets of the training reviews, without and with class weights."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mini_llm import __version__
from mini_llm.evaluation.classification import classification_metrics
from mini_llm.jsonfiles import Schema, read_format_json
from mini_llm.tasks.classify.finetune import fine_tune, predict_logits
from mini_llm.tasks.classify.hf_bert import hf_bert_classifier
from mini_llm.tasks.classify.hf_tokenizer import HFEncoder, train_char_tokenizer
from mini_llm.tasks.classify.imbalance import class_prior, imbalanced_indices, inverse_frequency_weights
from mini_llm.tasks.classify.presets import get_preset
from mini_llm.tasks.classify.runs import review_split
from mini_llm.tasks.classify.text_data import TextClassificationDataset, make_loader
from mini_llm.train.rundir import write_json

IMBALANCE_FORMAT = "mini_llm.classify.imbalance/1"
# What a sweep written by write_imbalance holds (see mini_llm.jsonfiles.check_schema).
IMBALANCE_SCHEMA: Schema = {
    "command?": (str, None), "preset": str, "seed": int, "minority": int, "torch_threads": int,
    "cpu_count": (int, None), "machine": str, "mini_llm_version": str,
    "size": {"hidden_size": int, "num_hidden_layers": int, "num_attention_heads": int, "intermediate_size": int,
             "dropout": float},
    "finetune": {"epochs": int, "batch_size": int, "lr": float, "warmup_fraction": float, "weight_decay": float,
                 "max_length": int, "eval_every": int, "grad_clip": (float, None), "seed": int},
    "runs": [{"ratio": float, "method": str, "n_train": int, "class_counts": [int], "train_prior": [float],
              "class_weights": ([float], None), "history": [dict], "seconds": float, "metrics": dict,
              "log_odds": [float]}],
}
METHODS = ("none", "weighted")  # plain cross-entropy; cross-entropy with inverse-frequency class weights


def imbalance_sweep(
    preset_name: str,
    ratios: Sequence[float],
    minority: int = 0,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """For each ratio: keep 1/ratio of the minority class, train one BERT per method, score the test split.

    The validation split is measured once, after the last step (no step selection), so both methods are compared
    at the same training length. Each run keeps the test log-odds log P(1)/P(0), from which a prior shift can be
    recomputed.
    """
    if not ratios:
        raise ValueError("ratios must name at least one ratio >= 1")
    preset = get_preset(preset_name)
    texts, labels = review_split("train", preset.max_train)
    validation = TextClassificationDataset(*review_split("validation"))
    test_texts, test_labels = review_split("test")
    test = TextClassificationDataset(test_texts, test_labels)
    runs = []
    for ratio in ratios:
        rows = imbalanced_indices(labels, minority, ratio, seed=seed)
        sub_texts = [texts[i] for i in rows]
        sub_labels = [labels[i] for i in rows]
        weights = inverse_frequency_weights(sub_labels)  # (2,)
        tokenizer = train_char_tokenizer(sub_texts)
        config = preset.finetune
        encode = HFEncoder(tokenizer, config.max_length)
        train_loader = make_loader(
            TextClassificationDataset(sub_texts, sub_labels), encode, config.batch_size, shuffle=True, seed=seed
        )
        config = replace(config, seed=seed, eval_every=config.epochs * len(train_loader))  # one evaluation, at the end
        validation_loader = make_loader(validation, encode, 128)
        test_loader = make_loader(test, encode, 128)
        for method in METHODS:
            start = time.perf_counter()
            model = hf_bert_classifier(tokenizer, preset.size, config.max_length, seed=seed)
            class_weights = torch.tensor(weights) if method == "weighted" else None
            history = fine_tune(model, train_loader, validation_loader, config, progress, class_weights=class_weights)
            logits, _, _ = predict_logits(model, test_loader)  # (N_test, 2)
            seconds = time.perf_counter() - start
            predictions = logits.argmax(dim=-1).numpy()  # (N_test,)
            metrics = classification_metrics(test_labels, predictions).to_dict()
            runs.append(
                {
                    "ratio": ratio,
                    "method": method,
                    "n_train": len(sub_labels),
                    "class_counts": np.bincount(sub_labels, minlength=2).tolist(),
                    "train_prior": class_prior(sub_labels).tolist(),
                    "class_weights": weights.tolist() if method == "weighted" else None,
                    "history": history,
                    "seconds": seconds,
                    "metrics": metrics,
                    "log_odds": [round(float(v), 4) for v in (logits[:, 1] - logits[:, 0]).tolist()],
                }
            )
            if log is not None:
                log(
                    f"ratio 1:{ratio:g} {method}: test accuracy {metrics['accuracy']['value']:.2%}, "
                    f"macro F1 {metrics['macro_f1']['value']:.4f}, minority recall "
                    f"{metrics['per_class'][minority]['recall']:.2%} ({seconds / 60:.1f} min)"
                )
    return {
        "format": IMBALANCE_FORMAT,
        "preset": preset_name,
        "seed": seed,
        "minority": minority,
        "size": preset.size.as_dict(),
        "finetune": asdict(preset.finetune),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "mini_llm_version": __version__,
        "runs": runs,
    }


def write_imbalance(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write an imbalance_sweep result as indented JSON, each run's log-odds on one line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result, one_line=("log_odds",))
    return path


def read_imbalance(path: str | os.PathLike) -> dict[str, Any]:
    """A sweep written by write_imbalance; ValueError if the file is not one."""
    payload = read_format_json(path, IMBALANCE_FORMAT, "an imbalance sweep", IMBALANCE_SCHEMA)
    if len({len(run["log_odds"]) for run in payload["runs"]}) > 1:
        raise ValueError(f"{path}: the runs' log_odds lists differ in length (one per test review each)")
    return payload
