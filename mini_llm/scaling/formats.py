"""After the paper: round-to-nearest, GPTQ, AWQ, the microscaling formats and llama.cpp's block formats, measured on
one axis of exact total model bits (``mini-llm formats``).

Subjects:

- ``zoo-<size>``: each cached model of the main zoo at its final checkpoint; held-out perplexity per character on
  the zoo's 64 validation windows; calibration on 32 training windows of 128 characters (4,096 inputs per layer).
- ``minilm``: all-MiniLM-L6-v2; sentence-embedding error 1 - cos(e, e_fp32) averaged over 256 sentences from the end of
  the World English Bible; calibration on 64 windows of 128 word pieces from its beginning (8,192 inputs per layer).
- ``smollm2``: SmolLM2-135M-Instruct from its GGUF file (Q4_1 weights dequantized: see ``llm_ppl``); perplexity per
  token on 4 windows of 512 tokens at the end of the World English Bible; calibration on 16 windows of 512 tokens
  from its beginning (8,192 inputs per layer, 5.3 times the widest layer's 1,536; no overlap with the measured text).

Every subject starts from its 16-bit model (parameters rounded to float16). Each format stores the linear layers of
the transformer blocks (``quant.calibrated.store_blocks``); the token embedding (tied to the LM head), norms, biases
and everything else stay in 16 bits for every format, as the GPTQ and AWQ papers leave them. Bits are exact: each
layer's stored bits plus 16 per other parameter (tied tensors once). One CSV row per (subject, format), appended as
it goes; rows already in the file are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mini_llm import __version__
from mini_llm.quant.calibrated import Fold, store_blocks
from mini_llm.quant.formats import parse_format
from mini_llm.scaling.sweep import drop_partial_line, evaluate, held_out_windows, row_appender, to_16bit

SUBJECTS = ("zoo", "minilm", "smollm2")
ZOO_FORMATS = (
    "fp16",
    *(f"rtn-{book}{k}-{block}" for book in ("nf", "int") for k in (2, 3, 4) for block in (32, 64, 128, 256)),
    *(f"{method}-{book}{k}-64" for method in ("gptq", "awq") for book in ("nf", "int") for k in (2, 3, 4)),
    "mxfp4", "nvfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3",
    "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_0", "q4_1", "q8_0",
)  # fmt: skip
SMOLLM2_FORMATS = (
    "fp16",
    *(f"rtn-{book}{k}-64" for book in ("nf", "int") for k in (2, 3, 4)), "rtn-nf3-32", "rtn-nf4-32",
    *(f"{method}-{book}{k}-64" for method in ("gptq", "awq") for book in ("nf", "int") for k in (3, 4)),
    "mxfp4", "nvfp4", "mxfp6_e2m3", "mxfp8_e4m3",
    "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_0", "q8_0",
)  # fmt: skip
FOLDS: dict[str, tuple[Fold, ...]] = {  # AWQ's folds per block class, as the reference code applies them
    "Block": (("ln_1", ("attn.c_attn",)), ("ln_2", ("mlp.c_fc",))),  # GPT (q, k, v share one c_attn)
    "LlamaBlock": (
        ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ("self_attn.v_proj", ("self_attn.o_proj",)),  # skipped with grouped-query attention (shapes differ)
        ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
        ("mlp.up_proj", ("mlp.down_proj",)),
    ),
    "EncoderLayer": (("attn.value", ("attn.c_proj",)),),  # post-LN BERT: its LayerNorms also feed the residual
}
ZOO_CALIBRATION_WINDOWS = 32
MINILM_SENTENCES = 256
CALIBRATION_CHARS = 60_000  # the beginning of the World English Bible (Genesis), about 14,000 tokens
COLUMNS = (
    "model", "format", "method", "name", "bits", "blocksize", "metric", "value", "loss",
    "total_bits", "linear_bits", "embedding_bits", "other_bits", "params", "bits_per_param",
    "linear_bits_per_weight", "weight_error", "seconds", "mini_llm_version",
)  # fmt: skip
Log = Callable[[str], None]


@dataclass
class Subject:
    """A model to compare formats on: its 16-bit baseline, where its blocks are, calibration and its score."""

    name: str
    model: nn.Module  # the 16-bit baseline (float16-rounded parameters, float32 computation)
    blocks: Sequence[nn.Module]
    embedding: nn.Module  # the token embedding (counted apart)
    calibration: list[object]
    forward: Callable[[nn.Module, object], object]
    score: Callable[[nn.Module], tuple[str, float, float]]  # model -> (metric, value, loss or nan)
    formats: tuple[str, ...]


def zoo_subjects(cache_dir: Path | None = None, preset_set: str = "main") -> list[Subject]:
    """One subject per model (seed 0) of a zoo preset set whose final checkpoint is cached."""
    from mini_llm.data import prepare_data
    from mini_llm.scaling.sweep import EVAL_WINDOWS
    from mini_llm.scaling.zoo import plan, zoo_checkpoints
    from mini_llm.train.checkpoint import load_weights

    jobs = [job for job in plan(preset_set) if job.seed == 0]
    found = zoo_checkpoints(jobs, cache_dir, fractions=[1])
    if not found:
        return []
    data = prepare_data()
    subjects = []
    for checkpoint in found:
        model = to_16bit(load_weights(checkpoint.path)[0]).eval()
        block = model.config.block_size
        x, y = held_out_windows(data.val, block, EVAL_WINDOWS)  # (W, T) each
        calibration = list(held_out_windows(data.train, block, ZOO_CALIBRATION_WINDOWS)[0].split(8))  # (8, T) each

        def score(m: nn.Module, x=x, y=y) -> tuple[str, float, float]:
            metrics = evaluate(m, x, y)
            return "perplexity", metrics["perplexity"], metrics["loss"]

        subjects.append(Subject(
            f"zoo-{checkpoint.job.size.name}", model, list(model.transformer.h), model.transformer.wte, calibration,
            lambda m, batch: m(batch), score, ZOO_FORMATS,
        ))
    return subjects


def _bible_sentences(text: str, count: int) -> list[str]:
    """The last `count` sentences (split after '. ') of text that hold at least 5 words."""
    sentences = [s.strip() + "." for s in text.split(". ") if len(s.split()) >= 5]
    return sentences[-count:]


def minilm_subject() -> Subject:
    """all-MiniLM-L6-v2: sentence-embedding error against its float32 embeddings."""
    from tokenizers import Tokenizer

    from mini_llm.data import load_world_english_bible
    from mini_llm.interop import load_minilm
    from mini_llm.interop.sentence_embedding import encode_sentences

    model, tokenizer = load_minilm()
    text = load_world_english_bible()
    sentences = _bible_sentences(text, MINILM_SENTENCES)
    reference = encode_sentences(model, tokenizer, sentences)  # (N, C) unit length, float32 weights
    whole = Tokenizer.from_str(tokenizer.to_str())  # the same tokenizer without its truncation to 256 pieces
    whole.no_truncation()
    ids = torch.tensor(whole.encode(text[:CALIBRATION_CHARS]).ids[:-1], dtype=torch.long)  # (N,) without [SEP]
    calibration = list(held_out_windows(ids, 128, 64)[0].split(4))  # 16 x (4, 128)

    def score(m: nn.Module) -> tuple[str, float, float]:
        cosine = (encode_sentences(m, tokenizer, sentences) * reference).sum(dim=1)  # (N,)
        return "embedding_error", float((1.0 - cosine).mean()), math.nan

    model16 = to_16bit(model).eval()
    return Subject("minilm", model16, list(model16.layers), model16.embeddings.word_embeddings, calibration,
                   lambda m, batch: m(batch), score, ZOO_FORMATS)


def smollm2_subject(eval_tokens: int = 2048, window: int = 512) -> Subject:
    """SmolLM2-135M-Instruct from its GGUF file: perplexity on the end of the World English Bible."""
    from mini_llm.data import load_world_english_bible
    from mini_llm.interop.gguf import gguf_tokenizer, llama_from_reader, read_gguf, smollm2_path
    from mini_llm.scaling.llm_ppl import text_windows

    reader = read_gguf(smollm2_path())
    model = to_16bit(llama_from_reader(reader)).eval()
    tokenizer = gguf_tokenizer(reader)
    x, y = text_windows(tokenizer, "english", eval_tokens, window)  # (W, window) each
    start = torch.tensor(tokenizer.encode(load_world_english_bible()[:CALIBRATION_CHARS]).ids, dtype=torch.long)
    calibration = list(held_out_windows(start, window, 16)[0].split(2))  # 8 x (2, window)

    def score(m: nn.Module) -> tuple[str, float, float]:
        metrics = evaluate(m, x, y, batch_size=2)
        return "perplexity", metrics["perplexity"], metrics["loss"]

    return Subject("smollm2", model, list(model.model.layers), model.model.embed_tokens, calibration,
                   lambda m, batch: m(batch), score, SMOLLM2_FORMATS)


def stored_bits(model: nn.Module, layer_bits: dict[str, int], embedding: nn.Module) -> dict[str, int]:
    """Exact bits: stored bits of the layers in layer_bits, 16 per other parameter (tied tensors once)."""
    stored = {id(model.get_submodule(name).weight) for name in layer_bits}
    parts = {"linear": sum(layer_bits.values()), "embedding": 0, "other": 0}
    for param in model.parameters():  # shared tensors appear once
        if id(param) not in stored:
            parts["embedding" if param is embedding.weight else "other"] += 16 * param.numel()
    return parts


@torch.no_grad()
def relative_weight_error(model: nn.Module, baseline: nn.Module, names: Sequence[str]) -> float:
    """sqrt(sum ||W - W16||^2 / sum ||W16||^2) over the named linear layers (nan for AWQ: its weights are folded)."""
    num = den = 0.0
    for name in names:
        w, w16 = model.get_submodule(name).weight.double(), baseline.get_submodule(name).weight.double()
        num += float(((w - w16) ** 2).sum())
        den += float((w16**2).sum())
    return math.sqrt(num / den)


def measure(subject: Subject, spec: str) -> dict[str, object]:
    """One CSV row: subject's 16-bit model stored in format spec, scored and counted."""
    fmt = parse_format(spec)
    start = time.perf_counter()
    copies: dict[int, object] = {}  # deepcopy's memo: id of each original object -> its copy
    model = copy.deepcopy(subject.model, copies)
    blocks = [copies[id(block)] for block in subject.blocks]
    layer_bits = store_blocks(model, blocks, fmt, subject.calibration, subject.forward, _folds(blocks))
    metric, value, loss = subject.score(model)
    parts = stored_bits(model, layer_bits, copies[id(subject.embedding)])
    params = sum(p.numel() for p in model.parameters())
    weights = sum(model.get_submodule(name).weight.numel() for name in layer_bits)
    total = sum(parts.values())
    error = math.nan if fmt.method == "awq" else relative_weight_error(model, subject.model, layer_bits)
    return {
        "model": subject.name, "format": fmt.spec, "method": fmt.method, "name": fmt.name, "bits": fmt.bits,
        "blocksize": "" if fmt.blocksize is None else fmt.blocksize, "metric": metric, "value": repr(value),
        "loss": repr(loss), "total_bits": total, "linear_bits": parts["linear"], "embedding_bits": parts["embedding"],
        "other_bits": parts["other"], "params": params, "bits_per_param": repr(total / params),
        "linear_bits_per_weight": repr(parts["linear"] / weights),
        "weight_error": repr(error),
        "seconds": f"{time.perf_counter() - start:.2f}", "mini_llm_version": __version__,
    }


