"""``mini-llm faq <experiment>``: the experiments behind the answers of chapter 9 (常见问题).

One action per experiment: ``add_commands`` creates the ``faq`` group and hands its actions to one ``_add_<name>``
function per experiment; a new experiment adds such a function, its handler, and one line in ``EXPERIMENTS``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from mini_llm.cli import argtypes
from mini_llm.cli.guard import Invocation
from mini_llm.cli.parser import add_actions, add_command, late_help

LONG_CONTEXT_CSV = "faq_long_context.csv"  # perplexity against evaluation length, per position method
SLIDING_WINDOW_CSV = "faq_sliding_window.csv"  # chunked against sliding-window evaluation
EARLY_EXIT_CSV = "faq_early_exit.csv"  # perplexity and FLOPs against the exit threshold
LOCAL_ATTENTION_CSV = "faq_local_attention.csv"  # full against sliding-window attention past the trained length


def _add_common(parser: argparse.ArgumentParser) -> None:
    """Flags every faq experiment takes: where results and cached models go, how many threads."""
    parser.add_argument("--out-dir", type=Path, metavar="DIR", default=Path("results"),
                        help="folder for the CSV files (default: results)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", default=None,
                        help="cache root for the trained models (default: $MINI_LLM_CACHE, else ~/.cache/mini_llm)")
    parser.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")


def _add_position_training(parser: argparse.ArgumentParser) -> None:
    """Flags of the experiments on the long-context models (trained or reused from the cache), then the common ones."""
    late_help(parser.add_argument("--steps", type=argtypes.steps, default=None), _default_steps)
    parser.add_argument("--seed", type=argtypes.seed_value, default=0, help="initial weights and batches (default 0)")
    _add_common(parser)


def _default_steps() -> str:
    """Help of --steps, read from the experiment's module when help is printed."""
    from mini_llm.scaling.long_context import DEFAULT_STEPS

    return f"training steps per model (default {DEFAULT_STEPS}: about 3 minutes each on 2 idle cores)"


def _add_long_context(actions: argparse._SubParsersAction) -> None:
    """``faq long-context``: learned positions, RoPE (plain, PI, NTK) and ALiBi past the trained length."""
    parser = add_command(
        actions, "long-context", "train learned / RoPE / ALiBi char GPTs and measure them past their context",
        run_long_context,
        description=f"FAQ 3 (长文本): three char GPTs, identical except their position information, trained with "
                    f"context 128 (cached; finished models are reused, an interrupted one resumes), evaluated at "
                    f"lengths 64..1024 ({LONG_CONTEXT_CSV}) and by chunked against sliding-window evaluation "
                    f"({SLIDING_WINDOW_CSV}).",
    )
    _add_position_training(parser)


def _add_compress(actions: argparse._SubParsersAction) -> None:
    """``faq compress``: pruning, distillation, bf16, speculative decoding and decode speed on the zoo."""
    parser = add_command(
        actions, "compress", "prune, distil, run in bf16 and decode speculatively with the zoo's models",
        run_compress,
        description="FAQ 4 (推理效率): the zoo's TARGET (default 3x144) pruned (magnitude, Wanda, 2:4; with "
                    "and without a short recovery fine-tune), distilled into small students, evaluated in bf16, "
                    "checked by small drafts in speculative decoding; decode speed and CSR against dense matmul. "
                    "Needs the zoo models (mini-llm zoo train --sizes 1x64,2x64,3x144 --seeds 0); "
                    "writes faq_<table>.csv.",
    )
    parser.add_argument("--target", default="3x144", help="teacher / target zoo size (default 3x144)")
    parser.add_argument("--small", default="1x64,2x64", help="student / draft zoo sizes (default 1x64,2x64)")
    parser.add_argument("--tables", default=None, help="comma-separated subset of the tables (default: all)")
    parser.add_argument("--preset-set", default="main", help="zoo preset set (default main)")
    _add_common(parser)


