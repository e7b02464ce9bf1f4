"""The long-context experiment of chapter 9 (FAQ 3, 长文本): learned positions, RoPE and ALiBi past the trained length.

Three char GPTs that differ only in their position information are trained on People's Daily with context 128
(cached in ``<cache>/long_context/<position>-seed<seed>/``), then measured on the validation split:
- ``window_perplexity``: perplexity at evaluation lengths 64..1024, RoPE also with position interpolation ("linear")
  and NTK-aware scaling ("ntk") at factor length / 128 (``rope_scaled``);
- ``chunked_perplexity`` (the source's 分段: chunks scored without the previous chunk) against
  ``sliding_perplexity`` (the source's 窗口化: a window moved by ``stride`` that scores only its new tokens, the
  Hugging Face recipe "Perplexity of fixed-length models"), with the tokens the model had to process;
- ``local_attention_rows``: the RoPE and ALiBi models with sliding-window attention of the trained length
  (``GPTConfig.attn_window``, no retraining) against full attention at 256..2048: perplexity, decode time per token
  and the bytes of the KV cache (bounded by ``nn.window_cache``).
Every perplexity is exp of the mean next-token loss, the losses summed in float64.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mini_llm import helpers
from mini_llm.atomic import write_csv_atomic
from mini_llm.data.char_corpus import prepare_data
from mini_llm.nn import GPT
from mini_llm.scaling.decode_speed import prefill_decode_row
from mini_llm.tasks.charlm import CHECKPOINT_FILE, CharGPTPreset, load_char_gpt, read_run_config, train_char_gpt
from mini_llm.train import TrainerConfig

POSITIONS = ("learned", "rope", "alibi")  # the three models, identical except their position information
TRAIN_LENGTH = 128  # context length the models are trained with
EVAL_LENGTHS = (64, 128, 256, 512, 1024)  # evaluation lengths of the first table
ROPE_SCALINGS = ("linear", "ntk")  # inference-time RoPE scalings tried past TRAIN_LENGTH
SCORED_TOKENS = 65536  # validation tokens scored at every evaluation length (the same text for each)
WINDOW_TEXT = 32768  # validation tokens scored in the chunked / sliding comparison
CHUNKS = (32, 64, 128)  # chunk sizes of the chunked evaluation
STRIDES = (8, 16, 32, 64, 128)  # strides of the sliding window of TRAIN_LENGTH tokens
WINDOW_POSITIONS = ("rope", "learned")  # the models of the chunked / sliding comparison
DEFAULT_STEPS = 750  # training steps per model: about 3 minutes on 2 idle cores (0.24 s a step measured)
BATCH_TOKENS = 8192  # at most this many tokens per forward pass during evaluation
LOCAL_POSITIONS = ("rope", "alibi")  # the models run with sliding-window attention (no position table to outgrow)
LOCAL_LENGTHS = (256, 512, 1024, 2048)  # lengths of the full against sliding-window comparison
LOCAL_COLUMNS = ("position", "attention", "eval_length", "perplexity", "scored_tokens", "decode_ms_per_token",
                 "kv_cache_bytes", "seconds")
LENGTH_COLUMNS = ("position", "scaling", "train_length", "eval_length", "perplexity", "scored_tokens", "seconds")
WINDOW_COLUMNS = ("position", "method", "window", "stride", "perplexity", "tokens_processed", "seconds")
Log = Callable[[str], None]


class ContextPerplexity(NamedTuple):
    """A perplexity with what it cost: tokens scored and tokens the model was run on."""

    perplexity: float  # exp(mean next-token loss) over the scored tokens
    scored_tokens: int  # next-token predictions that entered the mean
    tokens_processed: int  # input tokens fed to the model, over all forward passes (the cost)


Span = tuple[int, int, int]  # (begin, end, first scored input position): inputs ids[begin:end], next tokens shifted


def _check_ids(ids: torch.Tensor) -> torch.Tensor:
    """ids as a 1-D int64 tensor on the CPU; ValueError naming ``ids`` otherwise."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be a 1-D integer tensor of token ids, got {shape}")
    if len(ids) < 2:
        raise ValueError(f"ids must hold at least 2 tokens (an input and its next token), got {len(ids)}")
    return ids.long().cpu()


