"""Training: SGD and Adam written out, a learning-rate schedule, gradient clipping, a trainer, checkpoints.

Holds the optimisers, schedules, batch sources, the ``Trainer`` (any model with a loss), and the checkpoint room
(``train.checkpoint``: training checkpoints and GPT weights files, read and written with checks). Every reader of a
checkpoint or weights file goes through ``train.checkpoint``. ``train.rundir`` is the run-directory convention of
every command that writes a run (cache root, format-tagged JSON records written atomically, staged overwrite);
``train.distill`` is the knowledge-distillation loss;
``train.distributed`` joins torchrun's process group and splits each batch among the data-parallel ranks.
May import: helpers, atomic, jsonfiles, nn. Never tasks, evaluation, scaling or cli.
"""

from mini_llm.train import distributed
from mini_llm.train.batches import BatchFn, TokenBatches, random_batch
from mini_llm.train.checkpoint import (
    Checkpoint,
    check_finite,
    load_model_weights,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    save_weights,
)
from mini_llm.train.clipping import clip_grad_norm
from mini_llm.train.distill import Distillation, distillation_loss
from mini_llm.train.optim import SGD, Adam
from mini_llm.train.schedule import WarmupCosineSchedule, lr_at
from mini_llm.train.seq2seq import PairBatches, pad_sequences, seq2seq_loss
from mini_llm.train.trainer import Trainer, TrainerConfig, next_token_loss

__all__ = [
    "SGD",
    "Adam",
    "BatchFn",
    "Checkpoint",
    "Distillation",
    "PairBatches",
    "TokenBatches",
    "Trainer",
    "TrainerConfig",
    "WarmupCosineSchedule",
    "check_finite",
    "clip_grad_norm",
    "distillation_loss",
    "distributed",
    "load_model_weights",
    "load_weights",
    "lr_at",
    "next_token_loss",
    "pad_sequences",
    "random_batch",
    "read_checkpoint",
    "save_checkpoint",
    "save_weights",
    "seq2seq_loss",
]
