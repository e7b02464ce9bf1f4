"""``mini-llm train``, ``generate`` and ``decoding``: the character-level GPT on People's Daily (chapters 1 and 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mini_llm.cli import argtypes
from mini_llm.cli.guard import Invocation, UsageError
from mini_llm.cli.parser import PROG, DeprecatedSpelling, add_command, late_help
from mini_llm.helpers import threads


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``train``, ``generate`` and ``decoding``."""
    train = add_command(commands, "train", "train a char-level GPT", run_train,
                        description="Train a char-level GPT on People's Daily (Jan 1998).")
    late_help(train.add_argument("--preset", type=argtypes.char_preset, default="tiny",
                                 help="model size and recipe (default tiny)"),
              lambda: f"model size and recipe ({argtypes.char_preset_help()})")
    train.add_argument("--run-dir", type=Path, metavar="DIR", default=None,
                       help="run directory to write (default: runs/<preset>)")
    train.add_argument("--out", dest="run_dir", type=Path, action=DeprecatedSpelling, new="--run-dir",
                       meaning="the run directory")
    train.add_argument("--max-steps", type=argtypes.steps, default=None,
                       help=f"steps to train, at most {argtypes.MAX_STEPS:_} (default: the preset's)")
    train.add_argument("--seed", type=argtypes.seed_value, default=None, help="initial weights and batches (default 0)")
    train.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    train.add_argument("--grad-accum-steps", type=argtypes.positive_int, default=None,
                       help="micro-batches per step and process; the batch per step stays the preset's (default 1). "
                            "Under torchrun (torchrun --nproc_per_node N -m mini_llm train ...) each of the N "
                            "processes trains its share of every batch")
    train.add_argument("--fsdp", action="store_true",
                       help="under torchrun, shard the parameters, gradients and optimizer state over the processes "
                            "(FSDP) instead of keeping a full copy in each (DDP); the same numbers either way")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume", action="store_true",
        help="continue the checkpoint in --run-dir (a larger --max-steps trains on at the final learning rate)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a model already in --run-dir")

    gen = add_command(commands, "generate", "continue a prompt with a trained model", run_generate)
    gen.add_argument("--checkpoint", type=Path, metavar="DIR", required=True,
                     help="run directory written by `mini-llm train`")
    gen.add_argument("--prompt", type=argtypes.non_empty("give the text the model should continue"), required=True,
                     help="text to continue (characters of the corpus)")
    gen.add_argument("--max-new-tokens", type=argtypes.new_tokens, default=100,
                     help=f"characters to add, at most {argtypes.MAX_NEW_TOKENS:_} (default 100)")
    gen.add_argument("--temperature", type=argtypes.positive_float, default=0.8,
                     help="> 0; lower is safer (default 0.8)")
    gen.add_argument("--top-k", type=argtypes.positive_int, default=None,
                     help="sample from the k likeliest (default: all)")
    gen.add_argument("--top-p", type=argtypes.probability, default=None,
                     help="nucleus sampling mass in (0, 1] (default 1)")
    gen.add_argument("--greedy", action="store_true", help="always take the likeliest character")
    gen.add_argument("--seed", type=argtypes.seed_value, default=None, help="seed for sampling (default: random)")
    gen.add_argument("--no-cache", action="store_true", help="recompute every step instead of using the KV cache")
    gen.add_argument("--device", default="cpu", help="torch device (default cpu)")

    decoding = add_command(
        commands, "decoding",
        "continue held-out People's Daily prompts with every decoding strategy and write the texts as JSON",
        run_decoding,
    )
    decoding.add_argument("--checkpoint", type=Path, metavar="DIR", required=True,
                          help="run directory of a char GPT (`mini-llm train`, or a zoo model such as "
                               "~/.cache/mini_llm/zoo/main/3x144-seed0)")
    decoding.add_argument("--out", type=Path, metavar="FILE", required=True, help="JSON file to write")
    decoding.add_argument("--prompts", type=argtypes.positive_int, default=100, help="held-out prompts (default 100)")
    decoding.add_argument("--prompt-chars", type=argtypes.positive_int, default=16,
                          help="characters per prompt (default 16)")
    decoding.add_argument("--new-chars", type=argtypes.new_tokens, default=100,
                          help=f"characters to add, at most {argtypes.MAX_NEW_TOKENS:_} (default 100)")
    decoding.add_argument("--seed", type=argtypes.seed_value, default=0, help="prompts and sampling (default 0)")
    decoding.add_argument("--threads", type=argtypes.thread_count, default=1,
                          help="torch threads (default 1; the sampled texts depend on it)")


