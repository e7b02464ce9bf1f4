"""A small trainer: warm-up + cosine learning rate, gradient clipping, evaluation, resumable checkpoints; gradient
accumulation and data parallelism over torch.distributed ranks (``train.distributed``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mini_llm.helpers import check_choice, check_int, eval_mode
from mini_llm.train import distributed
from mini_llm.train.batches import BatchFn
from mini_llm.train.checkpoint import check_model_state, check_optimizer_state, read_checkpoint, save_checkpoint
from mini_llm.train.clipping import clip_grad_norm
from mini_llm.train.optim import SGD, Adam
from mini_llm.train.schedule import WarmupCosineSchedule

OPTIMIZERS = ("adamw", "adam", "sgd")
LossFn = Callable[[torch.nn.Module, Any, torch.Tensor], torch.Tensor]
OptimizerFactory = Callable[[torch.nn.Module, "TrainerConfig"], torch.optim.Optimizer]  # (model, config) -> optimizer


class Schedule(Protocol):
    """A learning-rate schedule: ``apply`` sets the learning rate of the optimizer for a step and returns it."""

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float: ...


ScheduleFactory = Callable[["TrainerConfig"], Schedule]
ClipFn = Callable[[list[torch.Tensor], float], float]  # (parameters, max_norm) -> norm before clipping, in place
EvalFn = Callable[[torch.nn.Module], dict[str, Any]]  # model (eval mode) -> results, recorded as eval_<key>


@dataclass(frozen=True)
class TrainerConfig:
    """Everything that decides a training run."""

    max_steps: int = 1000  # optimisation steps in total
    batch_size: int = 32  # examples (sequences) per step, over all ranks and accumulation steps
    grad_accum_steps: int = 1  # micro-batches per step and rank, their gradients summed before the update
    parallel: str = "ddp"  # on several ranks: "ddp" (a replica per rank) or "fsdp" (parameters sharded)
    lr: float = 3e-4  # peak learning rate, reached at the end of warm-up
    warmup_steps: int = 100  # steps of linear warm-up from lr / warmup_steps to lr
    min_lr: float = 3e-5  # floor of the cosine decay
    decay_steps: int | None = None  # step at which the cosine reaches min_lr; None = max_steps
    optimizer: str = "adamw"  # "adamw" (decoupled weight decay), "adam" (L2 weight decay) or "sgd" (momentum)
    betas: tuple[float, float] = (0.9, 0.95)  # Adam's (β1, β2)
    eps: float = 1e-8  # Adam's ε
    momentum: float = 0.9  # SGD's μ
    weight_decay: float = 0.1  # λ, applied to matrices (ndim >= 2) only, never to biases or norm gains
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = no clipping (the norm is still logged)
    eval_interval: int = 100  # evaluate every this many steps and at max_steps (if an eval source is given); 0 = never
    eval_batches: int = 20  # batches per evaluation (always the same batches: their generator is reseeded)
    seed: int = 0  # seeds the training batches (seed), evaluation (seed + 1) and the model's dropout (seed + 2)
    checkpoint_path: str | None = None  # file to save checkpoints to during train(); None = do not save
    checkpoint_interval: int = 0  # save every this many steps and at the end of train(); 0 = only at the end
    progress: bool = True  # show a tqdm progress bar; False for notebooks whose outputs must be reproducible

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_batches", "grad_accum_steps"):
            check_int(name, getattr(self, name), 1, kinds=int)
        for name in ("warmup_steps", "eval_interval", "checkpoint_interval", "seed"):
            check_int(name, getattr(self, name), 0, kinds=int)
        if self.decay_steps is not None:
            check_int("decay_steps", self.decay_steps, 1, kinds=int)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("parallel", self.parallel, distributed.PARALLEL)
        if not (isinstance(self.grad_clip, int | float) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be a number >= 0 (0 = no clipping), got {self.grad_clip!r}")
        if self.warmup_steps > self.resolved_decay_steps:
            end = "decay_steps" if self.decay_steps is not None else "max_steps"
            raise ValueError(
                f"warmup_steps must be <= {end} = {self.resolved_decay_steps} (the warm-up must end before the decay), "
                f"got {self.warmup_steps}"
            )
        # lr and min_lr: checked by the schedule
        WarmupCosineSchedule(self.lr, self.warmup_steps, self.resolved_decay_steps, self.min_lr)

    @property
    def resolved_decay_steps(self) -> int:
        """The step at which the cosine decay ends."""
        return self.max_steps if self.decay_steps is None else self.decay_steps

    def trajectory(self) -> dict[str, Any]:
        """The fields that decide the parameters' trajectory (a resumed run must agree on them), JSON-normalised."""
        skip = {"max_steps", "decay_steps", "eval_interval", "eval_batches", "checkpoint_path", "checkpoint_interval",
                "parallel"}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip | {"progress"}}
        values["decay_steps"] = self.resolved_decay_steps
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainerConfig:
        """Rebuild a config from ``asdict(config)`` after a JSON round trip."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown TrainerConfig fields {unknown}; allowed: {sorted(names)}")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


def next_token_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of model(x) -> logits (B, T, V) (or an output with .logits) against the next tokens y."""
    logits = model(x)  # (B, T, V)
    logits = getattr(logits, "logits", logits)  # mini_llm.nn models return an output object
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3 or logits.shape[:2] != y.shape:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(
            f"model(x) must return logits of shape (B, T, V) = {(*y.shape, 'V')}, got {got}; "
            "pass loss_fn=... to the Trainer for other models"
        )
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())  # mean over B*T tokens


