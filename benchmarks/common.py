"""Shared helpers for the benchmark scripts: the machine, interleaved timing, tables, GPT-2 peers, argument types.

The scripts import this module as ``common``: running ``python benchmarks/NAME.py`` puts benchmarks/ on sys.path.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mini_llm.cli.argtypes import positive_int as positive_int  # the benchmarks' argparse type
from mini_llm.interop.gpt2 import gpt2_to_hf
from mini_llm.nn import GPTConfig


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or platform.processor() where that file is missing."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: versions, CPU, cores, torch threads and the load when measuring began."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "logical cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if hasattr(os, "getloadavg"):
        info["load average (1 min)"] = round(os.getloadavg()[0], 2)
    return info


def format_machine(info: dict[str, Any]) -> str:
    """One line: 'machine: torch 2.13.0, cpu AMD EPYC, ...'."""
    return "machine: " + ", ".join(f"{key} {value}" for key, value in info.items())


def busy_note(info: dict[str, Any]) -> str | None:
    """A warning line when the load average exceeds the logical cores: other jobs compete for the CPU."""
    load, cores = info.get("load average (1 min)"), info.get("logical cores")
    if load is None or cores is None or load <= cores:
        return None
    return (
        f"note: load average {load} on {cores} logical cores: other jobs are running, so the numbers are noisy "
        "(fewer torch threads, e.g. --threads 1, suffer less from the contention)"
    )


def print_machine(info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the machine line of info (default: machine_info()) and the busy note when there is one; return info."""
    info = machine_info() if info is None else info
    print(format_machine(info))
    note = busy_note(info)
    if note is not None:
        print(note)
    return info


def time_call(fn: Callable[[], Any]) -> float:
    """Seconds (time.perf_counter) that one call of fn takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_rounds(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Time each candidate once per round, in turn (A B A B ...), so that a busy machine slows them alike.

    Returns the seconds of every round per candidate name; report their median.
    """
    bursts = interleaved_bursts(candidates, rounds, 1)
    return {name: [calls[0] for calls in per_round] for name, per_round in bursts.items()}


def interleaved_bursts(
    candidates: dict[str, Callable[[], Any]], rounds: int, burst: int
) -> dict[str, list[list[float]]]:
    """Time `burst` calls in a row of each candidate per round, candidates in turn (AAA BBB AAA BBB ...).

    Returns, per candidate name, one list of `burst` call seconds per round. A burst is what decoding does (one
    kernel for many layers in a row): its first call also pays for waking a thread pool that slept while the other
    candidates ran, the later ones show the kernel itself.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if burst < 1:
        raise ValueError(f"burst must be >= 1, got {burst}")
    seconds: dict[str, list[list[float]]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            seconds[name].append([time_call(fn) for _ in range(burst)])
    return seconds


def median(values: Sequence[float]) -> float:
    """The median of values (at least one)."""
    if not values:
        raise ValueError("median needs at least one value, got none")
    return statistics.median(values)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table with one row per dict, the cells in the order of columns (the dicts' keys)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[column]) for column in columns) + " |")
    return "\n".join(lines)


class GPTSize:
    """The size options of the GPT that bench_gpt_training and bench_kv_cache build: --n-layer, --n-head, --n-embd,
    --vocab-size and --block-size, their check, the GPTConfig they give and the line that describes them."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, block_size: int, block_help: str) -> None:
        """Add the five size options to parser (--block-size with its own default and help)."""
        parser.add_argument("--n-layer", type=positive_int, default=4, help="transformer blocks")
        parser.add_argument("--n-head", type=positive_int, default=4, help="attention heads")
        parser.add_argument("--n-embd", type=positive_int, default=256, help="model width")
        parser.add_argument("--vocab-size", type=positive_int, default=5000, help="about the People's Daily characters")
        parser.add_argument("--block-size", type=positive_int, default=block_size, help=block_help)

    @staticmethod
    def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        """parser.error unless --n-embd is divisible by --n-head."""
        if args.n_embd % args.n_head != 0:
            parser.error(f"--n-embd must be divisible by --n-head, got {args.n_embd} and {args.n_head}")

    @staticmethod
    def config(args: argparse.Namespace, **extra: Any) -> GPTConfig:
        """The GPTConfig of the size options with sdpa attention and the extra fields."""
        return GPTConfig(
            vocab_size=args.vocab_size,
            block_size=args.block_size,
            n_layer=args.n_layer,
            n_head=args.n_head,
            n_embd=args.n_embd,
            attn_impl="sdpa",
            **extra,
        )

    @staticmethod
    def describe(args: argparse.Namespace) -> str:
        """'n_layer=4, n_head=4, n_embd=256, vocab_size=5000, block_size=256' of the size options."""
        return (
            f"n_layer={args.n_layer}, n_head={args.n_head}, n_embd={args.n_embd}, "
            f"vocab_size={args.vocab_size}, block_size={args.block_size}"
        )


def hf_gpt2_like(model: torch.nn.Module) -> torch.nn.Module:
    """A transformers GPT2LMHeadModel with sdpa attention and a copy of a mini_llm GPT's weights (``gpt2_to_hf``).

    Both models then compute the same function (up to float rounding), so they do the same work per token.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # no warnings about the config's unused generation defaults
    return gpt2_to_hf(model, attn_implementation="sdpa")


def shape_arg(text: str) -> tuple[int, int]:
    """argparse type: a weight shape 'NxK' with N >= 1 and K a positive multiple of 64."""
    try:
        n, k = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"shape must look like 4096x11008 (N x K), got {text!r}") from error
    if n < 1 or k < 64 or k % 64:
        raise argparse.ArgumentTypeError(f"shape needs N >= 1 and K a multiple of 64, got {text!r}")
    return n, k
