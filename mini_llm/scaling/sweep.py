"""The k-bit sweep: quantize every kept checkpoint of the zoo in many ways and measure it on held-out text.

Grid: k in 2..8 (plus the 16-bit baseline), codebooks int / float / dynamic / quantile / nf, blocks of the whole
tensor, 1024, 256 or 64 values, with or without outlier handling (a fraction of each layer's input dimensions kept in
float16, chosen by calibration on training text), and the tied embedding / LM head matrix quantized like the linear
layers or kept in 16 bits. Everything else (LayerNorms, biases, position embeddings) counts as 16 bits.

The starting point of every run is the 16-bit model: the float32 weights rounded to float16 (computation stays in
float32). Bits are counted exactly with ``mini_llm.quant``: packed codes, one float32 absmax per block, the 2**k
float32 table of a quantile codebook, float16 outlier columns and their int32 indices.

Metrics on a fixed held-out subset (evenly spaced windows of the validation split): mean next-character
cross-entropy (nats), perplexity = exp(loss), and next-character top-1 accuracy. One CSV row per run, appended as
it goes; rows already in the file are skipped, so an interrupted sweep resumes.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mini_llm import __version__, helpers
from mini_llm.data import CharData, prepare_data
from mini_llm.nn import GPT
from mini_llm.quant import CODEBOOKS, QuantizedLinear, quantize_model
from mini_llm.quant.checks import check_bits, check_blocksize
from mini_llm.scaling.zoo import ZooCheckpoint
from mini_llm.train.checkpoint import load_weights

BASELINE_BITS = 16  # the unquantized reference: every parameter in float16
EMBEDDINGS = ("quantized", "16bit")  # the tied embedding / LM head matrix: quantized like the linear layers, or not
ALL_BITS = (2, 3, 4, 5, 6, 7, 8, BASELINE_BITS)
ALL_BLOCKSIZES: tuple[int | None, ...] = (None, 1024, 256, 64)  # None: one block for the whole tensor
OUTLIER_FRACTION = 0.02  # share of each layer's input dimensions kept in float16 with outlier handling (at least 1)
EVAL_WINDOWS = 64  # held-out windows of block_size + 1 characters
CALIBRATION_WINDOWS = 16  # training windows for choosing the outlier dimensions
PARAM_BITS = 16  # bits of every parameter that is not quantized
COLUMNS = (
    "preset_set", "model", "seed", "n_layer", "n_embd", "n_head", "vocab_size", "params", "nonembedding_params",
    "step", "tokens", "fraction",
    "bits", "codebook", "blocksize", "outliers", "outlier_fraction", "embedding",
    "eval_tokens", "loss", "perplexity", "accuracy",
    "total_bits", "linear_bits", "embedding_bits", "other_bits", "bits_per_param",
    "seconds", "mini_llm_version",
)  # fmt: skip
KEY_COLUMNS = ("preset_set", "model", "seed", "step", "bits", "codebook", "blocksize", "outliers", "outlier_fraction",
               "embedding", "eval_tokens")
Log = Callable[[str], None]


@dataclass(frozen=True)
class QuantConfig:
    """One way to store the model: k bits with a codebook and block size, outliers, and what happens to embeddings."""

    bits: int  # k (2..8), or BASELINE_BITS for the unquantized 16-bit model
    codebook: str  # one of mini_llm.quant.CODEBOOKS, or "fp16" for the baseline
    blocksize: int | None  # values per absmax; None = the whole tensor
    outliers: bool = False  # keep the largest input dimensions of each layer in float16
    embedding: str = "quantized"  # "quantized" or "16bit"
    centered: bool = False  # subtract each block's midrange first (affine blocks); not an axis of the zoo sweep

    @property
    def is_baseline(self) -> bool:
        """True for the 16-bit reference."""
        return self.bits == BASELINE_BITS

    @classmethod
    def baseline(cls) -> QuantConfig:
        """The 16-bit reference configuration."""
        return cls(BASELINE_BITS, "fp16", None, False, "16bit")


@dataclass(frozen=True)
class SweepGrid:
    """The configurations a sweep runs: the product of its axes, plus the baseline if BASELINE_BITS is in bits."""

    bits: tuple[int, ...] = ALL_BITS
    codebooks: tuple[str, ...] = CODEBOOKS
    blocksizes: tuple[int | None, ...] = ALL_BLOCKSIZES
    outliers: tuple[bool, ...] = (False, True)
    embeddings: tuple[str, ...] = ("quantized",)

    def __post_init__(self) -> None:
        for name in ("bits", "codebooks", "blocksizes", "outliers", "embeddings"):
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        for bits in self.bits:
            if bits != BASELINE_BITS:
                check_bits(bits)
        for book in self.codebooks:
            if book not in CODEBOOKS:
                raise ValueError(f"codebook must be one of {', '.join(CODEBOOKS)}, got {book!r}")
        for blocksize in self.blocksizes:
            check_blocksize(blocksize)
        for embedding in self.embeddings:
            if embedding not in EMBEDDINGS:
                raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got {embedding!r}")

    def configs(self) -> list[QuantConfig]:
        """Every configuration of the grid, the baseline first."""
        configs = [QuantConfig.baseline()] if BASELINE_BITS in self.bits else []
        for bits in sorted(b for b in self.bits if b != BASELINE_BITS):
            for book in self.codebooks:
                for blocksize in self.blocksizes:
                    for outliers in self.outliers:
                        for embedding in self.embeddings:
                            configs.append(QuantConfig(bits, book, blocksize, outliers, embedding))
        return configs


def held_out_windows(tokens: torch.Tensor, block_size: int, n_windows: int = EVAL_WINDOWS) -> tuple[torch.Tensor, ...]:
    """n_windows evenly spaced windows of a token sequence: inputs x and next tokens y, each (n_windows, block_size)."""
    if n_windows < 1 or len(tokens) < block_size + 1:
        raise ValueError(f"need n_windows >= 1 and at least {block_size + 1} tokens, got {n_windows}, {len(tokens)}")
    starts = torch.arange(n_windows) * (len(tokens) - block_size - 1) // max(n_windows - 1, 1)  # (W,)
    index = starts[:, None] + torch.arange(block_size)[None, :]  # (W, T)
    return tokens[index], tokens[index + 1]  # (W, T), (W, T)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 16) -> dict[str, float]:
    """Mean next-token cross-entropy (nats), perplexity and top-1 accuracy of model over all positions of (x, y)."""
    loss_sum, correct = 0.0, 0
    with helpers.eval_mode(model):
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size]).logits  # (B, T, V)
            target = y[i : i + batch_size]  # (B, T)
            loss_sum += F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum").item()  # float32 sum
            correct += int((logits.argmax(dim=-1) == target).sum())
    loss = loss_sum / y.numel()
    return {"loss": loss, "perplexity": math.exp(loss), "accuracy": correct / y.numel()}


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The input token embedding of a GPT (transformer.wte) or a Llama (model.embed_tokens)."""
    return model.transformer.wte if isinstance(model, GPT) else model.model.embed_tokens


