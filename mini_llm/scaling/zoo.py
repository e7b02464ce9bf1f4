"""The model zoo: char-level GPTs of several sizes on People's Daily, one recipe, cached outside the repository.

Every model is a ``mini_llm.tasks.charlm`` run (tied input/output embeddings, context 128, AdamW, warm-up + cosine)
trained for the same number of tokens; only the width, depth and seed change. Run directories follow
``mini_llm.train.rundir``: they live in ``<cache>/zoo/<preset set>/<size>-seed<seed>/`` and hold the charlm files
plus the weights kept at 1/8, 1/4, 1/2 and all of the token budget (``weights_step<NNNNNN>.safetensors``), which the
sweep quantizes. The cache is ``--cache-dir``, else ``$MINI_LLM_CACHE``, else ``$XDG_CACHE_HOME/mini_llm``
(``~/.cache/mini_llm``).

The time plan interpolates the throughputs a planning pilot measured on 2 cores (``PILOT_THROUGHPUT``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import cache
from pathlib import Path

from safetensors import SafetensorError, safe_open

from mini_llm import helpers
from mini_llm.nn import GPT, GPTConfig
from mini_llm.tasks.charlm import (
    CHECKPOINT_FILE,
    KEPT_WEIGHTS,
    CharGPTPreset,
    read_run_config,
    train_char_gpt,
)
from mini_llm.train import TrainerConfig, distributed
from mini_llm.train.rundir import run_dir

VOCAB_SIZE = 4620  # characters of the training split (<unk> included): for the plan only, training reads the data
KEEP_FRACTIONS = (Fraction(1, 8), Fraction(1, 4), Fraction(1, 2), Fraction(1))  # weights kept at these budget shares
LR_TIMES_WIDTH = 0.32  # peak learning rate = LR_TIMES_WIDTH / n_embd (5e-3 at width 64, 1.5e-3 at width 208)
# (non-embedding parameters, training tokens per second) measured by the pilot: 2 threads, AdamW, context 128
PILOT_THROUGHPUT = ((0.1e6, 22e3), (0.6e6, 12e3), (3.2e6, 4.9e3), (7.4e6, 2.7e3))
OVERHEAD = 1.06  # evaluations during training, checkpoints and the final summary, on top of the training steps
Log = Callable[[str], None]


@dataclass(frozen=True)
class ZooSize:
    """One model size of the zoo and its training budget."""

    name: str  # "<n_layer>x<n_embd>", e.g. "3x64"
    n_layer: int  # transformer blocks
    n_embd: int  # model width C
    n_head: int  # attention heads (head size C / n_head)
    tokens: int  # training tokens: steps * batch_size * block_size, rounded to whole steps
    seeds: tuple[int, ...] = (0,)  # seeds trained by default (a second seed measures seed noise)
    block_size: int = 128  # context length T
    batch_size: int = 32  # sequences per step
    eval_batches: int = 10  # batches per evaluation during training

    def gpt_config(self, vocab_size: int = VOCAB_SIZE) -> GPTConfig:
        """The model's GPTConfig (tied embeddings, no dropout)."""
        return GPTConfig(
            vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head,
            n_embd=self.n_embd, dropout=0.0, tie_weights=True,
        )

    @property
    def steps(self) -> int:
        """Optimisation steps: the token budget in whole steps, a multiple of 8 so that 1/8 of it is a whole step."""
        per_step = self.batch_size * self.block_size
        return max(8, round(self.tokens / per_step / 8) * 8)

    def keep_steps(self) -> tuple[int, ...]:
        """Steps after which the weights are kept (1/8, 1/4, 1/2 and all of the budget)."""
        return tuple(int(fraction * self.steps) for fraction in KEEP_FRACTIONS)

    def trainer_config(self) -> TrainerConfig:
        """The one recipe: AdamW, peak lr LR_TIMES_WIDTH / width, 5% warm-up, cosine to lr / 10."""
        lr = LR_TIMES_WIDTH / self.n_embd
        interval = max(1, self.steps // 16)
        return TrainerConfig(
            max_steps=self.steps, batch_size=self.batch_size, lr=lr, warmup_steps=max(1, self.steps // 20),
            min_lr=lr / 10, betas=(0.9, 0.95), weight_decay=0.1, grad_clip=1.0, eval_interval=interval,
            eval_batches=self.eval_batches, checkpoint_interval=interval,
        )

    def preset(self, preset_set: str) -> CharGPTPreset:
        """This size as a charlm preset named zoo-<preset set>-<size>."""
        return CharGPTPreset(
            description=f"zoo {preset_set} {self.name}", n_layer=self.n_layer, n_head=self.n_head, n_embd=self.n_embd,
            block_size=self.block_size, trainer=self.trainer_config(), name=f"zoo-{preset_set}-{self.name}",
        )

    def non_embedding_params(self) -> int:
        """Parameters outside the token and position embeddings (counted on a model built on the meta device)."""
        return non_embedding_params(self.gpt_config())

    def embedding_params(self, vocab_size: int = VOCAB_SIZE) -> int:
        """Parameters of the tied token embedding / LM head (vocab_size x n_embd)."""
        return vocab_size * self.n_embd


def _size(n_layer: int, n_embd: int, tokens: int, seeds: tuple[int, ...] = (0,), **small: int) -> ZooSize:
    """A ZooSize named <layers>x<width> with head size 16."""
    return ZooSize(f"{n_layer}x{n_embd}", n_layer, n_embd, max(1, n_embd // 16), tokens, seeds, **small)


MAIN_TOKENS = 6_000_000  # about 3.5 epochs of the 1.69M training characters
PRESET_SETS: dict[str, tuple[ZooSize, ...]] = {
    # 9 sizes, 0.013M to 0.75M non-embedding parameters (59x), neighbours 1.4-2.0x apart; a second seed for 3 sizes.
    # (Sized to train within about 2 hours on 2 cores that other work shares; larger models fit a faster machine.)
    "main": (
        _size(1, 32, MAIN_TOKENS),
        _size(1, 40, MAIN_TOKENS),
        _size(1, 48, MAIN_TOKENS, (0, 1)),
        _size(1, 64, MAIN_TOKENS),
        _size(2, 64, MAIN_TOKENS, (0, 1)),
        _size(3, 64, MAIN_TOKENS),
        _size(3, 80, MAIN_TOKENS, (0, 1)),
        _size(3, 112, MAIN_TOKENS),
        _size(3, 144, MAIN_TOKENS),
    ),
    # Chapter 8's control for the compute-optimal fit: four "main" sizes trained on 1/8 and 1/4 of the main budget,
    # each with its own warm-up and cosine (the main zoo's 1/8 and 1/4 checkpoints are taken mid-schedule).
    "eighth": tuple(_size(layers, width, MAIN_TOKENS // 8) for layers, width in ((1, 32), (1, 64), (2, 64), (3, 64))),
    "quarter": tuple(_size(layers, width, MAIN_TOKENS // 4) for layers, width in ((1, 32), (1, 64), (2, 64), (3, 64))),
    # seconds on one core: for tests and for trying the commands
    "test": (
        _size(1, 16, 8 * 4 * 16, (0, 1), block_size=16, batch_size=4, eval_batches=2),
        _size(1, 32, 8 * 4 * 16, block_size=16, batch_size=4, eval_batches=2),
    ),
}


def non_embedding_params(config: GPTConfig) -> int:
    """Parameters of a GPT without its token and position embeddings (the tied LM head counts as embedding)."""
    small = replace(config, vocab_size=1, block_size=1)  # neither changes the count
    return _non_embedding_params(tuple(sorted(asdict(small).items())))


@cache
def _non_embedding_params(config_items: tuple) -> int:
    """Count them on a model built from the config's (hashable) items."""
    model = GPT(GPTConfig(**dict(config_items)))
    return model.num_params(non_embedding=False) - model.transformer.wte.weight.numel() - (
        model.transformer.wpe.weight.numel()
    )


def get_sizes(preset_set: str) -> tuple[ZooSize, ...]:
    """The sizes of a preset set; ValueError listing the sets otherwise."""
    if preset_set not in PRESET_SETS:
        raise ValueError(f"unknown preset set {preset_set!r}; available: {', '.join(PRESET_SETS)}")
    return PRESET_SETS[preset_set]


def zoo_dir(cache_dir: str | os.PathLike | None = None, preset_set: str = "main") -> Path:
    """The directory holding the run directories of a preset set."""
    get_sizes(preset_set)
    return run_dir("zoo", preset_set, cache_dir)


@dataclass(frozen=True)
class ZooJob:
    """One model to train: a size and a seed."""

    preset_set: str  # "main" or "test"
    size: ZooSize  # architecture and budget
    seed: int  # initial weights and batch order

    @property
    def name(self) -> str:
        """<size>-seed<seed>, the run directory's name."""
        return f"{self.size.name}-seed{self.seed}"

    def run_dir(self, cache_dir: str | os.PathLike | None = None) -> Path:
        """The job's run directory in the cache."""
        return zoo_dir(cache_dir, self.preset_set) / self.name

    def estimated_seconds(self) -> float:
        """Training time predicted from the pilot's throughputs."""
        return self.size.steps * self.size.batch_size * self.size.block_size / estimated_throughput(
            self.size.non_embedding_params()
        ) * OVERHEAD


def estimated_throughput(non_embedding: float) -> float:
    """Training tokens per second on 2 cores: the pilot's points interpolated log-log, flat below the smallest."""
    xs = [math.log(n) for n, _ in PILOT_THROUGHPUT]
    ys = [math.log(t) for _, t in PILOT_THROUGHPUT]
    x = math.log(max(non_embedding, PILOT_THROUGHPUT[0][0]))
    i = min(max(sum(x > xi for xi in xs) - 1, 0), len(xs) - 2)
    return math.exp(ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i]))


def plan(
    preset_set: str = "main", sizes: Sequence[str] | None = None, seeds: Sequence[int] | None = None
) -> list[ZooJob]:
    """The jobs of a preset set: every size with its default seeds, or with ``seeds`` when given; ``sizes`` filters."""
    available = get_sizes(preset_set)
    names = [size.name for size in available]
    if sizes is not None:
        unknown = [name for name in sizes if name not in names]
        if unknown:
            raise ValueError(f"unknown size {unknown[0]!r} in preset set {preset_set!r}; available: {', '.join(names)}")
        available = tuple(size for size in available if size.name in set(sizes))
    if seeds is not None:
        for seed in seeds:
            helpers.check_seed(seed, "seeds")
    return [ZooJob(preset_set, size, seed) for size in available for seed in (size.seeds if seeds is None else seeds)]


def _checkpoint_step(path: Path) -> int | None:
    """The step saved in a trainer checkpoint (read from its metadata only), or None if unreadable."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            meta = json.loads((file.metadata() or {})["mini_llm"])
        return int(meta["extra"]["trainer"]["step"])
    except (OSError, SafetensorError, KeyError, TypeError, ValueError):
        return None


def job_status(job: ZooJob, cache_dir: str | os.PathLike | None = None) -> str:
    """'done', 'partial (step s of S)' or 'missing', from the files in the job's run directory."""
    run = job.run_dir(cache_dir)
    kept = all((run / KEPT_WEIGHTS.format(step=step)).is_file() for step in job.size.keep_steps())
    step = _checkpoint_step(run / CHECKPOINT_FILE) if (run / CHECKPOINT_FILE).is_file() else None
    if step is None:
        return "missing"
    try:
        training = read_run_config(run).get("training")
    except (OSError, ValueError):
        training = None
    if kept and step == job.size.steps and training is not None:
        return "done"
    return f"partial (step {step} of {job.size.steps})"


def plan_table(jobs: Sequence[ZooJob], cache_dir: str | os.PathLike | None = None, status: bool = True) -> str:
    """A text table of the jobs: architecture, parameters, tokens, steps, estimated minutes (and status)."""
    header = f"{'model':<14}{'layers':>7}{'width':>6}{'heads':>6}{'non-emb':>10}{'emb':>9}{'tokens':>8}{'steps':>7}" \
             f"{'tok/s':>7}{'min':>6}" + ("  status" if status else "")
    lines = [header]
    for job in jobs:
        size = job.size
        line = (
            f"{job.name:<14}{size.n_layer:>7}{size.n_embd:>6}{size.n_head:>6}"
            f"{size.non_embedding_params() / 1e6:>9.3f}M{size.embedding_params() / 1e6:>8.3f}M"
            f"{size.steps * size.batch_size * size.block_size / 1e6:>7.2f}M{size.steps:>7}"
            f"{estimated_throughput(size.non_embedding_params()) / 1e3:>6.1f}k{job.estimated_seconds() / 60:>6.1f}"
        )
        lines.append(line + (f"  {job_status(job, cache_dir)}" if status else ""))
    total = sum(job.estimated_seconds() for job in jobs) / 60
    lines.append(f"{len(jobs)} models, estimated {total:.0f} minutes on 2 cores (pilot throughputs x {OVERHEAD})")
    return "\n".join(lines)


def train_job(job: ZooJob, cache_dir: str | os.PathLike | None = None, progress: bool = True,
              log: Log | None = None) -> Path:
    """Train one job (resuming its checkpoint if there is one) and return its run directory."""
    run = job.run_dir(cache_dir)
    resume = (run / CHECKPOINT_FILE).is_file()
    train_char_gpt(
        job.size.preset(job.preset_set), run, seed=job.seed, progress=progress, resume=resume, overwrite=not resume,
        log=log, keep_steps=job.size.keep_steps(),
    )
    return run


def train_zoo(
    jobs: Sequence[ZooJob], cache_dir: str | os.PathLike | None = None, progress: bool = True, log: Log | None = None,
    threads: int | None = None,
) -> list[Path]:
    """Train every job not done yet (finished jobs are skipped, interrupted ones resume); return the run directories.

    Under torchrun every rank trains its share of each batch (see ``train_char_gpt``); rank 0 alone logs.
    """
    main_rank = distributed.current().is_main
    say = log if log is not None and main_rank else (lambda message: None)
    runs = []
    with helpers.threads(threads, libraries=("torch",)):
        for i, job in enumerate(jobs, 1):
            status = job_status(job, cache_dir)
            if status == "done":
                say(f"[{i}/{len(jobs)}] {job.name}: done already ({job.run_dir(cache_dir)})")
                runs.append(job.run_dir(cache_dir))
                continue
            say(f"[{i}/{len(jobs)}] {job.name}: {status}, about {job.estimated_seconds() / 60:.1f} min")
            start = _checkpoint_step(job.run_dir(cache_dir) / CHECKPOINT_FILE) or 0
            runs.append(train_job(job, cache_dir, progress, log))
            if not main_rank:
                continue
            summary = read_run_config(runs[-1])["training"]
            tokens = (summary["steps"] - start) * job.size.batch_size * job.size.block_size
            speed = tokens / max(summary["seconds_this_session"], 1e-9)
            say(f"[{i}/{len(jobs)}] {job.name}: {summary['steps']} steps, validation perplexity "
                f"{summary['val_perplexity']:.1f}, {summary['seconds_this_session']:.0f} s "
                f"({speed / 1e3:.1f}k tokens/s)")
    return runs


@dataclass(frozen=True)
class ZooCheckpoint:
    """Kept weights of one zoo model after some step."""

    job: ZooJob  # which model
    step: int  # optimisation steps done
    path: Path  # the weights file

    @property
    def tokens(self) -> int:
        """Training tokens seen."""
        return self.step * self.job.size.batch_size * self.job.size.block_size

    @property
    def fraction(self) -> float:
        """Share of the token budget seen."""
        return self.step / self.job.size.steps


def parse_fraction(text: str) -> Fraction:
    """A budget share such as '1/8', '0.5' or '1'; ValueError unless it is one of KEEP_FRACTIONS."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError) as error:
        raise ValueError(f"fraction must look like 1/8 or 0.5, got {text!r}") from error
    if value not in KEEP_FRACTIONS:
        raise ValueError(f"fraction must be one of {', '.join(map(str, KEEP_FRACTIONS))}, got {text!r}")
    return value


def zoo_checkpoints(
    jobs: Sequence[ZooJob], cache_dir: str | os.PathLike | None = None, fractions: Sequence[Fraction] | None = None
) -> list[ZooCheckpoint]:
    """The kept weights that exist on disk for the jobs, at the given budget shares (default all)."""
    wanted = KEEP_FRACTIONS if fractions is None else tuple(fractions)
    found = []
    for job in jobs:
        run = job.run_dir(cache_dir)
        for fraction in wanted:
            step = int(fraction * job.size.steps)
            path = run / KEPT_WEIGHTS.format(step=step)
            if path.is_file():
                found.append(ZooCheckpoint(job, step, path))
    return found
