"""The one guard around a ``mini-llm`` command: an error or Ctrl-C becomes one line on stderr and an exit status.

==========  ==================================================================================================
status      when
==========  ==================================================================================================
0           the command did its work (also ``--help`` and ``--version``)
2           a usage error: argparse rejected a flag, or a value the command line gave, directly or through a file
            it names, cannot be used (``UsageError``, ``ValueError``, a path that does not exist, is a file
            where a directory is needed or the other way round, or already exists)
1           a failure while running that is no bug of mini_llm: a full disk, a file size limit, a permission,
            too little memory (``OSError`` otherwise, ``MemoryError``, safetensors' and torch's memory errors)
130         Ctrl-C, at any moment (also while torch is being imported); the command may add advice such as how
            to resume
==========  ==================================================================================================

Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from mini_llm.cli.parser import PROG

EXIT_FAILURE = 1  # a failure while running (disk full, out of memory), not a usage error
EXIT_USAGE = 2  # argparse's status for bad arguments
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
MAX_MESSAGE = 500  # characters of an error message on its one line


class UsageError(Exception):
    """A command line that cannot work as given; the message names the flag and says what to do instead."""


@dataclass
class Invocation:
    """One run of the command line: what was typed, which command it is, what to advise if Ctrl-C stops it."""

    argv: list[str]  # the words after ``mini-llm``
    prog: str = f"{PROG} COMMAND"  # e.g. ``mini-llm classify eval``: the start of every error line
    on_interrupt: Callable[[], str] | None = None  # advice after "interrupted; " (set by a handler)

    @property
    def line(self) -> str:
        """The command line as typed, recorded in the results a command writes."""
        return " ".join([PROG, *self.argv])


_USAGE_ERRORS = (UsageError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)


def exit_status(error: BaseException) -> int | None:
    """The exit status for an exception a user can meet without a bug, or None for a bug."""
    if isinstance(error, _USAGE_ERRORS):
        return EXIT_USAGE
    if isinstance(error, (OSError, MemoryError)):
        return EXIT_FAILURE
    name = type(error).__name__  # classes of safetensors and torch, matched by name so that no import is needed
    if name in ("SafetensorError", "OutOfMemoryError") or "can't allocate memory" in str(error):
        return EXIT_FAILURE
    return None


def one_line(error: BaseException) -> str:
    """The message of an exception on one line (at most MAX_MESSAGE characters)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def guard(invocation: Invocation, run: Callable[[], int]) -> int:
    """``run()``'s exit status, with errors and Ctrl-C turned into one line on stderr and the status above."""
    try:
        return run()
    except KeyboardInterrupt:
        advice = invocation.on_interrupt() if invocation.on_interrupt is not None else ""
        print("\ninterrupted" + (f"; {advice}" if advice else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        status = exit_status(error)
        if status is None:
            raise
        print(f"{invocation.prog}: error: {one_line(error)}", file=sys.stderr)
        return status
