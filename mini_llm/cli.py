"""The ``mini-llm`` command: ``train`` / ``generate`` a char-level GPT on People's Daily, ``zoo``, ``sweep``,
and ``classify`` (the review-sentiment classifiers of chapter 5).

User errors (bad flags, a missing or corrupt run directory, a prompt the model cannot read) print one
``mini-llm <command>: error: ...`` line on stderr and give exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PROG = "mini-llm"
EXIT_USAGE = 2  # argparse's status for bad arguments; used for every user error
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_FAILURE = 1  # a failure while running (disk full, out of memory), not a usage error
MAX_STEPS = 1_000_000  # --max-steps: weeks of training for the presets on a CPU; more is a typo
MAX_NEW_TOKENS = 100_000  # --max-new-tokens / --new-chars: minutes of decoding; more is a typo
MAX_THREADS = 1024  # --threads


def _number(text: str, kind: Callable[[str], float], allowed: str, ok: Callable[[float], bool]) -> float:
    """Parse ``text`` with ``kind``; ArgumentTypeError (argparse names the flag) unless ``ok`` holds."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return int(_number(text, int, "an integer >= 1", lambda v: v >= 1))


def bounded_int(maximum: int) -> Callable[[str], int]:
    """An argparse type for an integer in 1..maximum."""

    def read(text: str) -> int:
        return int(_number(text, int, f"an integer >= 1 and at most {maximum:_}", lambda v: 1 <= v <= maximum))

    return read


def thread_count(text: str) -> int:
    """A number of torch threads: an integer in 1..MAX_THREADS."""
    return bounded_int(MAX_THREADS)(text)


def seed_value(text: str) -> int:
    """An integer in [0, 2**63 - 1], the range torch generators accept."""
    return int(_number(text, int, "an integer in [0, 2**63 - 1]", lambda v: 0 <= v < 2**63))


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, "a number > 0", lambda v: v > 0)


def probability(text: str) -> float:
    """A number in (0, 1]."""
    return _number(text, float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def non_empty(text: str) -> str:
    """A string with at least one character."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty: give the text the model should continue")
    return text


def preset_name(text: str) -> str:
    """The name of a preset in ``mini_llm.charlm.PRESETS``."""
    from mini_llm.charlm import get_preset

    try:
        get_preset(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text


def comma_list(parse: Callable[[str], object], what: str) -> Callable[[str], tuple]:
    """An argparse type for a comma-separated list whose items ``parse`` reads (ValueError: not one of them)."""

    def read(text: str) -> tuple:
        from mini_llm.scaling.sweep import parse_list

        try:
            return parse_list(text, parse, what)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return read


def _sweep_bits(text: str) -> int:
    """k in 2..8, or 16 for the baseline."""
    if text not in {str(k) for k in range(2, 9)} | {"16"}:
        raise ValueError(f"bits must be integers in 2..8 or 16 (the 16-bit baseline), got {text!r}")
    return int(text)


def _codebook(text: str) -> str:
    """A codebook name of mini_llm.quant."""
    from mini_llm.quant import CODEBOOKS

    if text not in CODEBOOKS:
        raise ValueError(f"codebooks must be among {', '.join(CODEBOOKS)}, got {text!r}")
    return text


def _outliers(text: str) -> bool:
    """'yes' or 'no'."""
    if text not in ("no", "yes"):
        raise ValueError(f"outliers must be no, yes or no,yes, got {text!r}")
    return text == "yes"


def _embedding(text: str) -> str:
    """'quantized' or '16bit'."""
    from mini_llm.scaling.sweep import EMBEDDINGS

    if text not in EMBEDDINGS:
        raise ValueError(f"embedding must be among {', '.join(EMBEDDINGS)}, got {text!r}")
    return text


def _seed_item(text: str) -> int:
    """A seed in a comma list."""
    try:
        return seed_value(text)
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"seeds {error}") from error


def _blocksize(text: str) -> int | None:
    """A block size for the sweep."""
    from mini_llm.scaling.sweep import parse_blocksize

    return parse_blocksize(text)


def _fraction(text: str) -> object:
    """A share of the token budget at which weights were kept."""
    from mini_llm.scaling.zoo import parse_fraction

    return parse_fraction(text)


def _preset_help() -> str:
    """One line per preset for --help."""
    from mini_llm.charlm import PRESETS

    return "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its ``train`` and ``generate`` subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train and sample a character-level GPT on People's Daily (January 1998)."
    )
    from mini_llm import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_generate(commands)
    _add_zoo(commands)
    _add_sweep(commands)
    _add_classify(commands)
    _add_decoding(commands)
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand's flags."""
    train = commands.add_parser(
        "train", help="train a char-level GPT", description="Train a char-level GPT on People's Daily (Jan 1998)."
    )
    train.add_argument("--preset", type=preset_name, default="tiny", help=f"model size and recipe ({_preset_help()})")
    train.add_argument("--out", type=Path, default=None, help="run directory to write (default: runs/<preset>)")
    train.add_argument("--max-steps", type=bounded_int(MAX_STEPS), default=None,
                       help=f"steps to train, at most {MAX_STEPS:_} (default: the preset's)")
    train.add_argument("--seed", type=seed_value, default=None, help="initial weights and batches (default 0)")
    train.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume", action="store_true",
        help="continue the checkpoint in --out (a larger --max-steps trains on at the final learning rate)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a model already in --out")