def _check_context(model: GPT, name: str, value: int) -> int:
    """value as a context length >= 1 the model can run (a learned position table stops at block_size)."""
    value = helpers.check_int(name, value, 1)
    block = model.config.block_size
    if model.config.position == "learned" and value > block:
        raise ValueError(f"{name} must be <= block_size = {block} for a model with learned positions (its table "
                         f"ends there; RoPE and ALiBi models run longer), got {value}")
    return value


def _batches(spans: Sequence[Span]) -> Iterator[list[Span]]:
    """Runs of consecutive spans of equal length, each at most BATCH_TOKENS tokens (at least one span)."""
    group: list[Span] = []
    for span in spans:
        length = span[1] - span[0]
        if group and (length != group[0][1] - group[0][0] or (len(group) + 1) * length > BATCH_TOKENS):
            yield group
            group = []
        group.append(span)
    if group:
        yield group


@torch.no_grad()
def _score_spans(model: GPT, ids: torch.Tensor, spans: Sequence[Span]) -> ContextPerplexity:
    """Run the model on every span and score the next tokens of its inputs from the first scored position on."""
    device = next(model.parameters()).device
    losses, scored, processed = [], 0, 0
    with helpers.eval_mode(model):
        for group in _batches(spans):
            length = group[0][1] - group[0][0]
            begins = torch.tensor([span[0] for span in group])  # (B,)
            index = begins[:, None] + torch.arange(length)[None, :]  # (B, T)
            x, y = ids[index].to(device), ids[index + 1].to(device)  # (B, T) each
            logits = model(x).logits.float()  # (B, T, V)
            nll = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").double()  # (B, T)
            first = torch.tensor([span[2] for span in group])[:, None]  # (B, 1)
            keep = (index >= first).to(device)  # (B, T)
            losses.append(nll[keep].sum().item())
            scored += int(keep.sum())
            processed += x.numel()
    return ContextPerplexity(math.exp(math.fsum(losses) / scored), scored, processed)


def window_perplexity(model: GPT, ids: torch.Tensor, length: int, n_windows: int) -> ContextPerplexity:
    """Perplexity over n_windows non-overlapping windows of ``length`` tokens from the start of ids, every position
    scored."""
    ids = _check_ids(ids)
    length = _check_context(model, "length", length)
    n_windows = helpers.check_int("n_windows", n_windows, 1)
    need = n_windows * length + 1
    if len(ids) < need:
        raise ValueError(f"ids must hold at least n_windows * length + 1 = {n_windows} * {length} + 1 = {need} "
                         f"tokens (inputs and their next tokens), got {len(ids)}; ask for fewer windows")
    spans = [(i * length, (i + 1) * length, i * length) for i in range(n_windows)]
    return _score_spans(model, ids, spans)


def chunked_perplexity(model: GPT, ids: torch.Tensor, chunk: int) -> ContextPerplexity:
    """Perplexity of all of ids cut into non-overlapping chunks, each scored without context from the previous one
    (分段); the last chunk may be shorter."""
    ids = _check_ids(ids)
    chunk = _check_context(model, "chunk", chunk)
    inputs = len(ids) - 1  # every token but the last is an input
    spans = [(begin, min(begin + chunk, inputs), begin) for begin in range(0, inputs, chunk)]
    return _score_spans(model, ids, spans)


def sliding_spans(inputs: int, window: int, stride: int) -> list[Span]:
    """The windows of the sliding evaluation over ``inputs`` input positions: each moves by stride and scores the
    positions after the previous window's end (all of the first window), as in Hugging Face's recipe."""
    spans, previous_end = [], 0
    for begin in range(0, inputs, stride):
        end = min(begin + window, inputs)
        spans.append((begin, end, previous_end))
        previous_end = end
        if end == inputs:
            break
    return spans


def sliding_perplexity(model: GPT, ids: torch.Tensor, window: int, stride: int) -> ContextPerplexity:
    """Perplexity of all of ids with a window of ``window`` tokens moved by ``stride`` (窗口化): every token is
    scored once, with up to window - stride tokens of context more than chunking gives it."""
    ids = _check_ids(ids)
    window = _check_context(model, "window", window)
    stride = helpers.check_int("stride", stride, 1, window, allowed=f"an integer in [1, window = {window}]")
    return _score_spans(model, ids, sliding_spans(len(ids) - 1, window, stride))


