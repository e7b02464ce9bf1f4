"""The char-GPT presets: named model sizes and training recipes (tiny, small, base)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mini_llm.nn import GPTConfig
from mini_llm.train import TrainerConfig

MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "position")  # the fields GPTConfig takes


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
    position: str = "learned"  # position information: "learned" (GPT-2's table), "rope" or "alibi" (GPTConfig)
    name: str | None = None  # recorded in config.json for a preset passed as an object (None: "custom")

    def gpt_config(self, vocab_size: int) -> GPTConfig:
        """The model's GPTConfig for a vocabulary of ``vocab_size`` ids."""
        return GPTConfig(vocab_size=vocab_size, **{name: getattr(self, name) for name in MODEL_FIELDS})

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
        n_layer=2, n_head=4, n_embd=64, block_size=64,
        trainer=TrainerConfig(
            max_steps=3000, batch_size=16, lr=7e-3, warmup_steps=300, min_lr=7e-4, betas=(0.9, 0.99),
            weight_decay=0.1, eval_interval=250, eval_batches=20, checkpoint_interval=1000,
        ),
    ),
    "small": CharGPTPreset(
        description="4 layers x 128 wide, context 128, 1000 steps: 5-10 minutes on 2 CPU cores",
        n_layer=4, n_head=4, n_embd=128, block_size=128,
        trainer=TrainerConfig(
            max_steps=1000, batch_size=32, lr=2e-3, warmup_steps=100, min_lr=2e-4, weight_decay=0.1,
            eval_interval=100, eval_batches=20, checkpoint_interval=200,
        ),
    ),
    "base": CharGPTPreset(
        description="6 layers x 384 wide, context 256, 5000 steps, dropout 0.1: for a GPU (or patience)",
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.1,
        trainer=TrainerConfig(
            max_steps=5000, batch_size=64, lr=1e-3, warmup_steps=200, min_lr=1e-4, weight_decay=0.1,
            eval_interval=250, eval_batches=40, checkpoint_interval=500,
        ),
    ),
}


def get_preset(name: str) -> CharGPTPreset:
    """The preset called ``name``; ValueError listing the available ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve_preset(preset: str | CharGPTPreset) -> tuple[str, CharGPTPreset]:
    """(name recorded in config.json, preset) for a preset name or a CharGPTPreset object."""
    if isinstance(preset, CharGPTPreset):
        return preset.name or "custom", preset
    return preset, get_preset(preset)