def to_16bit(model: GPT) -> GPT:
    """A copy of model whose parameters are rounded to float16 (and kept as float32 for computation)."""
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for param in copied.parameters():  # tied tensors appear once
            param.copy_(param.half().float())
    return copied


def quantized_copy(
    model16: GPT, config: QuantConfig, calibration: Sequence[torch.Tensor] = (),
    outlier_fraction: float = OUTLIER_FRACTION,
) -> GPT:
    """A copy of the 16-bit model with its linear layers (and the tied embedding if asked) quantized per config."""
    quantized = copy.deepcopy(model16)
    if config.is_baseline:
        return quantized
    embedding = config.embedding == "quantized"
    if embedding and not model16.config.tie_weights:
        raise ValueError("embedding='quantized' needs tied embeddings (GPTConfig.tie_weights=True)")
    quantize_model(
        quantized, config.bits, config.codebook, config.blocksize, centered=config.centered,
        outlier_fraction=outlier_fraction if config.outliers else 0.0,
        calibration=list(calibration) if config.outliers else None,
        forward=lambda m, batch: m(batch), skip=() if embedding else ("lm_head",),
    )
    if embedding:  # the embedding lookup reads the same stored matrix as the (quantized) LM head
        weight = quantized.lm_head.dequantized_weight()  # (V, C)
        token_embedding(quantized).weight = nn.Parameter(weight, requires_grad=False)
    return quantized