def run_train(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm train``: train, then print the final losses and where the files went."""
    from mini_llm.helpers import check_device
    from mini_llm.tasks.charlm import (
        CHECKPOINT_FILE,
        CONFIG_FILE,
        HISTORY_FILE,
        TOKENIZER_FILE,
        read_run_config,
        train_char_gpt,
    )
    from mini_llm.train import distributed

    out = args.run_dir if args.run_dir is not None else Path("runs") / args.preset
    replacing = args.overwrite and not args.resume and (out / CHECKPOINT_FILE).is_file()

    def advice() -> str:
        if replacing:
            return (f"{out} still holds the earlier run, unchanged (the new one was not finished): "
                    "run the same command again")
        if (out / CHECKPOINT_FILE).is_file():
            return (f"continue from the last saved checkpoint with: "
                    f"{PROG} train --preset {args.preset} --run-dir {out} --resume")
        return "no checkpoint was saved yet, so there is nothing to resume"

    invocation.on_interrupt = advice
    world, device = distributed.init_from_env(check_device(args.device))  # one process unless run by torchrun
    try:
        train_char_gpt(
            args.preset, out, max_steps=args.max_steps, seed=args.seed, progress=not args.no_progress,
            device=device, resume=args.resume, overwrite=args.overwrite, log=print,
            grad_accum_steps=args.grad_accum_steps, parallel="fsdp" if args.fsdp else None,
        )
    finally:
        distributed.shutdown()
    if not world.is_main:
        return 0
    summary = read_run_config(out)["training"]
    processes = f" x {world.size} processes" if world.size > 1 else ""
    print(f"trained {summary['steps']} steps in {summary['seconds_this_session']:.1f} s on {summary['device']}"
          f"{processes}")
    print(f"final loss (nats per character, {summary['loss_batches']} batches each): "
          f"train {summary['train_loss']:.4f} (perplexity {summary['train_perplexity']:.1f}), "
          f"validation {summary['val_loss']:.4f} (perplexity {summary['val_perplexity']:.1f})")
    files = ", ".join(str(out / name) for name in (CHECKPOINT_FILE, TOKENIZER_FILE, CONFIG_FILE, HISTORY_FILE))
    print(f"wrote {files}")
    print(f"try: {PROG} generate --checkpoint {out} --prompt 中国")
    return 0


def run_generate(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm generate``: load a run directory and print the prompt with its continuation."""
    from mini_llm.tasks.charlm import generate_text, load_char_gpt, unknown_characters

    model, tokenizer = load_char_gpt(args.checkpoint, device=args.device)
    unknown = unknown_characters(tokenizer, args.prompt)
    if unknown:
        listed = " ".join(repr(char) for char in unknown)
        raise UsageError(f"argument --prompt: characters outside the vocabulary of {args.checkpoint}: {listed}; "
                         "use characters that occur in the training text")
    text = generate_text(  # ValueError e.g. for a temperature so small that logits / temperature overflows
        model, tokenizer, args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, greedy=args.greedy, use_cache=not args.no_cache, seed=args.seed,
    )
    print(text)
    return 0


def run_decoding(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm decoding``: every strategy's continuations of the same held-out prompts, written as JSON."""
    from mini_llm.tasks.charlm import load_char_gpt
    from mini_llm.tasks.decoding import evaluate_decoding, perplexity, write_result

    with threads(args.threads, libraries=("torch",)):
        model, tokenizer = load_char_gpt(args.checkpoint)
        result = evaluate_decoding(model, tokenizer, n_prompts=args.prompts, prompt_chars=args.prompt_chars,
                                   new_chars=args.new_chars, seed=args.seed)
    write_result(result, args.out)
    for run in result["runs"]:
        print(f"{run['strategy']['name']:<16} prompt {run['prompt_chars']:>3} characters: perplexity of the "
              f"continuations under the model {perplexity(run['log_probs'], args.new_chars):8.1f}")
    print(f"wrote {args.out} in {result['seconds'] / 60:.1f} min")
    return 0