def warmup_cosine(config: TrainerConfig) -> WarmupCosineSchedule:
    """The config's schedule: linear warm-up to lr, cosine decay to min_lr at decay_steps (the default)."""
    return WarmupCosineSchedule(config.lr, config.warmup_steps, config.resolved_decay_steps, config.min_lr)


def build_optimizer(model: torch.nn.Module, config: TrainerConfig) -> torch.optim.Optimizer:
    """The config's optimizer over the model's trainable parameters, weight decay on matrices only."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "sgd":
        return SGD(groups, lr=config.lr, momentum=config.momentum)
    decoupled = config.optimizer == "adamw"
    return Adam(groups, lr=config.lr, betas=config.betas, eps=config.eps, decoupled_weight_decay=decoupled)


class Trainer:
    """Train ``model`` on batches from ``train_batch(batch_size, generator) -> (x, y)``; see ``TrainerConfig``.

    ``history`` has one dict per step: step (updates done), lr, train_loss, grad_norm (before clipping), and
    eval_loss / eval_perplexity (None except at evaluation steps). ``save_checkpoint`` / ``resume`` continue a run
    exactly: the same parameters and losses as if it had never stopped.

    Each step's batch of ``batch_size`` examples is cut into ``grad_accum_steps`` micro-batches per rank; in a
    process group (``torchrun``) every rank draws the same batch and trains on its share through
    DistributedDataParallel, rank 0 alone writes checkpoints, and the logged loss is the mean over the whole batch
    (see ``train.distributed``). One process with ``grad_accum_steps = 1`` is the plain loop.

    The recipe's parts can be swapped: ``optimizer(model, config)`` builds the optimizer (default
    ``build_optimizer``), ``schedule(config)`` the learning-rate schedule (default ``warmup_cosine``), ``clip(params,
    max_norm)`` clips the gradients in place and returns their norm (default ``clip_grad_norm``), and
    ``evaluate(model)`` (called in eval mode at the evaluation steps) replaces the loss over ``eval_batch``: each
    entry of the dict it returns is recorded as ``eval_<key>``. A batch source may return a dict of tensors as x
    (moved to the device entry by entry), e.g. the batches of a DataLoader (``finetune.fine_tune`` does that).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainerConfig,
        train_batch: BatchFn,
        eval_batch: BatchFn | None = None,
        loss_fn: LossFn = next_token_loss,
        *,
        optimizer: OptimizerFactory = build_optimizer,
        schedule: ScheduleFactory = warmup_cosine,
        clip: ClipFn = clip_grad_norm,
        evaluate: EvalFn | None = None,
    ) -> None:
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(config).__name__}")
        self.model = model
        self.config = config
        self.train_batch = train_batch
        self.eval_batch = eval_batch
        self.loss_fn = loss_fn
        self.clip, self.eval_fn = clip, evaluate
        self.world = distributed.current()
        distributed.check_split(config.batch_size, self.world, config.grad_accum_steps)
        self.forward_model = distributed.wrap(model, self.world, config.parallel)  # DDP, sharded model, or model
        self.optimizer = optimizer(model, config)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.device = self.params[0].device
        self.schedule = schedule(config)
        self.generator = torch.Generator().manual_seed(config.seed)  # samples the training batches
        # The model's own randomness (dropout) draws from torch's global generators; the trainer keeps their state
        # and swaps it in for each step, so a run depends on nothing outside it and resumes exactly. Each rank draws
        # its own dropout masks (seed + 2 + rank).
        model_seed = config.seed + 2 + self.world.rank
        self.model_rng = {"cpu": torch.Generator().manual_seed(model_seed).get_state()}
        if self.device.type == "cuda":
            self.model_rng["cuda"] = torch.Generator(self.device).manual_seed(model_seed).get_state()
        self.step = 0  # optimisation steps done
        self.history: list[dict[str, Any]] = []

    def _batch(self, source: BatchFn, generator: torch.Generator) -> tuple[Any, torch.Tensor]:
        """One (x, y) batch from source, on the model's device (x may be a dict of tensors)."""
        x, y = source(self.config.batch_size, generator)  # (B, T), (B, T)
        if isinstance(x, dict):
            return {key: value.to(self.device) for key, value in x.items()}, y.to(self.device)
        return x.to(self.device), y.to(self.device)

    @contextmanager
    def _global_rng(self, states: dict[str, torch.Tensor], keep: bool) -> Iterator[None]:
        """Run the block with torch's global generators set to ``states`` (kept if ``keep``), then restore them."""
        cuda = self.device.type == "cuda"
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if cuda else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.set_rng_state(states["cpu"])
            if cuda:
                torch.cuda.set_rng_state(states["cuda"], self.device)
            yield
            if keep:
                states["cpu"] = torch.get_rng_state()
                if cuda:
                    states["cuda"] = torch.cuda.get_rng_state(self.device)

    def _loss_and_gradients(self, x: Any, y: torch.Tensor) -> torch.Tensor:
        """Backward through this rank's micro-batches of the batch (x, y); return the loss over the whole batch."""
        parts = distributed.micro_batches(x, y, self.world, self.config.grad_accum_steps)
        loss = torch.zeros((), device=self.device)
        with self._global_rng(self.model_rng, keep=True):
            for i, (x_i, y_i) in enumerate(parts):  # (B / (W A), T) each
                reduce_now = i == len(parts) - 1 or self.world.size == 1  # all-reduce the summed gradients once
                with nullcontext() if reduce_now else distributed.no_sync(self.forward_model):
                    part_loss = self.loss_fn(self.forward_model, x_i, y_i) / len(parts)  # scalar
                    part_loss.backward()
                loss += part_loss.detach()
        return distributed.mean_over_ranks(loss, self.world)

    def train_step(self) -> dict[str, Any]:
        """One optimisation step: learning rate, batch, loss and gradients, clipping, update; return its record."""
        self.model.train()
        lr = self.schedule.apply(self.optimizer, self.step)
        x, y = self._batch(self.train_batch, self.generator)  # the whole batch: (B, T), (B, T)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            loss = self._loss_and_gradients(x, y)  # scalar, the same on every rank
        except RuntimeError as error:  # gloo and NCCL report a rank that died or hangs as a RuntimeError
            if self.world.size == 1:
                raise
            raise distributed.rank_failed(self.world, self.step, error) from error
        if not math.isfinite(loss.item()):  # stop before the update: the model and checkpoint stay as they were
            raise ValueError(
                f"the training loss became {loss.item()} at step {self.step + 1}; training stopped and the "
                f"last checkpoint was kept (lower the learning rate or check the data and the weights)"
            )
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = self.clip(self.params, max_norm)
        self.optimizer.step()
        self.step += 1
        record = {"step": self.step, "lr": lr, "train_loss": loss.item(), "grad_norm": grad_norm}
        record |= {"eval_loss": None, "eval_perplexity": None}
        self.history.append(record)
        return record

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Mean loss over ``eval_batches`` evaluation batches (the same ones every time) and perplexity = exp(loss);
        with an ``evaluate`` function, what it returns for the model in eval mode."""
        if self.eval_fn is not None:
            with eval_mode(self.model):
                return self.eval_fn(self.model)
        if self.eval_batch is None:
            raise ValueError("evaluate() needs an eval_batch source; pass eval_batch=... to the Trainer")
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        fixed = {
            name: torch.Generator(self.device if name == "cuda" else "cpu")
            .manual_seed(self.config.seed + 1)
            .get_state()
            for name in self.model_rng
        }  # in case the model draws random numbers in eval mode
        with eval_mode(self.model), self._global_rng(fixed, keep=False):
            losses = [
                self.loss_fn(self.model, *self._batch(self.eval_batch, generator)).item()
                for _ in range(self.config.eval_batches)
            ]
        loss = math.fsum(losses) / len(losses)
        return {"loss": loss, "perplexity": math.exp(loss)}

    def train(self, until: int | None = None) -> list[dict[str, Any]]:
        """Train from the current step up to step ``until`` (default ``max_steps``); return the history."""
        cfg = self.config
        until = cfg.max_steps if until is None else until
        if not isinstance(until, int) or until < self.step:
            raise ValueError(f"until must be an integer >= the current step {self.step}, got {until!r}")
        postfix: dict[str, str] = {}
        with tqdm(total=until, initial=self.step, desc="train", disable=not cfg.progress) as bar:
            while self.step < until:
                record = self.train_step()
                evaluate = cfg.eval_interval and (self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps)
                if evaluate and (self.eval_batch is not None or self.eval_fn is not None):
                    result = self.evaluate()
                    record |= {f"eval_{key}": value for key, value in result.items()}
                    postfix["eval_loss"] = f"{result['loss']:.4f}"
                if cfg.checkpoint_path and cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0:
                    self.save_checkpoint(cfg.checkpoint_path)
                postfix |= {"loss": f"{record['train_loss']:.4f}", "lr": f"{record['lr']:.2e}"}
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        if cfg.checkpoint_path:
            self.save_checkpoint(cfg.checkpoint_path)
        return self.history

    def _rng_states(self) -> dict[str, torch.Tensor]:
        """Every random-generator state that the next steps read (uint8 tensors)."""
        return {"batch": self.generator.get_state()} | {f"model_{k}": v for k, v in self.model_rng.items()}

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Save model, optimizer, RNG states (of every rank), step, config and history to one safetensors file.

        In a process group every rank must call it; rank 0 writes the file and the others wait for it.
        """
        ranks = distributed.gather_objects(self._rng_states(), self.world)  # only the dropout states differ
        rng = ranks[0] | {f"{key}@rank{r}": state for r, states in enumerate(ranks[1:], 1)
                          for key, state in states.items() if key.startswith("model_")}
        extra = {"trainer": {"step": self.step, "config": asdict(self.config), "history": self.history}}
        extra["trainer"] |= {"world_size": self.world.size} if self.world.size > 1 else {}
        model_state = distributed.full_state(self.model.state_dict())  # whole tensors even when sharded
        optimizer_state = distributed.full_optimizer_state(self.optimizer.state_dict())
        if self.world.is_main:
            save_checkpoint(path, self.model, self.optimizer, rng, extra, model_state, optimizer_state)
        distributed.barrier(self.world)
        return Path(path)

    def load_checkpoint(self, path: str | os.PathLike) -> Trainer:
        """Restore a checkpoint of a run with the same model and trajectory settings into this trainer."""
        source = repr(str(path))
        checkpoint = read_checkpoint(path)
        saved = checkpoint.extra.get("trainer")
        if not isinstance(saved, dict) or not {"step", "config", "history"} <= set(saved):
            raise ValueError(f"{source} is a checkpoint but was not written by Trainer.save_checkpoint")
        saved_world = saved.get("world_size", 1)
        if saved_world != self.world.size:
            raise ValueError(
                f"{source} was written by {saved_world} data-parallel process(es), this run has {self.world.size}: "
                f"resume it with the same number (torchrun --nproc_per_node {saved_world}"
                + (", or without torchrun)" if saved_world == 1 else ")")
            )
        rank = f"@rank{self.world.rank}" if self.world.rank else ""  # this rank's dropout states
        wanted = {"batch"} | {f"model_{k}{rank}" for k in self.model_rng}
        missing_rng = sorted(wanted - set(checkpoint.rng_states))
        if missing_rng:
            raise ValueError(f"{source}: missing random-generator states {missing_rng}")
        saved_config = TrainerConfig.from_dict(saved["config"])
        ours, theirs = self.config.trajectory(), saved_config.trajectory()
        differ = [f"{k}: {theirs[k]!r} in the checkpoint, {ours[k]!r} here" for k in ours if ours[k] != theirs[k]]
        if differ:
            raise ValueError(
                f"{source} was trained with other settings, so it cannot resume exactly: {'; '.join(differ)}"
            )
        check_model_state(self.model, checkpoint.model_state, source)
        check_optimizer_state(self.optimizer, checkpoint.optimizer_state, source)
        self.model.load_state_dict(distributed.shard_like(checkpoint.model_state, self.model.state_dict()))
        self.optimizer.load_state_dict(distributed.shard_optimizer_state(checkpoint.optimizer_state, self.params))
        self.generator.set_state(checkpoint.rng_states["batch"])
        self.model_rng = {k: checkpoint.rng_states[f"model_{k}{rank}"].clone() for k in self.model_rng}
        self.step = int(saved["step"])
        self.history = list(saved["history"])
        return self

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike,
        model: torch.nn.Module,
        train_batch: BatchFn,
        eval_batch: BatchFn | None = None,
        loss_fn: LossFn = next_token_loss,
        **config_changes: Any,
    ) -> Trainer:
        """A trainer with the checkpoint's config (plus ``config_changes``, e.g. max_steps) continuing from it."""
        saved = read_checkpoint(path).extra.get("trainer")
        if not isinstance(saved, dict) or "config" not in saved:
            raise ValueError(f"{str(path)!r} is a checkpoint but was not written by Trainer.save_checkpoint")
        config = replace(TrainerConfig.from_dict(saved["config"]), **config_changes)
        return cls(model, config, train_batch, eval_batch, loss_fn).load_checkpoint(path)
