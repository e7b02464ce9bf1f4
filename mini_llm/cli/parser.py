"""Building blocks of the ``mini-llm`` parser: a parser whose help may be filled in late, one call to add a
command with its handler, and the action of a deprecated flag spelling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

PROG = "mini-llm"

Handler = Callable[..., int]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose flags may compute their help text only when help is printed (see ``late_help``), so
    that building the parser imports nothing heavy: the preset tables live in modules that import torch."""

    def format_help(self) -> str:
        for action in self._actions:
            fill = getattr(action, "late_help", None)
            if fill is not None:
                action.help, action.late_help = fill(), None
        return super().format_help()


def late_help(action: argparse.Action, fill: Callable[[], str]) -> argparse.Action:
    """Let ``fill()`` replace the help of ``action`` when help is printed."""
    action.late_help = fill
    return action


def add_command(commands: argparse._SubParsersAction, name: str, help: str, handler: Handler | None = None,
                description: str | None = None) -> Parser:
    """Add the command ``name``; ``handler(args, invocation)`` runs it (None: a group whose actions have handlers)."""
    parser = commands.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".")
    if handler is not None:
        parser.set_defaults(handler=handler, prog=parser.prog)
    return parser


def add_actions(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The sub-commands of a command group such as ``zoo train`` / ``zoo list``."""
    return parser.add_subparsers(dest=parser.prog.split()[-1] + "_command", metavar="ACTION", required=True)


class DeprecatedSpelling(argparse.Action):
    """An old spelling of a flag: it still works, stores into the new flag's destination, and says on stderr (one
    line) which spelling to use instead. Hidden from --help."""

    def __init__(self, option_strings: list[str], dest: str, new: str, meaning: str, **kwargs: Any) -> None:
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new, self.meaning = new, meaning

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} for {self.meaning} is deprecated and will be removed in the "
              f"next release; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)