def _add_generate(commands: argparse._SubParsersAction) -> None:
    """The ``generate`` subcommand's flags."""
    gen = commands.add_parser(
        "generate", help="continue a prompt with a trained model", description="Continue a prompt with a trained model."
    )
    gen.add_argument("--checkpoint", type=Path, required=True, help="run directory written by `mini-llm train`")
    gen.add_argument("--prompt", type=non_empty, required=True, help="text to continue (characters of the corpus)")
    gen.add_argument("--max-new-tokens", type=bounded_int(MAX_NEW_TOKENS), default=100,
                     help=f"characters to add, at most {MAX_NEW_TOKENS:_} (default 100)")
    gen.add_argument("--temperature", type=positive_float, default=0.8, help="> 0; lower is safer (default 0.8)")
    gen.add_argument("--top-k", type=positive_int, default=None, help="sample from the k likeliest (default: all)")
    gen.add_argument("--top-p", type=probability, default=None, help="nucleus sampling mass in (0, 1] (default 1)")
    gen.add_argument("--greedy", action="store_true", help="always take the likeliest character")
    gen.add_argument("--seed", type=seed_value, default=None, help="seed for sampling (default: random)")
    gen.add_argument("--no-cache", action="store_true", help="recompute every step instead of using the KV cache")
    gen.add_argument("--device", default="cpu", help="torch device (default cpu)")


def _add_decoding(commands: argparse._SubParsersAction) -> None:
    """The ``decoding`` subcommand's flags."""
    text = "continue held-out People's Daily prompts with every decoding strategy and write the texts as JSON"
    decoding = commands.add_parser("decoding", help=text, description=text[0].upper() + text[1:] + ".")
    decoding.add_argument("--checkpoint", type=Path, required=True,
                          help="run directory of a char GPT (`mini-llm train`, or a zoo model such as "
                               "~/.cache/mini_llm/zoo/main/3x144-seed0)")
    decoding.add_argument("--out", type=Path, required=True, help="JSON file to write")
    decoding.add_argument("--prompts", type=positive_int, default=100, help="held-out prompts (default 100)")
    decoding.add_argument("--prompt-chars", type=positive_int, default=16, help="characters per prompt (default 16)")
    decoding.add_argument("--new-chars", type=bounded_int(MAX_NEW_TOKENS), default=100,
                          help=f"characters to add, at most {MAX_NEW_TOKENS:_} (default 100)")
    decoding.add_argument("--seed", type=seed_value, default=0, help="prompts and sampling (default 0)")
    decoding.add_argument("--threads", type=thread_count, default=1,
                          help="torch threads (default 1; the sampled texts depend on it)")