def inference_copy(model: GPT, **changes: object) -> GPT:
    """A copy of model with the same weights and other inference-time settings (RoPE scaling, attention window)."""
    copy = GPT(replace(model.config, **changes)).to(next(model.parameters()).device)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def rope_scaled(model: GPT, scaling: str | None, factor: float) -> GPT:
    """A copy of a RoPE model with another inference-time scaling ("linear", "ntk" or None) and factor."""
    if model.config.position != "rope":
        raise ValueError(f"model must use RoPE positions to be rescaled, got position {model.config.position!r}")
    return inference_copy(model, rope_scaling=scaling, rope_factor=float(factor))


def long_context_preset(position: str, steps: int) -> CharGPTPreset:
    """The recipe shared by the three models: 2 layers, 4 heads, width 128, context 128, batch 32, AdamW 2e-3."""
    helpers.check_choice("position", position, POSITIONS)
    steps = helpers.check_int("steps", steps, 1)
    every = max(steps // 5, 1)
    return CharGPTPreset(
        description=f"long-context experiment, {position} positions: 2 layers x 128 wide, context {TRAIN_LENGTH}",
        n_layer=2, n_head=4, n_embd=128, block_size=TRAIN_LENGTH, position=position, name=f"long-context-{position}",
        trainer=TrainerConfig(
            max_steps=steps, batch_size=32, lr=2e-3, warmup_steps=steps // 10, min_lr=2e-4, weight_decay=0.1,
            eval_interval=every, eval_batches=10, checkpoint_interval=every, progress=False,
        ),
    )


def run_dir(position: str, seed: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the model of ``position`` and ``seed`` is cached: <cache>/long_context/<position>-seed<seed>."""
    return helpers.cache_root(cache_dir) / "long_context" / f"{position}-seed{seed}"


def run_status(run: Path, position: str, steps: int, seed: int) -> str:
    """'done', 'partial' (resumable), 'other' (another recipe: retrain) or 'missing' for a run directory."""
    if not (run / CHECKPOINT_FILE).is_file():
        return "missing"
    try:
        saved = read_run_config(run)
        trainer = saved.get("trainer") or {}
        same = (saved["preset"] == f"long-context-{position}" and trainer.get("max_steps") == steps
                and trainer.get("seed") == seed and saved["model"].get("position") == position)
    except (OSError, ValueError, AttributeError):
        return "other"
    if not same:
        return "other"
    training = saved.get("training")
    return "done" if training is not None and training.get("steps") == steps else "partial"


def train_position(position: str, steps: int, seed: int = 0, cache_dir: str | os.PathLike | None = None,
                   log: Log = print) -> GPT:
    """The trained model of ``position``: reused from the cache if finished, resumed if interrupted, else trained."""
    run = run_dir(position, seed, cache_dir)
    status = run_status(run, position, steps, seed)
    if status == "done":
        log(f"{position}: trained already ({run})")
    else:
        log(f"{position}: {status} -> training {steps} steps into {run}")
        start = time.perf_counter()
        train_char_gpt(long_context_preset(position, steps), run, seed=seed, progress=False,
                       resume=status == "partial", overwrite=status == "other", log=log)
        summary = read_run_config(run)["training"]
        log(f"{position}: validation perplexity {summary['val_perplexity']:.2f} after {summary['steps']} steps, "
            f"{time.perf_counter() - start:.0f} s")
    return load_char_gpt(run)[0]


def _timed(measure: Callable[[], ContextPerplexity]) -> tuple[ContextPerplexity, float]:
    """The measurement and the seconds it took."""
    start = time.perf_counter()
    result = measure()
    return result, time.perf_counter() - start


def length_rows(models: dict[str, GPT], val: torch.Tensor, log: Log = print) -> list[dict[str, object]]:
    """Rows of the first table: each model at every evaluation length it can run, RoPE also rescaled."""
    rows = []
    for position, model in models.items():
        for length in EVAL_LENGTHS:
            if position == "learned" and length > TRAIN_LENGTH:
                continue
            variants: list[tuple[str, GPT]] = [("none", model)]
            if position == "rope" and length > TRAIN_LENGTH:
                variants += [(s, rope_scaled(model, s, length / TRAIN_LENGTH)) for s in ROPE_SCALINGS]
            for scaling, variant in variants:
                result, seconds = _timed(lambda m=variant, n=length: window_perplexity(m, val, n, SCORED_TOKENS // n))
                rows.append({"position": position, "scaling": scaling, "train_length": TRAIN_LENGTH,
                             "eval_length": length, "perplexity": round(result.perplexity, 4),
                             "scored_tokens": result.scored_tokens, "seconds": round(seconds, 2)})
                log(f"{position:>7} {scaling:>6} length {length:>4}: perplexity {result.perplexity:.3f}")
    return rows


def window_rows(models: dict[str, GPT], val: torch.Tensor, log: Log = print) -> list[dict[str, object]]:
    """Rows of the second table: chunked and sliding evaluation of the same held-out text at the trained context."""
    text = val[: WINDOW_TEXT + 1]  # (N + 1,): N scored next tokens
    rows = []
    for position in WINDOW_POSITIONS:
        model = models[position]
        runs = [("chunked", chunk, chunk, lambda m=model, c=chunk: chunked_perplexity(m, text, c)) for chunk in CHUNKS]
        runs += [("sliding", TRAIN_LENGTH, stride,
                  lambda m=model, s=stride: sliding_perplexity(m, text, TRAIN_LENGTH, s)) for stride in STRIDES]
        for method, window, stride, measure in runs:
            result, seconds = _timed(measure)
            rows.append({"position": position, "method": method, "window": window, "stride": stride,
                         "perplexity": round(result.perplexity, 4), "tokens_processed": result.tokens_processed,
                         "seconds": round(seconds, 2)})
            log(f"{position:>7} {method:>7} window {window:>3} stride {stride:>3}: perplexity "
                f"{result.perplexity:.3f}, {result.tokens_processed:,} tokens processed")
    return rows


def local_attention_rows(
    models: dict[str, GPT], val: torch.Tensor, window: int = TRAIN_LENGTH, new_tokens: int = 16, log: Log = print,
) -> list[dict[str, object]]:
    """Rows of the third table: full against sliding-window attention (no retraining) at lengths past the trained one:
    perplexity, and decoding after a prompt of that length (ms per token, bytes the KV cache holds)."""
    rows = []
    for position in LOCAL_POSITIONS:
        windowed = inference_copy(models[position], attn_window=window)
        variants = (("full", models[position]), (f"window-{window}", windowed))
        for attention, variant in variants:
            for length in LOCAL_LENGTHS:
                result, seconds = _timed(lambda m=variant, n=length: window_perplexity(m, val, n, SCORED_TOKENS // n))
                cost = prefill_decode_row(variant, 1, length, new_tokens, repeats=2)
                rows.append({"position": position, "attention": attention, "eval_length": length,
                             "perplexity": round(result.perplexity, 4), "scored_tokens": result.scored_tokens,
                             "decode_ms_per_token": round(cost["decode_ms_per_token"], 4),
                             "kv_cache_bytes": cost["kv_cache_bytes"], "seconds": round(seconds, 2)})
                log(f"{position:>7} {attention:>10} length {length:>4}: perplexity {result.perplexity:.3f}, "
                    f"{cost['decode_ms_per_token']:.3f} ms per token, cache {cost['kv_cache_bytes']:,} bytes")
    return rows


def run_local_attention(
    out_csv: str | os.PathLike, *, steps: int = DEFAULT_STEPS, seed: int = 0,
    cache_dir: str | os.PathLike | None = None, log: Log = print,
) -> list[dict[str, object]]:
    """Train (or reuse) the RoPE and ALiBi models, measure full against sliding-window attention, write the CSV."""
    steps = helpers.check_int("steps", steps, 1)
    seed = helpers.check_seed(seed)
    models = {position: train_position(position, steps, seed, cache_dir, log) for position in LOCAL_POSITIONS}
    rows = local_attention_rows(models, prepare_data().val, log=log)
    write_csv_atomic(out_csv, LOCAL_COLUMNS, rows)
    return rows


def run_long_context(
    out_csv_lengths: str | os.PathLike, out_csv_windows: str | os.PathLike, *, steps: int = DEFAULT_STEPS,
    seed: int = 0, cache_dir: str | os.PathLike | None = None, log: Log = print,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Train (or reuse) the three models, measure both tables on the validation split and write the two CSVs."""
    steps = helpers.check_int("steps", steps, 1)
    seed = helpers.check_seed(seed)
    models = {position: train_position(position, steps, seed, cache_dir, log) for position in POSITIONS}
    val = prepare_data().val  # (N_val,)
    lengths = length_rows(models, val, log)
    write_csv_atomic(out_csv_lengths, LENGTH_COLUMNS, lengths)
    windows = window_rows(models, val, log)
    write_csv_atomic(out_csv_windows, WINDOW_COLUMNS, windows)
    return lengths, windows
