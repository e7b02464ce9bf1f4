"""CPU training speed: mini_llm GPT against transformers' GPT2LMHeadModel with the same config, weights and batches.

Both models are float32, in train mode with dropout 0, use sdpa attention (torch's scaled_dot_product_attention)
and torch.optim.AdamW. The transformers model starts from a copy of mini_llm's weights, so both compute the same
loss on the same batches (checked before timing). A step is forward, loss, backward and optimizer step. After the
warm-up steps, each round times ``--steps`` steps of one model, then of the other (A B A B ...); the table reports
the median over the rounds of tokens/s = batch * block * steps / seconds.

Run: .venv/bin/python benchmarks/bench_gpt_training.py [--threads 2] [--rounds 5] ...
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch
from common import GPTSize, hf_gpt2_like, interleaved_rounds, markdown_table, median, positive_int, print_machine

from mini_llm.helpers import threads
from mini_llm.nn import GPT

COLUMNS = ("model", "params", "tokens/s (median)", "ratio vs transformers")
MINI_LLM = "mini_llm GPT"
TRANSFORMERS = "transformers GPT2LMHeadModel"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: model size, batch, steps, rounds and threads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    GPTSize.add_arguments(parser, 256, "tokens per sequence")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="sequences per step")
    parser.add_argument("--warmup", type=positive_int, default=2, help="untimed steps per model first")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps per model per round")
    parser.add_argument("--rounds", type=positive_int, default=5, help="timing rounds per model (median reported)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (both models)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the token batches")
    args = parser.parse_args(argv)
    GPTSize.check(parser, args)
    return args


def random_batches(n: int, batch_size: int, block_size: int, vocab_size: int, seed: int) -> list[torch.Tensor]:
    """n batches of uniform random token ids, each (batch_size, block_size + 1): inputs plus the next token."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (batch_size, block_size + 1), generator=generator) for _ in range(n)]


def mini_llm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of mini_llm's GPT on batch (B, T + 1)."""
    return model(batch[:, :-1], targets=batch[:, 1:]).loss


def transformers_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The same loss from GPT2LMHeadModel: shift_labels gives it the next tokens as they are (no internal shift)."""
    inputs = batch[:, :-1]  # (B, T)
    return model(input_ids=inputs, labels=inputs, shift_labels=batch[:, 1:].contiguous()).loss


class Trainer:
    """Train steps of one model on a fixed list of batches, taken in order (the same list for every model)."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
        batches: list[torch.Tensor],
        lr: float,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batches = batches
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.next_batch = 0

    def step(self) -> float:
        """One forward, backward and AdamW step on the next batch; returns the loss."""
        loss = self.loss_fn(self.model, self.batches[self.next_batch])
        self.next_batch += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def steps(self, n: int) -> None:
        """n train steps."""
        for _ in range(n):
            self.step()


def count_params(model: torch.nn.Module) -> int:
    """Parameters, the tied embedding / LM head counted once."""
    return sum(p.numel() for p in model.parameters())


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the machine and the table, and return the table's rows."""
    args = parse_args(argv)
    with threads(args.threads, libraries=("torch",)):
        torch.manual_seed(args.seed)
        config = GPTSize.config(args, dropout=0.0)
        mini = GPT(config).train()
        peer = hf_gpt2_like(mini).train()
        n_batches = args.warmup + args.rounds * args.steps
        batches = random_batches(n_batches, args.batch_size, args.block_size, args.vocab_size, args.seed)
        trainers = {
            MINI_LLM: Trainer(mini, mini_llm_loss, batches, args.lr),
            TRANSFORMERS: Trainer(peer, transformers_loss, batches, args.lr),
        }

        print_machine()
        print(
            f"config: {GPTSize.describe(args)}, batch_size={args.batch_size}, "
            f"float32, dropout 0, AdamW(lr={args.lr}); {args.warmup} warm-up steps, then {args.rounds} rounds "
            f"of {args.steps} steps per model, alternating"
        )
        first_losses = {name: trainer.step() for name, trainer in trainers.items()}  # the first warm-up step
        print(
            "loss at step 1 (same weights, same batch): " + ", ".join(f"{k} {v:.6f}" for k, v in first_losses.items())
        )
        if abs(first_losses[MINI_LLM] - first_losses[TRANSFORMERS]) > 1e-4 * max(1.0, abs(first_losses[MINI_LLM])):
            raise RuntimeError(f"the two models should compute the same loss, got {first_losses}")
        for trainer in trainers.values():
            trainer.steps(args.warmup - 1)

        seconds = interleaved_rounds(
            {name: (lambda t=trainer: t.steps(args.steps)) for name, trainer in trainers.items()}, args.rounds
        )
        tokens_per_round = args.batch_size * args.block_size * args.steps
        speed = {name: tokens_per_round / median(times) for name, times in seconds.items()}
        rows = [
            {
                "model": name,
                "params": count_params(trainers[name].model),
                "tokens/s (median)": speed[name],
                "ratio vs transformers": speed[name] / speed[TRANSFORMERS],
            }
            for name in trainers
        ]
        print(markdown_table(rows, COLUMNS))
        print(
            f"attention: {MINI_LLM} attn_impl={config.attn_impl!r} (F.scaled_dot_product_attention, is_causal=True); "
            f"{TRANSFORMERS} attn_implementation={peer.config._attn_implementation!r}"
        )
        for name, times in seconds.items():
            print(f"{name}: tokens/s per round " + ", ".join(f"{tokens_per_round / t:,.0f}" for t in times))
    return rows


if __name__ == "__main__":
    main()