def bit_breakdown(model: GPT) -> dict[str, int]:
    """Stored bits of a (quantized) GPT or Llama: linear layers of the blocks, embedding / LM head, everything else.

    QuantizedLinear layers count their ``stored_bits()`` (codes, scales, tables, outlier columns); every other
    parameter and every bias counts PARAM_BITS per value; the tied matrix is counted once.
    """
    parts = {"linear": 0, "embedding": 0, "other": 0}
    wte = token_embedding(model)
    skip: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            part = "embedding" if name == "lm_head" else "linear"
            parts[part] += module.stored_bits()
            if module.bias is not None:
                parts["other"] += PARAM_BITS * module.bias.numel()
            if part == "embedding":
                skip.add(id(wte.weight))  # the dequantized copy used for the lookup
    linear_weights = {id(m.weight) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"}
    embedding = {id(wte.weight), id(getattr(model.lm_head, "weight", None))}
    for param in model.parameters():  # shared tensors appear once
        if id(param) in skip:
            continue
        part = "embedding" if id(param) in embedding else "linear" if id(param) in linear_weights else "other"
        parts[part] += PARAM_BITS * param.numel()
    return parts


def _blocksize_text(blocksize: int | None) -> str:
    return "tensor" if blocksize is None else str(blocksize)


def _key(checkpoint: ZooCheckpoint, config: QuantConfig, outlier_fraction: float, eval_tokens: int) -> tuple:
    """The CSV cells that identify a run, as text."""
    return (
        checkpoint.job.preset_set, checkpoint.job.size.name, str(checkpoint.job.seed), str(checkpoint.step),
        str(config.bits), config.codebook, "" if config.is_baseline else _blocksize_text(config.blocksize),
        str(int(config.outliers)), repr(outlier_fraction if config.outliers else 0.0), config.embedding,
        str(eval_tokens),
    )


def drop_partial_line(path: Path) -> None:
    """Cut a last line that a crash left without its newline (its run is redone)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


def _done_keys(path: Path) -> set[tuple]:
    """Keys of the rows already in a sweep CSV; ValueError if the file is not one."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(line for line in file if not line.startswith("#"))
        header = next(reader, None)
        if header is None:
            return set()
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path} is not a sweep CSV of this version (its columns differ); write to a new file")
        index = [COLUMNS.index(name) for name in KEY_COLUMNS]
        return {tuple(row[i] for i in index) for row in reader if len(row) == len(COLUMNS)}


def _row(
    checkpoint: ZooCheckpoint, model: GPT, config: QuantConfig, outlier_fraction: float, metrics: dict[str, float],
    parts: dict[str, int], eval_tokens: int, seconds: float,
) -> dict[str, object]:
    """One CSV row (cells as text) for a run."""
    key = dict(zip(KEY_COLUMNS, _key(checkpoint, config, outlier_fraction, eval_tokens), strict=True))
    params = sum(p.numel() for p in model.parameters())
    total = sum(parts.values())
    config_gpt = model.config
    return key | {
        "n_layer": config_gpt.n_layer, "n_embd": config_gpt.n_embd, "n_head": config_gpt.n_head,
        "vocab_size": config_gpt.vocab_size, "params": params,
        "nonembedding_params": params - model.transformer.wte.weight.numel() - model.transformer.wpe.weight.numel(),
        "tokens": checkpoint.tokens, "fraction": repr(checkpoint.fraction),
        "loss": repr(metrics["loss"]), "perplexity": repr(metrics["perplexity"]), "accuracy": repr(metrics["accuracy"]),
        "total_bits": total, "linear_bits": parts["linear"], "embedding_bits": parts["embedding"],
        "other_bits": parts["other"], "bits_per_param": repr(total / params), "seconds": f"{seconds:.3f}",
        "mini_llm_version": __version__,
    }


def _check_options(eval_windows: int, outlier_fraction: float) -> None:
    """ValueError naming eval_windows or outlier_fraction when it is out of range."""
    if not 0.0 < outlier_fraction < 1.0:
        raise ValueError(f"outlier_fraction must be in (0, 1), got {outlier_fraction!r}")
    if eval_windows < 1:
        raise ValueError(f"eval_windows must be >= 1, got {eval_windows!r}")


