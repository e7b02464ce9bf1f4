"""``mini-llm future <experiment>``: the experiments behind chapter 8 (未来发展趋势与挑战).

One action per experiment, each writing small CSV files under ``--out-dir``: ``scaling`` (the zoo's loss surface and
compute-optimal allocation), ``generalization`` (in-domain against out-of-domain perplexity), ``lora`` (LoRA and
QLoRA adaptation to the reviews), ``memorization`` (extraction and canaries), ``bias`` (他/她 associations and WEAT).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from mini_llm.cli import argtypes
from mini_llm.cli.guard import Invocation
from mini_llm.cli.parser import add_actions, add_command


def _add_common(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    """Flags every experiment takes: where results and cached models are, how many threads, the seed."""
    parser.add_argument("--out-dir", type=Path, metavar="DIR", default=Path("results"),
                        help="folder for the CSV files (default: results)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", default=None,
                        help="cache root of the zoo (default: $MINI_LLM_CACHE, else ~/.cache/mini_llm)")
    parser.add_argument("--threads", type=argtypes.thread_count, default=1, help="torch threads (default 1)")
    if seed:
        parser.add_argument("--seed", type=argtypes.seed_value, default=0, help="random seed (default 0)")


def _add_scaling(actions: argparse._SubParsersAction) -> None:
    """``future scaling``: L(N, D) of Hoffmann et al. fitted on the zoo, with bootstrap intervals; iso-FLOP minima."""
    parser = add_command(
        actions, "scaling", "fit the zoo's loss surface L(N, D) and its compute-optimal allocation",
        run_scaling,
        description="Trend 1 (模型规模的扩大): L(N, D) = E + A/N^alpha + B/D^beta fitted (Hoffmann et al. 2022, "
                    "approach 3) on the 16-bit rows of RESULTS/kbit_sweep.csv and RESULTS/future_scaling_control.csv, "
                    "on the kept checkpoints and on finished runs, N with and without embeddings, with bootstrap "
                    "intervals (future_scaling_fit.csv); iso-FLOP minima (approach 2, future_isoflop.csv). The control "
                    "file comes from `mini-llm zoo train --preset-set eighth|quarter` and `mini-llm sweep --preset-set "
                    "eighth|quarter --fractions 1 --bits 16 --out results/future_scaling_control.csv`.",
    )
    parser.add_argument("--results", type=Path, metavar="RESULTS", default=Path("results"),
                        help="folder holding the sweep CSV files (default: results)")
    parser.add_argument("--samples", type=argtypes.steps, default=200, help="bootstrap resamples (default 200)")
    parser.add_argument("--out-dir", type=Path, metavar="DIR", default=Path("results"),
                        help="folder for the CSV files (default: results)")
    parser.add_argument("--seed", type=argtypes.seed_value, default=0, help="bootstrap seed (default 0)")


def _add_generalization(actions: argparse._SubParsersAction) -> None:
    """``future generalization``: every cached zoo checkpoint on its training text, held-out news and reviews."""
    parser = add_command(
        actions, "generalization", "measure the zoo on its training text, held-out news and shopping reviews",
        run_generalization,
        description="Challenge 3 (泛化能力): loss with and without <unk> targets of every cached zoo checkpoint "
                    "(main, eighth, quarter) on 8192 characters of its training split, of held-out People's Daily "
                    "and of the review test split (future_generalization.csv).",
    )
    _add_common(parser, seed=False)


def _add_lora(actions: argparse._SubParsersAction) -> None:
    """``future lora``: LoRA / QLoRA / full fine-tuning of the 2x64 zoo model on the reviews."""
    parser = add_command(
        actions, "lora", "adapt the 2x64 zoo model to the reviews with LoRA, QLoRA and full fine-tuning",
        run_lora,
        description="Trend 3 (个性化模型): LoRA on the fp32 base and on the NF4 base (QLoRA) at ranks 1, 4, 16, and "
                    "full fine-tuning, of the zoo's 2x64 on the review texts: review and People's Daily perplexity, "
                    "trainable parameters, adapter bytes, seconds (future_lora.csv).",
    )
    _add_common(parser)


def _add_memorization(actions: argparse._SubParsersAction) -> None:
    """``future memorization``: training-data extraction on the 2x64 checkpoints; canaries and their exposure."""
    parser = add_command(
        actions, "memorization", "measure extraction on the zoo and the exposure of inserted canaries",
        run_memorization,
        description="Challenge 2 (数据隐私和安全): greedy continuations of training and held-out prefixes by the 2x64 "
                    "zoo model at its kept checkpoints and how much of the training text repeats "
                    "(future_extraction.csv, future_duplication.csv); the 2x64 trained further on a text with secret "
                    "canaries inserted 1, 4, 16 and 64 times and their exposure (future_canaries.csv).",
    )
    _add_common(parser)


def _add_bias(actions: argparse._SubParsersAction) -> None:
    """``future bias``: 他/她 after occupation words in the corpus and the 2x64 model; WEAT on word2vec."""
    parser = add_command(
        actions, "bias", "measure 他/她 associations in the corpus, the char GPT and word2vec (WEAT)",
        run_bias,
        description="Challenge 4 (伦理问题): per occupation word, 他/她 counts after it in People's Daily and the "
                    "2x64 zoo model's share of 她 (future_bias.csv); WEAT on word2vec vectors trained as in chapter 4 "
                    "(future_weat.csv).",
    )
    _add_common(parser)


EXPERIMENTS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_scaling, _add_generalization, _add_lora, _add_memorization, _add_bias,
)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add the ``future`` group with one action per experiment."""
    future = add_command(commands, "future", "the experiments behind chapter 8 (trends and challenges)",
                         description="The experiments behind chapter 8 (未来发展趋势与挑战), one action each.")
    actions = add_actions(future)
    for add_experiment in EXPERIMENTS:
        add_experiment(actions)


def _report(paths: list[Path], start: float) -> int:
    """Print what was written and how long it took."""
    print(f"wrote {', '.join(str(p) for p in paths)} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def run_scaling(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm future scaling``: fit and write both CSV files."""
    from mini_llm.trends.compute_optimal import run_compute_optimal

    start = time.perf_counter()
    return _report(list(run_compute_optimal(args.out_dir, args.results, args.samples, args.seed).values()), start)


def run_generalization(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm future generalization``: measure every cached checkpoint, write the CSV file."""
    from mini_llm.trends.generalization import run_generalization as run

    start = time.perf_counter()
    return _report([run(args.out_dir, args.cache_dir, args.threads)], start)


def run_lora(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm future lora``: adapt and measure, write the CSV file."""
    from mini_llm.trends.lora_study import run_lora as run

    start = time.perf_counter()
    return _report([run(args.out_dir, cache_dir=args.cache_dir, threads=args.threads, seed=args.seed)], start)


def run_memorization(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm future memorization``: extraction and canaries, write both CSV files."""
    from mini_llm.trends.memorization import run_memorization as run

    start = time.perf_counter()
    tables = run(args.out_dir, cache_dir=args.cache_dir, threads=args.threads, seed=args.seed)
    return _report([args.out_dir / name for name in tables], start)


def run_bias(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm future bias``: corpus, model and WEAT, write both CSV files."""
    from mini_llm.trends.bias import BIAS_CSV, WEAT_CSV
    from mini_llm.trends.bias import run_bias as run

    start = time.perf_counter()
    run(args.out_dir, cache_dir=args.cache_dir, threads=args.threads, seed=args.seed)
    return _report([args.out_dir / BIAS_CSV, args.out_dir / WEAT_CSV], start)
