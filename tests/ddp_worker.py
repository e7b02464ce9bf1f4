"""A tiny training run for tests/test_distributed.py, in one process or on torch.distributed ranks.

Run by torchrun (``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py ...``) or by
hand with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set; ``make_trainer`` builds the same run in the test itself.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from mini_llm.nn import GPT, GPTConfig
from mini_llm.train import TokenBatches, Trainer, TrainerConfig, distributed

VOCAB, CONTEXT = 48, 16


def make_trainer(
    accum: int, steps: int, checkpoint: str | None = None, dropout: float = 0.0, parallel: str = "ddp"
) -> Trainer:
    """A 2-layer GPT on a fixed sequence (97 random tokens repeated, so the loss falls), batches of 8, seed 0."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=CONTEXT, n_layer=2, n_head=2, n_embd=32, dropout=dropout))
    tokens = torch.randint(VOCAB, (97,), generator=torch.Generator().manual_seed(1)).repeat(52)  # (5044,)
    config = TrainerConfig(
        max_steps=steps, batch_size=8, grad_accum_steps=accum, lr=1e-2, warmup_steps=2, min_lr=1e-3,
        eval_interval=0, progress=False, checkpoint_path=checkpoint, parallel=parallel,
    )
    return Trainer(model, config, TokenBatches(tokens, CONTEXT))


def write_result(trainer: Trainer, out: Path) -> None:
    """The losses (JSON) and the final weights (safetensors) of a run, written by rank 0 (every rank calls it)."""
    out.mkdir(parents=True, exist_ok=True)
    if distributed.current().is_main:
        (out / "losses.json").write_text(json.dumps([record["train_loss"] for record in trainer.history]))
    state = distributed.full_state(trainer.model.state_dict())  # every rank gathers a sharded model's tensors
    if distributed.current().is_main:
        save_file({name: t.contiguous() for name, t in state.items() if name != "lm_head.weight"},
                  out / "weights.safetensors")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--until", type=int, default=None, help="stop after this step (checkpoint written)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--resume", action="store_true", help="continue --checkpoint")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--parallel", default="ddp")
    parser.add_argument("--rank-1-dies-after", type=int, default=None, help="rank 1 exits after this step")
    parser.add_argument("--rank-1-hangs", action="store_true", help="rank 1 sleeps instead of exiting")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    world, _ = distributed.init_from_env(torch.device("cpu"))
    try:
        trainer = make_trainer(args.accum, args.steps, args.checkpoint, args.dropout, args.parallel)
        if args.resume:
            trainer.load_checkpoint(args.checkpoint)
        if args.rank_1_dies_after is not None:
            trainer.train(until=args.rank_1_dies_after)
            if world.rank == 1 and args.rank_1_hangs:
                time.sleep(600)  # alive but silent: the others give up after the process group's timeout
            if world.rank == 1:
                os._exit(3)  # no goodbye: the other ranks find out in their next collective
        trainer.train(until=args.until)
        if args.out is not None:
            write_result(trainer, args.out)
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
