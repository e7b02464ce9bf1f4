"""Training: SGD and Adam written out, a learning-rate schedule, gradient clipping, a trainer, checkpoints."""

from mini_llm.train.batches import BatchFn, TokenBatches, random_batch
from mini_llm.train.checkpoint import Checkpoint, check_finite, load_model_weights, read_checkpoint, save_checkpoint
from mini_llm.train.clipping import clip_grad_norm
from mini_llm.train.optim import SGD, Adam
from mini_llm.train.schedule import WarmupCosineSchedule, lr_at
from mini_llm.train.seq2seq import PairBatches, pad_sequences, seq2seq_loss
from mini_llm.train.trainer import Trainer, TrainerConfig, next_token_loss

__all__ = [
    "SGD",
    "Adam",
    "BatchFn",
    "Checkpoint",
    "PairBatches",
    "TokenBatches",
    "Trainer",
    "TrainerConfig",
    "WarmupCosineSchedule",
    "check_finite",
    "clip_grad_norm",
    "load_model_weights",
    "lr_at",
    "next_token_loss",
    "pad_sequences",
    "random_batch",
    "read_checkpoint",
    "save_checkpoint",
    "seq2seq_loss",
]
