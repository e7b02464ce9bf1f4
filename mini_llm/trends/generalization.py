"""Challenge 3 (泛化能力): the zoo's loss on its training text, on held-out People's Daily and on shopping reviews.

Every model here learned only People's Daily (January 1998). Held-out paragraphs of the same month are the
in-domain test; the shopping reviews of ``load_reviews`` (its test split) are out of domain: other topics, another
register, characters the news never used (they become ``<unk>``; the loss is reported with and without those
targets). The models are the main zoo's 2x64 at its kept checkpoints and the four control sizes of the ``eighth``
and ``quarter`` preset sets (the others of the main zoo when they are in the cache).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from mini_llm import helpers
from mini_llm.atomic import write_csv_atomic
from mini_llm.data import prepare_data
from mini_llm.data.char_corpus import CharData
from mini_llm.scaling.sweep import held_out_windows
from mini_llm.scaling.zoo import ZooCheckpoint, non_embedding_params, plan, zoo_checkpoints
from mini_llm.train.checkpoint import load_weights
from mini_llm.trends.domains import domain_loss, review_tokens

GENERALIZATION_CSV = "future_generalization.csv"
DOMAINS = ("train", "people_daily", "reviews")  # seen text, held-out news, out-of-domain reviews
WINDOWS = 64  # windows of the context length per domain: 8192 targets, as the sweep's evaluation
PRESET_SETS = ("main", "eighth", "quarter")


def domain_tokens(data: CharData) -> dict[str, torch.Tensor]:
    """Token ids of each domain in the zoo's character vocabulary (reviews joined by newlines)."""
    return {"train": data.train, "people_daily": data.val, "reviews": review_tokens(data.tokenizer)[1]}


def available_checkpoints(cache_dir: str | os.PathLike | None = None) -> list[ZooCheckpoint]:
    """Kept weights in the cache: every checkpoint of the main zoo, the final ones of the control sets."""
    found = []
    for preset_set in PRESET_SETS:
        for checkpoint in zoo_checkpoints(plan(preset_set), cache_dir):
            if preset_set == "main" or checkpoint.fraction == 1:
                found.append(checkpoint)
    return found


def generalization_rows(checkpoints: list[ZooCheckpoint], data: CharData) -> list[dict[str, object]]:
    """One row per checkpoint and domain: loss with and without <unk> targets, perplexity, <unk> share."""
    rows = []
    windows = {}
    for checkpoint in checkpoints:
        model = load_weights(checkpoint.path)[0].eval()
        block = model.config.block_size
        for domain, tokens in domain_tokens(data).items():
            x, y = windows.setdefault((domain, block), held_out_windows(tokens, block, WINDOWS))  # (W, T) each
            measured = domain_loss(model, x, y, data.tokenizer.unk_id)
            rows.append({
                "preset_set": checkpoint.job.preset_set, "model": checkpoint.job.size.name,
                "seed": checkpoint.job.seed, "nonembedding_params": non_embedding_params(model.config),
                "tokens": checkpoint.tokens, "finished": int(checkpoint.fraction == 1), "domain": domain,
                "loss": measured["loss"], "perplexity": math.exp(measured["loss"]),
                "loss_known": measured["loss_known"], "unk_share": measured["unk_share"],
            })
    return rows


def run_generalization(out_dir: str | os.PathLike = "results", cache_dir: str | os.PathLike | None = None,
                       threads: int | None = 1) -> Path:
    """Measure every cached zoo checkpoint on the three domains; write GENERALIZATION_CSV."""
    checkpoints = available_checkpoints(cache_dir)
    if not checkpoints:
        raise FileNotFoundError("no zoo checkpoints in the cache: run `mini-llm zoo train --preset-set eighth` first")
    with helpers.threads(threads, libraries=("torch",)):
        rows = generalization_rows(checkpoints, prepare_data())
    path = Path(out_dir) / GENERALIZATION_CSV
    write_csv_atomic(path, list(rows[0]), rows)
    return path
