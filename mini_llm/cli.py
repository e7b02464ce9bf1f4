"""The ``mini-llm`` command: ``mini-llm train`` and ``mini-llm generate`` for the char-level GPT on People's Daily.

User errors (bad flags, a missing or corrupt run directory, a prompt the model cannot read) print one
``mini-llm <command>: error: ...`` line on stderr and give exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PROG = "mini-llm"
EXIT_USAGE = 2  # argparse's status for bad arguments; used for every user error
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


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
    return parser


def _add_train(commands: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand's flags."""
    train = commands.add_parser(
        "train", help="train a char-level GPT", description="Train a char-level GPT on People's Daily (Jan 1998)."
    )
    train.add_argument("--preset", type=preset_name, default="tiny", help=f"model size and recipe ({_preset_help()})")
    train.add_argument("--out", type=Path, default=None, help="run directory to write (default: runs/<preset>)")
    train.add_argument("--max-steps", type=positive_int, default=None, help="steps to train (default: the preset's)")
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
    gen.add_argument("--max-new-tokens", type=positive_int, default=100, help="characters to add (default 100)")
    gen.add_argument("--temperature", type=positive_float, default=0.8, help="> 0; lower is safer (default 0.8)")
    gen.add_argument("--top-k", type=positive_int, default=None, help="sample from the k likeliest (default: all)")
    gen.add_argument("--top-p", type=probability, default=None, help="nucleus sampling mass in (0, 1] (default 1)")
    gen.add_argument("--greedy", action="store_true", help="always take the likeliest character")
    gen.add_argument("--seed", type=seed_value, default=None, help="seed for sampling (default: random)")
    gen.add_argument("--no-cache", action="store_true", help="recompute every step instead of using the KV cache")
    gen.add_argument("--device", default="cpu", help="torch device (default cpu)")


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
    try:
        train_char_gpt(
            args.preset, out, max_steps=args.max_steps, seed=args.seed, progress=not args.no_progress,
            device=args.device, resume=args.resume, overwrite=args.overwrite, log=print,
        )
    except (OSError, ValueError) as error:
        return _error("train", str(error))
    except KeyboardInterrupt:
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
    text = generate_text(
        model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, greedy=args.greedy, use_cache=not args.no_cache, seed=args.seed,
    )
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a bad argument (argparse has printed the message)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "train":
        return run_train(args)
    try:
        return run_generate(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
