"""Run the mini-llm command line in-process with its output captured."""

import contextlib
import io

from mini_llm.cli import main


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) with its stdout and stderr captured (usable in module-scoped fixtures, unlike capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()