def _add_zoo_selection(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the zoo and sweep commands: which models, and where they are cached."""
    parser.add_argument("--preset-set", default="main",
                        help="main (the zoo of the book) or test (seconds; default main)")
    parser.add_argument("--sizes", type=comma_list(str, "--sizes"), default=None,
                        help="comma-separated sizes such as 2x64,3x80 (default: all of the set; see zoo list)")
    parser.add_argument("--seeds", type=comma_list(_seed_item, "--seeds"), default=None,
                        help="comma-separated seeds for every chosen size (default: each size's planned seeds)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache root; the zoo lives in <cache>/zoo/<set> (default: $MINI_LLM_CACHE, else "
                             "~/.cache/mini_llm)")


def _add_zoo(commands: argparse._SubParsersAction) -> None:
    """The ``zoo train`` and ``zoo list`` subcommands."""
    zoo = commands.add_parser("zoo", help="train or list the model zoo of the scaling experiment",
                              description="The model zoo: char-level GPTs of several sizes, one recipe.")
    actions = zoo.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    train = actions.add_parser("train", help="train the zoo (resumes; finished models are skipped)",
                               description="Train the zoo's models into the cache; run it again to resume.")
    _add_zoo_selection(train)
    train.add_argument("--threads", type=thread_count, default=None, help="torch threads (default: torch's)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    listing = actions.add_parser("list", help="the plan: sizes, parameters, tokens, estimated time, status",
                                 description="Print the zoo plan and what is in the cache.")
    _add_zoo_selection(listing)


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    """The ``sweep`` subcommand's flags."""
    sweep = commands.add_parser(
        "sweep", help="quantize every kept zoo checkpoint in many ways and measure it",
        description="k-bit sweep over the zoo's kept checkpoints: one CSV row per run, appended; rows already in "
                    "--out are skipped, so an interrupted sweep resumes.",
    )
    sweep.add_argument("--out", type=Path, required=True, help="CSV file to append to, e.g. results/kbit_sweep.csv")
    _add_zoo_selection(sweep)
    sweep.add_argument("--fractions", type=comma_list(_fraction, "--fractions"), default=None,
                       help="budget shares of the kept checkpoints, from 1/8,1/4,1/2,1 (default: all)")
    sweep.add_argument("--bits", type=comma_list(_sweep_bits, "--bits"), default=None,
                       help="k values from 2..8, and 16 for the baseline (default: 2,3,4,5,6,7,8,16)")
    sweep.add_argument("--codebooks", type=comma_list(_codebook, "--codebooks"), default=None,
                       help="from int,float,dynamic,quantile,nf (default: all)")
    sweep.add_argument("--blocksizes", type=comma_list(_blocksize, "--blocksizes"), default=None,
                       help="'tensor' (one block) or powers of two in 32..4096 (default: tensor,1024,256,64)")
    sweep.add_argument("--outliers", type=comma_list(_outliers, "--outliers"), default=None,
                       help="no, yes or no,yes: keep outlier input dimensions in 16 bit (default: no,yes)")
    sweep.add_argument("--embedding", type=comma_list(_embedding, "--embedding"), default=None,
                       help="quantized and/or 16bit: how the tied embedding matrix is stored (default: quantized)")
    sweep.add_argument("--eval-windows", type=positive_int, default=None,
                       help="held-out windows of context length (default 64)")
    sweep.add_argument("--outlier-fraction", type=probability, default=None,
                       help="share of input dimensions kept in 16 bit with outliers (default 0.02)")
    sweep.add_argument("--threads", type=thread_count, default=None,
                       help="torch threads (default: every core)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")


def _classify_preset(text: str) -> str:
    """The name of a preset in ``mini_llm.classify.PRESETS``."""
    from mini_llm.classify import get_preset

    try:
        get_preset(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text


def _review_text(text: str) -> str:
    """A text with at least one non-space character."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty: give a review to classify")
    return text


def _imbalance_ratio(text: str) -> float:
    """A majority:minority ratio: a finite number >= 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"must be a number >= 1, got {text!r}")
    return value


def _add_classify(commands: argparse._SubParsersAction) -> None:
    """The ``classify train``, ``classify eval`` and ``classify imbalance`` subcommands."""
    from mini_llm.classify import MODELS, PRESETS

    classify = commands.add_parser(
        "classify", help="review-sentiment classifiers of chapter 5 (naive Bayes, transformers BERT, mini_llm BERT)",
        description="Train and evaluate review-sentiment classifiers on the fixed train/validation/test split.",
    )
    actions = classify.add_subparsers(dest="classify_command", metavar="ACTION", required=True)
    presets = "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())
    for action, text in (("train", "train a classifier into its run directory"),
                         ("eval", "evaluate a trained classifier on the test split (or classify --text)")):
        parser = actions.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("--model", required=True, choices=MODELS, help="which classifier")
        parser.add_argument("--preset", type=_classify_preset, default="book", help=f"size ({presets}; default book)")
        parser.add_argument("--seed", type=seed_value, default=0, help="shuffling, weights, dropout (default 0)")
        parser.add_argument("--cache-dir", type=Path, default=None,
                            help="cache root; runs live in <cache>/classify/<model>-<preset>-seed<seed> "
                                 "(default: $MINI_LLM_CACHE, else ~/.cache/mini_llm)")
        parser.add_argument("--checkpoint", type=Path, default=None,
                            help="run directory (default: the one in the cache for --model, --preset and --seed)")
        parser.add_argument("--threads", type=thread_count, default=None, help="torch threads (default: torch's)")
        if action == "train":
            parser.add_argument("--overwrite", action="store_true", help="replace a run already in the directory")
            parser.add_argument("--no-progress", action="store_true", help="no progress bars")
        else:
            parser.add_argument("--split", choices=("test", "validation"), default="test",
                                help="which split to measure (default test)")
            parser.add_argument("--out", type=Path, default=None,
                                help="JSON file for the metrics and per-example predictions, e.g. "
                                     "results/classify_naive_bayes.json (default: <run directory>/eval_<split>.json)")
            parser.add_argument("--text", type=_review_text, action="append", default=None,
                                help="classify this text instead of a split (repeatable)")
    text = "train transformers' BERT on imbalanced subsets of the training reviews, without and with class weights"
    sweep = actions.add_parser("imbalance", help=text, description=text[0].upper() + text[1:] + ".")
    sweep.add_argument("--preset", type=_classify_preset, default="book", help=f"size ({presets}; default book)")
    sweep.add_argument("--ratios", type=comma_list(_imbalance_ratio, "--ratios"), default=[4.0, 19.0],
                       help="majority:minority ratios, comma-separated, each >= 1 (default 4,19)")
    sweep.add_argument("--seed", type=seed_value, default=0, help="subsampling, shuffling, weights (default 0)")
    sweep.add_argument("--threads", type=thread_count, default=None, help="torch threads (default: torch's)")
    sweep.add_argument("--out", type=Path, required=True, help="JSON file, e.g. results/classify_imbalance.json")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_classify_imbalance(args: argparse.Namespace, argv: Sequence[str] | None, command: str) -> int:
    """``mini-llm classify imbalance``: the sweep of mini_llm.classify.imbalance_sweep, written to --out."""
    from mini_llm.classify.imbalance_sweep import imbalance_sweep, write_imbalance

    start = time.perf_counter()
    try:
        result = imbalance_sweep(args.preset, args.ratios, seed=args.seed, progress=not args.no_progress, log=print)
    except ValueError as error:
        return _error(command, str(error))
    result = {"command": " ".join([PROG, *(sys.argv[1:] if argv is None else argv)]), **result}
    write_imbalance(result, args.out)
    print(f"wrote {args.out} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


def run_classify(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``mini-llm classify train`` / ``mini-llm classify eval``."""
    import torch

    from mini_llm.classify import default_run_dir, evaluate_run, predict_texts, train_run, write_eval
    from mini_llm.classify.runs import RUN_FILE, read_run

    command = f"classify {args.classify_command}"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.classify_command == "imbalance":
        return _run_classify_imbalance(args, argv, command)
    run_dir = args.checkpoint or default_run_dir(args.model, args.preset, args.seed, args.cache_dir)
    if args.classify_command == "train":
        try:
            train_run(args.model, args.preset, run_dir, seed=args.seed, progress=not args.no_progress,
                      overwrite=args.overwrite, log=print)
        except (OSError, ValueError) as error:
            return _error(command, str(error))
        except KeyboardInterrupt:
            print("\ninterrupted; nothing was saved as a finished run: run the same command again", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(f"wrote {run_dir}")
        print(f"next: {PROG} classify eval --model {args.model} --checkpoint {run_dir}")
        return 0
    if not (run_dir / RUN_FILE).is_file():
        flag = "--checkpoint" if args.checkpoint else "--model/--preset/--seed"
        return _error(command, f"argument {flag}: no trained classifier in {run_dir}; train one first with: "
                               f"{PROG} classify train --model {args.model} --preset {args.preset} --seed {args.seed}"
                               + (f" --checkpoint {run_dir}" if args.checkpoint else ""))
    try:
        trained = read_run(run_dir)["model"]
        if trained != args.model:
            return _error(command, f"argument --model: {run_dir} holds a {trained} run, not {args.model}")
        if args.text:
            probabilities = predict_texts(run_dir, args.text)
            for text, row in zip(args.text, probabilities, strict=True):
                label = "positive" if row.argmax() == 1 else "negative"
                print(f"{label}\tP(positive) = {row[1]:.4f}\t{text}")
            return 0
        line = " ".join([PROG, *(argv if argv is not None else sys.argv[1:])])
        result = evaluate_run(run_dir, args.split, command=line)
        out = write_eval(result, args.out or run_dir / f"eval_{args.split}.json")
    except (OSError, ValueError) as error:
        return _error(command, str(error))
    metrics = result["metrics"]
    accuracy, f1 = metrics["accuracy"], metrics["macro_f1"]
    print(f"{args.model} on the {args.split} split ({metrics['n']} reviews): "
          f"accuracy {accuracy['value']:.2%} [{accuracy['low']:.2%}, {accuracy['high']:.2%}], "
          f"macro F1 {f1['value']:.4f} [{f1['low']:.4f}, {f1['high']:.4f}] (95% intervals)")
    print(f"confusion matrix (rows: true negative, positive; columns: predicted): {metrics['confusion_matrix']}")
    print(f"wrote {out}")
    return 0


def _error(command: str, message: str) -> int:
    """Print a user error the way argparse does and return its exit status."""
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _interrupted(preset: str, out: Path) -> int:
    """Say how to continue a training run stopped by Ctrl-C; return the interrupted status."""
    from mini_llm.charlm import CHECKPOINT_FILE

    if (out / CHECKPOINT_FILE).is_file():
        advice = f"continue from the last saved checkpoint with: {PROG} train --preset {preset} --out {out} --resume"
    else:
        advice = "no checkpoint was saved yet, so there is nothing to resume"
    print(f"\ninterrupted; {advice}", file=sys.stderr)
    return EXIT_INTERRUPTED


def run_train(args: argparse.Namespace) -> int:
    """``mini-llm train``: train, then print the final losses and where the files went."""
    from mini_llm.charlm import (
        CHECKPOINT_FILE,
        CONFIG_FILE,
        HISTORY_FILE,
        TOKENIZER_FILE,
        read_run_config,
        train_char_gpt,
    )

    out = args.out if args.out is not None else Path("runs") / args.preset
    replacing = args.overwrite and not args.resume and (out / CHECKPOINT_FILE).is_file()
    try:
        train_char_gpt(
            args.preset, out, max_steps=args.max_steps, seed=args.seed, progress=not args.no_progress,
            device=args.device, resume=args.resume, overwrite=args.overwrite, log=print,
        )
    except (OSError, ValueError) as error:
        return _error("train", str(error))
    except KeyboardInterrupt:
        if replacing:
            print(f"\ninterrupted; {out} still holds the earlier run, unchanged (the new one was not finished): "
                  "run the same command again", file=sys.stderr)
            return EXIT_INTERRUPTED
        return _interrupted(args.preset, out)
    summary = read_run_config(out)["training"]
    print(f"trained {summary['steps']} steps in {summary['seconds_this_session']:.1f} s on {summary['device']}")
    print(f"final loss (nats per character, {summary['loss_batches']} batches each): "
          f"train {summary['train_loss']:.4f} (perplexity {summary['train_perplexity']:.1f}), "
          f"validation {summary['val_loss']:.4f} (perplexity {summary['val_perplexity']:.1f})")
    files = ", ".join(str(out / name) for name in (CHECKPOINT_FILE, TOKENIZER_FILE, CONFIG_FILE, HISTORY_FILE))
    print(f"wrote {files}")
    print(f"try: {PROG} generate --checkpoint {out} --prompt 中国")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    """``mini-llm generate``: load a run directory and print the prompt with its continuation."""
    from mini_llm.charlm import generate_text, load_char_gpt, unknown_characters

    try:
        model, tokenizer = load_char_gpt(args.checkpoint, device=args.device)
    except (OSError, ValueError) as error:
        return _error("generate", str(error))
    unknown = unknown_characters(tokenizer, args.prompt)
    if unknown:
        listed = " ".join(repr(char) for char in unknown)
        return _error("generate", f"argument --prompt: characters outside the vocabulary of {args.checkpoint}: "
                                  f"{listed}; use characters that occur in the training text")
    try:
        text = generate_text(
            model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, greedy=args.greedy, use_cache=not args.no_cache, seed=args.seed,
        )
    except ValueError as error:  # e.g. a temperature so small that logits / temperature overflows
        return _error("generate", str(error))
    print(text)
    return 0


def _zoo_jobs(args: argparse.Namespace) -> list:
    """The zoo jobs the selection flags ask for (ValueError for an unknown set or size)."""
    from mini_llm.scaling.zoo import plan

    return plan(args.preset_set, args.sizes, args.seeds)


def run_zoo(args: argparse.Namespace) -> int:
    """``mini-llm zoo list`` / ``mini-llm zoo train``."""
    from mini_llm.scaling.zoo import plan_table, train_zoo, zoo_dir

    command = f"zoo {args.zoo_command}"
    try:
        jobs = _zoo_jobs(args)
        where = zoo_dir(args.cache_dir, args.preset_set)
    except ValueError as error:
        return _error(command, str(error))
    print(f"zoo {args.preset_set!r} in {where}")
    print(plan_table(jobs, args.cache_dir))
    if args.zoo_command == "list":
        return 0
    start = time.perf_counter()
    try:
        train_zoo(jobs, args.cache_dir, progress=not args.no_progress, log=print, threads=args.threads)
    except (OSError, ValueError) as error:
        return _error(command, str(error))
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"zoo trained in {(time.perf_counter() - start) / 60:.1f} min; "
          f"next: {PROG} sweep --preset-set {args.preset_set} --out results/<name>.csv")
    return 0


def run_sweep_command(args: argparse.Namespace) -> int:
    """``mini-llm sweep``: quantize the kept checkpoints and append the rows to --out."""
    from mini_llm.scaling.sweep import EVAL_WINDOWS, OUTLIER_FRACTION, SweepGrid, run_sweep
    from mini_llm.scaling.zoo import zoo_checkpoints, zoo_dir

    axes = {"bits": args.bits, "codebooks": args.codebooks, "blocksizes": args.blocksizes,
            "outliers": args.outliers, "embeddings": args.embedding}
    try:
        grid = SweepGrid(**{name: value for name, value in axes.items() if value is not None})
        jobs = _zoo_jobs(args)
        checkpoints = zoo_checkpoints(jobs, args.cache_dir, args.fractions)
        where = zoo_dir(args.cache_dir, args.preset_set)
    except ValueError as error:
        return _error("sweep", str(error))
    if not checkpoints:
        return _error("sweep", f"no kept checkpoints of the chosen models in {where}; train them first with: "
                               f"{PROG} zoo train --preset-set {args.preset_set}"
                               + (f" --cache-dir {args.cache_dir}" if args.cache_dir else ""))
    start = time.perf_counter()
    try:
        written = run_sweep(
            args.out, checkpoints, grid, eval_windows=args.eval_windows or EVAL_WINDOWS,
            outlier_fraction=args.outlier_fraction or OUTLIER_FRACTION, threads=args.threads,
            progress=not args.no_progress, log=print,
        )
    except (OSError, ValueError) as error:
        return _error("sweep", str(error))
    except KeyboardInterrupt:
        print(f"\ninterrupted; the rows so far are in {args.out}; run the same command again to continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {written} rows to {args.out} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def run_decoding(args: argparse.Namespace) -> int:
    """``mini-llm decoding``: every strategy's continuations of the same held-out prompts, written as JSON."""
    import torch

    from mini_llm.charlm import load_char_gpt
    from mini_llm.decoding import evaluate_decoding, perplexity, write_result

    torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load_char_gpt(args.checkpoint)
        result = evaluate_decoding(model, tokenizer, n_prompts=args.prompts, prompt_chars=args.prompt_chars,
                                   new_chars=args.new_chars, seed=args.seed)
        write_result(result, args.out)
    except (OSError, ValueError) as error:
        return _error("decoding", str(error))
    for run in result["runs"]:
        print(f"{run['strategy']['name']:<16} prompt {run['prompt_chars']:>3} characters: perplexity of the "
              f"continuations under the model {perplexity(run['log_probs'], args.new_chars):8.1f}")
    print(f"wrote {args.out} in {result['seconds'] / 60:.1f} min")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); return the exit status.

    Ctrl-C at any moment (also while torch is being imported) gives status 130 without a traceback; a failure that
    is no bug of mini_llm (a full disk, a file size limit, too little memory) prints one line and gives status 1.
    """
    command = "COMMAND"
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help, --version, or a bad argument (argparse has printed the message)
            return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
        command = args.command
        return _dispatch(args, argv)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not _expected_failure(error):
            raise
        print(f"{PROG} {command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE


def _dispatch(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Run the parsed command."""
    if args.command == "train":
        return run_train(args)
    if args.command == "zoo":
        return run_zoo(args)
    if args.command == "sweep":
        return run_sweep_command(args)
    if args.command == "classify":
        return run_classify(args, argv)
    if args.command == "decoding":
        return run_decoding(args)
    return run_generate(args)


def _expected_failure(error: BaseException) -> bool:
    """Whether an exception is a failure a user can meet without a bug: a bad file or value, a full or limited
    disk (also through safetensors), too little memory."""
    if isinstance(error, (OSError, ValueError, MemoryError)):
        return True
    name = type(error).__name__
    return name in ("SafetensorError", "OutOfMemoryError") or "can't allocate memory" in str(error)


def _one_line(error: BaseException) -> str:
    """The message of an exception on one line (at most 500 characters)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."


if __name__ == "__main__":
    sys.exit(main())
