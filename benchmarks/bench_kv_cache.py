"""Generation speed with and without the KV cache: mini_llm's generate, and transformers' generate as the peer.

A mini_llm GPT in eval mode (float32, no_grad) greedily extends a random prompt (batch 1) by 64, 128 and 256 tokens
with ``use_cache=True`` and ``use_cache=False``. Without the cache every step runs the whole sequence so far through
the model; with it, only the new token. The transformers peer is a GPT2LMHeadModel with the same config and a copy
of the weights (sdpa attention), timed with ``model.generate(do_sample=False, use_cache=...)``. Each repeat times
every variant once, in turn; the table reports the median over the repeats of tokens/s = new tokens / seconds.

Run: .venv/bin/python benchmarks/bench_kv_cache.py [--threads 2] [--repeats 3] [--no-transformers] ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import torch
from common import GPTSize, hf_gpt2_like, interleaved_rounds, markdown_table, median, positive_int, print_machine

from mini_llm.generation import generate
from mini_llm.helpers import threads
from mini_llm.nn import GPT

COLUMNS = ("new tokens", "no cache tokens/s", "KV cache tokens/s", "speed-up")
PEER_COLUMNS = ("transformers no cache tokens/s", "transformers KV cache tokens/s", "transformers speed-up")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: model size, prompt, lengths to generate, repeats, threads and the peer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    GPTSize.add_arguments(parser, 512, "longest sequence the model takes")
    parser.add_argument("--prompt-len", type=positive_int, default=16, help="prompt tokens (batch 1)")
    parser.add_argument(
        "--new-tokens", type=positive_int, nargs="+", default=[64, 128, 256], help="tokens to generate, one row each"
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per variant (median reported)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-transformers", action="store_true", help="leave out the transformers peer columns")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the prompt")
    args = parser.parse_args(argv)
    GPTSize.check(parser, args)
    if args.prompt_len + max(args.new_tokens) > args.block_size:
        parser.error(
            f"--prompt-len + max(--new-tokens) must fit in --block-size, got {args.prompt_len} + "
            f"{max(args.new_tokens)} > {args.block_size}"
        )
    return args


def mini_llm_generate(model: GPT, prompt: torch.Tensor, n: int, use_cache: bool) -> torch.Tensor:
    """Greedy decoding of n tokens with mini_llm.generation; returns (1, T + n)."""
    return generate(model, prompt, n, greedy=True, use_cache=use_cache)


def transformers_generate(model: torch.nn.Module, prompt: torch.Tensor, n: int, use_cache: bool) -> torch.Tensor:
    """Greedy decoding of exactly n tokens with GPT2LMHeadModel.generate; returns (1, T + n)."""
    return model.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        use_cache=use_cache,
    )


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the machine and the table, and return the table's rows."""
    args = parse_args(argv)
    with threads(args.threads, libraries=("torch",)), torch.no_grad():
        torch.manual_seed(args.seed)
        config = GPTSize.config(args)
        model = GPT(config).eval()
        peer = None if args.no_transformers else hf_gpt2_like(model).eval()
        generator = torch.Generator().manual_seed(args.seed)
        prompt = torch.randint(0, args.vocab_size, (1, args.prompt_len), generator=generator)  # (1, T)

        variants = {
            "no cache": lambda n: mini_llm_generate(model, prompt, n, use_cache=False),
            "KV cache": lambda n: mini_llm_generate(model, prompt, n, use_cache=True),
        }
        if peer is not None:
            variants["transformers no cache"] = lambda n: transformers_generate(peer, prompt, n, use_cache=False)
            variants["transformers KV cache"] = lambda n: transformers_generate(peer, prompt, n, use_cache=True)

        print_machine()
        print(
            f"config: {GPTSize.describe(args)}, float32, eval, batch 1, "
            f"prompt {args.prompt_len} tokens, greedy; {args.repeats} repeats per variant, interleaved; "
            f"sdpa attention in both"
        )
        longest = max(args.new_tokens)
        outputs = {name: fn(longest) for name, fn in variants.items()}  # warm-up, and the tokens to compare
        reference = outputs["no cache"]
        same = {name: torch.equal(out, reference) for name, out in outputs.items() if name != "no cache"}
        print(
            f"same tokens as mini_llm without cache ({longest} new tokens): "
            + ", ".join(f"{k} {v}" for k, v in same.items())
        )

        rows = []
        for n in args.new_tokens:
            seconds = interleaved_rounds(
                {name: (lambda fn=fn, n=n: fn(n)) for name, fn in variants.items()}, args.repeats
            )
            speed = {name: n / median(times) for name, times in seconds.items()}
            row: dict[str, Any] = {
                "new tokens": n,
                "no cache tokens/s": speed["no cache"],
                "KV cache tokens/s": speed["KV cache"],
                "speed-up": speed["KV cache"] / speed["no cache"],
            }
            if peer is not None:
                row["transformers no cache tokens/s"] = speed["transformers no cache"]
                row["transformers KV cache tokens/s"] = speed["transformers KV cache"]
                row["transformers speed-up"] = speed["transformers KV cache"] / speed["transformers no cache"]
            rows.append(row)
        print(markdown_table(rows, COLUMNS if peer is None else COLUMNS + PEER_COLUMNS))
    return rows


if __name__ == "__main__":
    main()
