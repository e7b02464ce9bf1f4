"""The run directory of a char-level GPT: file names, config.json, the staged overwrite, and loading a trained run.

A run directory holds four files:
- ``checkpoint.safetensors``  the trainer's checkpoint (model, optimizer and RNG states; safetensors, no pickle)
- ``tokenizer.json``          the character vocabulary (``CharTokenizer``)
- ``config.json``             preset name, GPTConfig, TrainerConfig, data sizes and the training summary
- ``history.csv``             one row per step: step, lr, train_loss, grad_norm, eval_loss, eval_perplexity
and, when ``keep_steps`` asks for them, ``weights_step<NNNNNN>.safetensors``: the model weights after that step
(``mini_llm.train.checkpoint.save_weights``). The directory follows ``mini_llm.train.rundir``: config.json is its
format-tagged run record, every file is written atomically, and an overwrite is staged in ``<run>.new``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from mini_llm import __version__
from mini_llm.data import CharTokenizer
from mini_llm.data.char_corpus import CORPUS, VAL_FRACTION, CharData
from mini_llm.helpers import check_device
from mini_llm.nn import GPT, GPTConfig
from mini_llm.train import TrainerConfig, load_model_weights
from mini_llm.train.checkpoint import gpt_config_from_dict
from mini_llm.train.rundir import read_record, write_record

KEPT_WEIGHTS = "weights_step{step:06d}.safetensors"  # weight snapshots kept at intermediate steps


CHECKPOINT_FILE = "checkpoint.safetensors"


TOKENIZER_FILE = "tokenizer.json"


CONFIG_FILE = "config.json"


HISTORY_FILE = "history.csv"


CONFIG_FORMAT = "mini_llm.charlm/1"


def trainer_record(config: TrainerConfig) -> dict[str, Any]:
    """The TrainerConfig as JSON-ready values, without the machine-specific fields."""
    values = asdict(config)
    for name in ("checkpoint_path", "progress"):
        values.pop(name)
    return values


def write_run_config(path: Path, payload: dict[str, Any]) -> None:
    """Write config.json (indented by 2, as since its first version) atomically."""
    write_record(path, payload, indent=2)


def new_run_config(preset_name: str, model_config: GPTConfig, trainer_config: TrainerConfig, data: CharData) -> dict:
    """The contents of config.json before training finishes (training summary still None)."""
    return {
        "format": CONFIG_FORMAT,
        "mini_llm_version": __version__,
        "preset": preset_name,
        "model": asdict(model_config),
        "trainer": trainer_record(trainer_config),
        "data": {
            "corpus": CORPUS,
            "val_fraction": VAL_FRACTION,
            "vocab_size": data.tokenizer.vocab_size,
            "train_tokens": len(data.train),
            "val_tokens": len(data.val),
        },
        "training": None,
    }


def _missing(path: Path, run_dir: Path) -> FileNotFoundError:
    """The error for a run directory, or a file of one, that is not there."""
    return FileNotFoundError(f"{path} does not exist; train a model first with `mini-llm train --run-dir {run_dir}`")


def read_run_config(out_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a run directory; FileNotFoundError if missing, ValueError if it is not a run config."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        raise _missing(path, Path(out_dir))
    payload = read_record(path, CONFIG_FORMAT, "a mini_llm char-GPT config")
    for key in ("preset", "model"):
        if key not in payload:
            raise ValueError(f"{path} has no {key!r} entry")
    return payload


def gpt_config_of_run(run_config: dict[str, Any], source: Path) -> GPTConfig:
    """The GPTConfig stored in a run config; ValueError if its fields are wrong."""
    return gpt_config_from_dict(run_config["model"], source)


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
    model_config = gpt_config_of_run(run_config, out / CONFIG_FILE)
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