def _add_early_exit(actions: argparse._SubParsersAction) -> None:
    """``faq early-exit``: exit heads on a zoo model, perplexity and FLOPs against the confidence threshold."""
    parser = add_command(
        actions, "early-exit", "train exit heads on a zoo model and measure exiting by confidence",
        run_early_exit,
        description=f"FAQ 4 (动态推理): an exit head (LayerNorm + the tied LM head) after every block but the last of "
                    f"the zoo's TARGET, trained with the model frozen; held-out perplexity, mean blocks run and "
                    f"matmul FLOPs per token against the confidence threshold ({EARLY_EXIT_CSV}). Needs the zoo "
                    f"model (mini-llm zoo train --sizes TARGET --seeds 0).",
    )
    parser.add_argument("--target", default="3x144", help="zoo size (default 3x144)")
    parser.add_argument("--steps", type=argtypes.steps, default=300, help="training steps of the heads (default 300)")
    parser.add_argument("--seed", type=argtypes.seed_value, default=0, help="batches of the heads (default 0)")
    parser.add_argument("--preset-set", default="main", help="zoo preset set (default main)")
    _add_common(parser)


def _add_local_attention(actions: argparse._SubParsersAction) -> None:
    """``faq local-attention``: the RoPE and ALiBi models with sliding-window attention past their context."""
    parser = add_command(
        actions, "local-attention", "full against sliding-window attention on the long-context models",
        run_local_attention,
        description=f"FAQ 3 (长文本): the RoPE and ALiBi models of `faq long-context` (cached; trained if missing) run "
                    f"with sliding-window attention of their trained length and a bounded KV cache, no retraining, "
                    f"against full attention at 256..2048: perplexity, decode ms per token and KV-cache bytes "
                    f"({LOCAL_ATTENTION_CSV}).",
    )
    _add_position_training(parser)


EXPERIMENTS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_long_context, _add_local_attention, _add_compress, _add_early_exit,
)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``faq`` group with one action per experiment."""
    faq = add_command(commands, "faq", "the experiments behind the answers of chapter 9 (FAQ)",
                      description="The experiments behind the answers of chapter 9 (常见问题), one action each.")
    actions = add_actions(faq)
    for add_experiment in EXPERIMENTS:
        add_experiment(actions)


def run_long_context(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm faq long-context``: train or reuse the three models, write both CSV files."""
    from mini_llm import helpers
    from mini_llm.scaling.long_context import DEFAULT_STEPS
    from mini_llm.scaling.long_context import run_long_context as run

    lengths, windows = args.out_dir / LONG_CONTEXT_CSV, args.out_dir / SLIDING_WINDOW_CSV
    invocation.on_interrupt = lambda: "run the same command again: finished models are reused, the last one resumes"
    start = time.perf_counter()
    with helpers.threads(args.threads, libraries=("torch",)):
        run(lengths, windows, steps=args.steps or DEFAULT_STEPS, seed=args.seed, cache_dir=args.cache_dir, log=print)
    print(f"wrote {lengths} and {windows} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def run_compress(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm faq compress``: measure the chosen tables and write one CSV file each."""
    from mini_llm import helpers
    from mini_llm.scaling.faq_study import TABLES, run_faq_compress

    tables = TABLES if args.tables is None else tuple(t.strip() for t in args.tables.split(","))
    start = time.perf_counter()
    with helpers.threads(args.threads, libraries=("torch",)):
        run_faq_compress(args.out_dir, args.preset_set, args.target, tuple(args.small.split(",")), tables=tables,
                         cache_dir=args.cache_dir, log=print)
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def run_early_exit(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm faq early-exit``: train the exit heads, write the CSV file."""
    from mini_llm import helpers
    from mini_llm.scaling.early_exit import run_early_exit as run

    out = args.out_dir / EARLY_EXIT_CSV
    with helpers.threads(args.threads, libraries=("torch",)):
        run(out, args.preset_set, args.target, args.steps, args.seed, cache_dir=args.cache_dir, log=print)
    print(f"wrote {out}")
    return 0


def run_local_attention(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm faq local-attention``: train or reuse the RoPE and ALiBi models, write the CSV file."""
    from mini_llm import helpers
    from mini_llm.scaling.long_context import DEFAULT_STEPS
    from mini_llm.scaling.long_context import run_local_attention as run

    out = args.out_dir / LOCAL_ATTENTION_CSV
    invocation.on_interrupt = lambda: "run the same command again: finished models are reused, the last one resumes"
    with helpers.threads(args.threads, libraries=("torch",)):
        run(out, steps=args.steps or DEFAULT_STEPS, seed=args.seed, cache_dir=args.cache_dir, log=print)
    print(f"wrote {out}")
    return 0