def plan_runs(
    path: Path, checkpoints: Sequence[ZooCheckpoint], grid: SweepGrid, eval_windows: int, outlier_fraction: float,
    say: Log,
) -> list[tuple[ZooCheckpoint, list[QuantConfig]]]:
    """The runs not yet in the CSV ``path``: (checkpoint, its missing configurations), in sweep order.

    Checks the options, reads the keys already written and cuts a row that a crash left half written.
    """
    _check_options(eval_windows, outlier_fraction)
    done = _done_keys(path)
    drop_partial_line(path)
    configs = grid.configs()
    todo = []
    for checkpoint in checkpoints:
        eval_tokens = eval_windows * checkpoint.job.size.block_size
        missing = [c for c in configs if _key(checkpoint, c, outlier_fraction, eval_tokens) not in done]
        if missing:
            todo.append((checkpoint, missing))
    n_runs = sum(len(missing) for _, missing in todo)
    say(f"sweep: {len(checkpoints)} checkpoints x {len(configs)} configurations; {n_runs} runs to do, "
        f"{len(checkpoints) * len(configs) - n_runs} already in {path}")
    return todo


@contextmanager
def row_appender(path: Path, columns: Sequence[str] = COLUMNS) -> Iterator[Callable[[dict[str, object]], None]]:
    """A function that appends one row to the CSV ``path`` and flushes it (header first in a new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        if file.tell() == 0:
            writer.writeheader()

        def append(row: dict[str, object]) -> None:
            writer.writerow(row)
            file.flush()

        yield append


def checkpoint_rows(
    checkpoint: ZooCheckpoint, configs: Sequence[QuantConfig], eval_windows: int, outlier_fraction: float,
    data: CharData,
) -> Iterator[dict[str, object]]:
    """The CSV rows of one checkpoint, one per configuration in order: the weights are loaded once for all of them.

    The one unit of sweep work: the serial sweep writes each row as it comes, a Ray task returns them as a list.
    """
    model, _ = load_weights(checkpoint.path)
    if model.config.vocab_size != data.tokenizer.vocab_size:
        raise ValueError(f"{checkpoint.path}: vocabulary of {model.config.vocab_size} ids, the data has "
                         f"{data.tokenizer.vocab_size}: not a model of this corpus")
    block = model.config.block_size
    x, y = held_out_windows(data.val, block, eval_windows)  # (W, T), (W, T)
    calibration = list(held_out_windows(data.train, block, CALIBRATION_WINDOWS)[0].split(8))  # 2 x (8, T)
    model16 = to_16bit(model)
    for config in configs:
        start = time.perf_counter()
        quantized = quantized_copy(model16, config, calibration, outlier_fraction)
        metrics = evaluate(quantized, x, y)
        parts = bit_breakdown(quantized)
        yield _row(checkpoint, model, config, outlier_fraction, metrics, parts, y.numel(), time.perf_counter() - start)


def run_sweep(
    out: str | os.PathLike,
    checkpoints: Sequence[ZooCheckpoint],
    grid: SweepGrid | None = None,
    eval_windows: int = EVAL_WINDOWS,
    outlier_fraction: float = OUTLIER_FRACTION,
    threads: int | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> int:
    """Run every (checkpoint, configuration) not yet in the CSV ``out``, appending one row each; return rows written.

    ``threads`` sets torch's and Numba's threads for the sweep (default: every core). On a machine busy with other
    work, 1 thread can be many times faster for small models than 2 threads that wait for each other.
    """
    path = Path(out)
    todo = plan_runs(path, checkpoints, grid or SweepGrid(), eval_windows, outlier_fraction, log or (lambda _: None))
    if not todo:
        return 0
    data = prepare_data()
    written = 0
    with helpers.threads(threads or os.cpu_count() or 1):  # Numba: at most NUMBA_NUM_THREADS
        with row_appender(path) as append, tqdm(
            total=sum(len(missing) for _, missing in todo), desc="sweep", disable=not progress
        ) as bar:
            for checkpoint, missing in todo:
                bar.set_postfix_str(f"{checkpoint.job.name} step {checkpoint.step}", refresh=False)
                for row in checkpoint_rows(checkpoint, missing, eval_windows, outlier_fraction, data):
                    append(row)
                    written += 1
                    bar.update(1)
    return written


def parse_list(text: str, parse: Callable[[str], object], what: str) -> tuple:
    """A comma-separated list parsed item by item; ValueError naming ``what`` for an empty list."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise ValueError(f"{what} must be a comma-separated list without empty items, got {text!r}")
    return tuple(parse(item) for item in items)


def parse_blocksize(text: str) -> int | None:
    """'tensor' or 'none' (one block per tensor) or a power of two in 32..4096."""
    if text.lower() in ("tensor", "none"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = text
    return check_blocksize(value)