def _folds(blocks: Sequence[nn.Module]) -> tuple[Fold, ...]:
    return FOLDS.get(type(blocks[0]).__name__, ()) if blocks else ()


def _done(path: Path) -> set[tuple[str, str]]:
    """(model, format) of the rows already in the CSV path; ValueError if it is another kind of file."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} is not a formats CSV of this version (its columns differ); write to a new file")
        return {(row["model"], row["format"]) for row in reader}


def run_formats(
    out: Path, subjects: Sequence[str] = SUBJECTS, formats: Sequence[str] | None = None,
    cache_dir: Path | None = None, say: Log = print, preset_set: str = "main",
) -> int:
    """Measure every (subject, format) not yet in the CSV out; formats default to each subject's list. Rows added."""
    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown or not subjects:
        raise ValueError(f"models must be a non-empty selection of {', '.join(SUBJECTS)}, got {list(subjects)}")
    for spec in formats or ():
        parse_format(spec)  # a bad name fails before any model loads
    done = _done(out)
    drop_partial_line(out)
    added = 0
    with row_appender(out, COLUMNS) as append:
        for kind in subjects:
            loaded = (zoo_subjects(cache_dir, preset_set) if kind == "zoo" else
                      [minilm_subject()] if kind == "minilm" else [smollm2_subject()])
            if not loaded:
                say(f"{kind}: no final checkpoint of the {preset_set} zoo in the cache (mini-llm zoo train); skipped")
            for subject in loaded:
                specs = [s for s in (formats or subject.formats) if (subject.name, parse_format(s).spec) not in done]
                say(f"{subject.name}: {len(specs)} formats to measure")
                for spec in specs:
                    row = measure(subject, spec)
                    append(row)
                    added += 1
                    say(f"{subject.name:>10} {row['format']:>14}: {row['metric']} {float(row['value']):.5g}, "
                        f"{float(row['bits_per_param']):.3f} bits/param ({row['seconds']} s)")
    return added

