"""``mini-llm classify train | eval | imbalance``: the review-sentiment classifiers of chapters 5 and 6."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mini_llm.cli import argtypes
from mini_llm.cli.guard import Invocation, UsageError
from mini_llm.cli.parser import PROG, add_actions, add_command, late_help
from mini_llm.helpers import threads


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of ``classify train`` and ``classify eval``: which classifier, and where its run directory is."""
    late_help(parser.add_argument("--model", type=argtypes.classify_model, required=True, metavar="MODEL",
                                  help="which classifier"),
              lambda: f"which classifier: {', '.join(argtypes.classify_models())}")
    _add_preset(parser)
    parser.add_argument("--seed", type=argtypes.seed_value, default=0, help="shuffling, weights, dropout (default 0)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", default=None,
                        help="cache root; runs live in <cache>/classify/<model>-<preset>-seed<seed> "
                             "(default: $MINI_LLM_CACHE, else ~/.cache/mini_llm)")
    parser.add_argument("--checkpoint", type=Path, metavar="DIR", default=None,
                        help="run directory (default: the one in the cache for --model, --preset and --seed)")
    parser.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")


def _add_preset(parser: argparse.ArgumentParser) -> None:
    """The --preset flag, whose help lists the presets when help is printed."""
    late_help(parser.add_argument("--preset", type=argtypes.classify_preset, default="book",
                                  help="size (default book)"),
              lambda: f"size ({argtypes.classify_preset_help()}; default book)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``classify train``, ``classify eval`` and ``classify imbalance``."""
    classify = add_command(
        commands, "classify",
        "review-sentiment classifiers of chapters 5 and 6 (naive Bayes, transformers BERT, mini_llm BERT)",
        description="Train and evaluate review-sentiment classifiers on the fixed train/validation/test split.",
    )
    actions = add_actions(classify)
    train = add_command(actions, "train", "train a classifier into its run directory", run_train)
    _add_run_flags(train)
    train.add_argument("--overwrite", action="store_true", help="replace a run already in the directory")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")

    evaluate = add_command(actions, "eval", "evaluate a trained classifier on the test split (or classify --text)",
                           run_eval)
    _add_run_flags(evaluate)
    evaluate.add_argument("--split", choices=("test", "validation"), default="test",
                          help="which split to measure (default test)")
    evaluate.add_argument("--out", type=Path, metavar="FILE", default=None,
                          help="JSON file for the metrics and per-example predictions, e.g. "
                               "results/classify_naive_bayes.json (default: <run directory>/eval_<split>.json)")
    evaluate.add_argument("--text", type=argtypes.non_empty("give a review to classify", strip=True),
                          action="append", default=None, help="classify this text instead of a split (repeatable)")

    sweep = add_command(
        actions, "imbalance",
        "train transformers' BERT on imbalanced subsets of the training reviews, without and with class weights",
        run_imbalance,
    )
    _add_preset(sweep)
    sweep.add_argument("--ratios", type=argtypes.comma_list(argtypes.ratio), default=[4.0, 19.0],
                       help="majority:minority ratios, comma-separated, each >= 1 (default 4,19)")
    sweep.add_argument("--seed", type=argtypes.seed_value, default=0,
                       help="subsampling, shuffling, weights (default 0)")
    sweep.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")
    sweep.add_argument("--out", type=Path, metavar="FILE", required=True,
                       help="JSON file, e.g. results/classify_imbalance.json")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_dir(args: argparse.Namespace) -> Path:
    """--checkpoint, or the cache's run directory for --model, --preset and --seed."""
    from mini_llm.tasks.classify import default_run_dir

    return args.checkpoint or default_run_dir(args.model, args.preset, args.seed, args.cache_dir)


def run_train(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm classify train``: train a classifier into its run directory."""
    from mini_llm.tasks.classify import train_run

    with threads(args.threads, libraries=("torch",)):
        run_dir = _run_dir(args)
        invocation.on_interrupt = lambda: "nothing was saved as a finished run: run the same command again"
        train_run(args.model, args.preset, run_dir, seed=args.seed, progress=not args.no_progress,
                  overwrite=args.overwrite, log=print)
        print(f"wrote {run_dir}")
        print(f"next: {PROG} classify eval --model {args.model} --checkpoint {run_dir}")
        return 0


def run_eval(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm classify eval``: metrics on a split written as JSON, or the classes of --text."""
    from mini_llm.tasks.classify import evaluate_run, predict_texts, write_eval
    from mini_llm.tasks.classify.runs import RUN_FILE, read_run

    with threads(args.threads, libraries=("torch",)):
        run_dir = _run_dir(args)
        if not (run_dir / RUN_FILE).is_file():
            flag = "--checkpoint" if args.checkpoint else "--model/--preset/--seed"
            raise UsageError(f"argument {flag}: no trained classifier in {run_dir}; train one first with: "
                             f"{PROG} classify train --model {args.model} --preset {args.preset} --seed {args.seed}"
                             + (f" --checkpoint {run_dir}" if args.checkpoint else ""))
        trained = read_run(run_dir)["model"]
        if trained != args.model:
            raise UsageError(f"argument --model: {run_dir} holds a {trained} run, not {args.model}")
        if args.text:
            probabilities = predict_texts(run_dir, args.text)
            for text, row in zip(args.text, probabilities, strict=True):
                label = "positive" if row.argmax() == 1 else "negative"
                print(f"{label}\tP(positive) = {row[1]:.4f}\t{text}")
            return 0
        result = evaluate_run(run_dir, args.split, command=invocation.line)
        out = write_eval(result, args.out or run_dir / f"eval_{args.split}.json")
        metrics = result["metrics"]
        accuracy, f1 = metrics["accuracy"], metrics["macro_f1"]
        print(f"{args.model} on the {args.split} split ({metrics['n']} reviews): "
              f"accuracy {accuracy['value']:.2%} [{accuracy['low']:.2%}, {accuracy['high']:.2%}], "
              f"macro F1 {f1['value']:.4f} [{f1['low']:.4f}, {f1['high']:.4f}] (95% intervals)")
        print(f"confusion matrix (rows: true negative, positive; columns: predicted): {metrics['confusion_matrix']}")
        print(f"wrote {out}")
        return 0


def run_imbalance(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm classify imbalance``: the sweep of mini_llm.tasks.classify.imbalance_sweep, written to --out."""
    from mini_llm.tasks.classify.imbalance_sweep import imbalance_sweep, write_imbalance

    with threads(args.threads, libraries=("torch",)):
        start = time.perf_counter()
        result = imbalance_sweep(args.preset, args.ratios, seed=args.seed, progress=not args.no_progress, log=print)
        write_imbalance({"command": invocation.line, **result}, args.out)
        print(f"wrote {args.out} ({(time.perf_counter() - start) / 60:.1f} min)")
        return 0
