"""Training a char-level GPT into a run directory: fresh, resumed, or overwriting an earlier run."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mini_llm.data import CharTokenizer
from mini_llm.data.char_corpus import CORPUS, CharData, prepare_data
from mini_llm.helpers import check_device
from mini_llm.nn import GPT, GPTConfig
from mini_llm.tasks.charlm.history import write_history
from mini_llm.tasks.charlm.presets import CharGPTPreset, resolve_preset
from mini_llm.tasks.charlm.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    KEPT_WEIGHTS,
    TOKENIZER_FILE,
    gpt_config_of_run,
    new_run_config,
    read_run_config,
    trainer_record,
    write_run_config,
)
from mini_llm.train import BatchFn, TokenBatches, Trainer, distributed, next_token_loss
from mini_llm.train.checkpoint import save_weights
from mini_llm.train.rundir import staging_dir, swap_in

Log = Callable[[str], None]


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


def _batches(data: CharData, block_size: int) -> tuple[TokenBatches, TokenBatches]:
    """Batch sources over the training and validation ids."""
    return TokenBatches(data.train, block_size), TokenBatches(data.val, block_size)


def _start_trainer(
    out_dir: Path, preset_name: str, preset: CharGPTPreset, data: CharData, max_steps: int | None, seed: int | None,
    progress: bool, device: torch.device, changes: dict[str, Any],
) -> Trainer:
    """A new trainer for a fresh run in out_dir, with its tokenizer.json and config.json written (by rank 0)."""
    model_config = preset.gpt_config(data.tokenizer.vocab_size)
    seed = 0 if seed is None else seed
    trainer_config = preset.trainer_config(
        max_steps, seed=seed, progress=progress, checkpoint_path=str(out_dir / CHECKPOINT_FILE), **changes
    )
    model = build_model(model_config, seed).to(device)
    if not distributed.current().is_main:
        return Trainer(model, trainer_config, *_batches(data, model_config.block_size))
    (out_dir / HISTORY_FILE).unlink(missing_ok=True)  # a history of an earlier run must not sit beside this one
    for kept in out_dir.glob(KEPT_WEIGHTS.replace("{step:06d}", "*")):  # nor its weight snapshots
        kept.unlink()
    data.tokenizer.save(out_dir / TOKENIZER_FILE)
    write_run_config(out_dir / CONFIG_FILE, new_run_config(preset_name, model_config, trainer_config, data))
    return Trainer(model, trainer_config, *_batches(data, model_config.block_size))


def _resume_trainer(
    out_dir: Path, preset_name: str, preset: CharGPTPreset, data: CharData, max_steps: int | None, seed: int | None,
    progress: bool, device: torch.device, changes: dict[str, Any],
) -> Trainer:
    """A trainer continuing the run saved in out_dir; ValueError if it was another preset or other data."""
    saved = read_run_config(out_dir)
    if saved["preset"] != preset_name:
        raise ValueError(f"{out_dir} holds a run of preset {saved['preset']!r}, not {preset_name!r}; resume it with "
                         f"--preset {saved['preset']}")
    tokenizer = CharTokenizer.load(out_dir / TOKENIZER_FILE)
    if tokenizer.chars != data.tokenizer.chars:
        raise ValueError(f"{out_dir / TOKENIZER_FILE} is not the vocabulary of this corpus: cannot resume")
    model_config = gpt_config_of_run(saved, out_dir / CONFIG_FILE)
    model = GPT(model_config).to(device)
    changes = changes | {"progress": progress, "checkpoint_path": str(out_dir / CHECKPOINT_FILE)}
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
    grad_accum_steps: int | None = None,
    parallel: str | None = None,
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
    ``grad_accum_steps`` (default: the preset's, 1) cuts each batch into micro-batches. In a torch.distributed
    process group (torchrun) every rank trains its share of each batch; rank 0 alone logs and writes the files;
    ``parallel="fsdp"`` shards the model over the ranks instead of replicating it (``TrainerConfig.parallel``).
    """
    world = distributed.current()
    say = log if log is not None and world.is_main else (lambda message: None)
    progress = progress and world.is_main
    preset_name, preset_obj = resolve_preset(preset)
    torch_device = check_device(device)
    out = Path(out_dir)
    checkpoint = out / CHECKPOINT_FILE
    if resume and not checkpoint.is_file():
        raise FileNotFoundError(f"cannot resume: {checkpoint} does not exist; train without --resume first")
    if not resume and checkpoint.exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a trained model ({checkpoint}); continue it with --resume, "
                              "replace it with --overwrite, or choose another output directory")
    final, out = out, staging_dir(out) if overwrite and not resume and checkpoint.exists() else out
    if out != final and world.is_main:
        shutil.rmtree(out, ignore_errors=True)  # what an interrupted overwrite left behind
    out.mkdir(parents=True, exist_ok=True)
    distributed.barrier(world)

    data = prepare_data()
    say(f"data: {CORPUS}: {len(data.train):,} training and {len(data.val):,} validation characters, "
        f"vocabulary {data.tokenizer.vocab_size:,} (<unk> included)")
    start_or_resume = _resume_trainer if resume else _start_trainer
    if parallel == "fsdp" and keep_steps and world.size > 1:
        raise ValueError("keep_steps needs whole weights on rank 0: use parallel='ddp' (zoo train) with keep_steps")
    settings = {"grad_accum_steps": grad_accum_steps, "parallel": parallel}
    changes = {name: value for name, value in settings.items() if value is not None}
    trainer = start_or_resume(out, preset_name, preset_obj, data, max_steps, seed, progress, torch_device, changes)
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
        if step == trainer.step and world.is_main and not (out / KEPT_WEIGHTS.format(step=step)).is_file():
            save_weights(trainer.model, out / KEPT_WEIGHTS.format(step=step), {"step": step})
    history = trainer.train(until=last)
    seconds = time.perf_counter() - start
    summary = _summary(trainer, seconds, torch_device)  # every rank: a sharded model's forward is collective
    if world.is_main:  # rank 0 writes the run's files
        write_history(out / HISTORY_FILE, history)
        run_config = read_run_config(out)
        run_config["trainer"] = trainer_record(trainer.config)
        run_config["training"] = summary
        write_run_config(out / CONFIG_FILE, run_config)
        if out != final:
            swap_in(out, final)
    distributed.barrier(world)  # the other ranks go on only once the run directory is complete
    return model.eval(), data.tokenizer, history


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

