"""The ``mini-llm`` parser and ``main``: parse, then run the chosen command's handler inside the one guard."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mini_llm import __version__
from mini_llm.cli import char_gpt, chat, classify, faq, future, scaling
from mini_llm.cli.guard import EXIT_USAGE, Invocation, guard
from mini_llm.cli.parser import PROG, Parser


def build_parser() -> Parser:
    """The parser of every command; it imports nothing heavy (no torch, transformers or numba)."""
    parser = Parser(prog=PROG, description="The companion commands of the book: a char-level GPT on People's Daily "
                                           "(January 1998), the k-bit scaling zoo and sweep, review classifiers, "
                                           "decoding strategies, a chat with SmolLM2-135M, the experiments of "
                                           "chapters 8 and 9.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    char_gpt.add_commands(commands)
    scaling.add_commands(commands)
    classify.add_commands(commands)
    chat.add_commands(commands)
    future.add_commands(commands)
    faq.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); return the exit status (see mini_llm.cli.guard)."""
    invocation = Invocation(list(sys.argv[1:] if argv is None else argv))
    return guard(invocation, lambda: _run(invocation))


def _run(invocation: Invocation) -> int:
    """Parse the command line and run its handler."""
    try:
        args = build_parser().parse_args(invocation.argv)
    except SystemExit as exit_:  # --help, --version, or a bad argument (argparse has printed the message)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    invocation.prog = args.prog
    return args.handler(args, invocation)
