"""The `mini-llm` parser without running a command: light to build, one handler per command, one checker style,
one guard that maps errors and Ctrl-C to exit statuses 2, 1 and 130."""

import argparse
import ast
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from mini_llm.cli import argtypes, build_parser
from mini_llm.cli.guard import Invocation, UsageError, exit_status, guard

PACKAGE = Path(__file__).resolve().parents[1] / "mini_llm"
HEAVY = ("torch", "transformers", "numba", "numpy")


def leaves(parser: argparse.ArgumentParser):
    """Every command parser that runs something (those without sub-commands)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for child in group.choices.values():
            yield from leaves(child)


def test_help_and_version_import_nothing_heavy():
    code = ("import sys; from mini_llm.cli import main\n"
            "for argv in (['--help'], ['--version'], ['zoo', '--help']):\n"
            "    assert main(argv) == 0\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_command_has_a_handler_and_its_own_prog():
    commands = {parser.prog: parser.get_default("handler") for parser in leaves(build_parser())}
    assert set(commands) == {f"mini-llm {name}" for name in (
        "train", "generate", "decoding", "zoo train", "zoo list", "sweep", "formats", "classify train", "classify eval",
        "classify imbalance", "chat", "ppl", "faq long-context", "faq local-attention", "faq compress",
        "faq early-exit", "future scaling", "future generalization", "future lora", "future memorization",
        "future bias")}
    assert all(callable(handler) for handler in commands.values())
    args = build_parser().parse_args(["zoo", "list"])
    assert args.prog == "mini-llm zoo list" and args.handler is commands["mini-llm zoo list"]


def test_the_old_out_spelling_stores_the_run_directory(capsys):
    args = build_parser().parse_args(["train", "--out", "somewhere", "--preset", "tiny"])
    assert args.run_dir == Path("somewhere")
    assert capsys.readouterr().err.count("\n") == 1  # one warning line
    assert build_parser().parse_args(["train", "--run-dir", "there", "--preset", "tiny"]).run_dir == Path("there")
    train = next(parser for parser in leaves(build_parser()) if parser.prog == "mini-llm train")
    assert [action.help for action in train._actions if "--out" in action.option_strings] == [argparse.SUPPRESS]


def test_no_module_outside_the_cli_imports_it():
    importers = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts[:1] or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if isinstance(node, ast.ImportFrom) and node.module == "mini_llm":
                names = [f"mini_llm.{alias.name}" for alias in node.names]
            if any(name == "mini_llm.cli" or name.startswith("mini_llm.cli.") for name in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert importers == []


@pytest.mark.parametrize(
    ("check", "text", "message"),
    [
        (argtypes.positive_int, "0", "must be an integer >= 1, got '0'"),
        (argtypes.steps, "9" * 400, "at most 1_000_000"),  # too large for a float: still a one-line usage error
        (argtypes.positive_float, "inf", "must be a number > 0, got 'inf'"),
        (argtypes.probability, "nan", "(0, 1]"),
        (argtypes.ratio, "0.5", "must be a number >= 1, got '0.5'"),
        (argtypes.comma_list(str), "a,,b", "without empty items"),
        (argtypes.comma_list(argtypes.seed_value), "0,-1", "[0, 2**63 - 1], got '-1'"),
        (argtypes.one_of(lambda: ("a", "b")), "c", "invalid choice: 'c' (choose from 'a', 'b')"),
        (argtypes.one_of(lambda: ("a", "b"), "letters"), "c", "letters must be among a, b, got 'c'"),
        (argtypes.sweep_bits, "9", "bits must be integers in 2..8 or 16"),
        (argtypes.non_empty("say something", strip=True), " ", "must not be empty: say something"),
    ],
)
def test_every_checker_raises_argument_type_error(check, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        check(text)
    assert message in str(error.value)


def test_a_package_parser_becomes_an_argument_type():
    def parse(text: str) -> int:
        raise ValueError(f"no {text!r}")

    with pytest.raises(argparse.ArgumentTypeError, match="no 'x'"):
        argtypes.package_type(parse)("x")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UsageError("argument --x: bad"), 2),
        (ValueError("bad value"), 2),
        (FileNotFoundError("no such run"), 2),
        (NotADirectoryError("a file"), 2),
        (OSError(errno.ENOSPC, "No space left on device"), 1),
        (PermissionError("not allowed"), 1),
        (MemoryError(), 1),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory"), 1),
        (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory"), 1),
        (RuntimeError("a bug"), None),
        (KeyError("a bug"), None),
    ],
)
def test_exit_status(error, status):
    assert exit_status(error) == status


def fail(error: BaseException):
    """A command that raises ``error``."""

    def run() -> int:
        raise error

    return run


def test_the_guard_prints_one_line_and_returns_the_status(capsys):
    invocation = Invocation(["sweep"], prog="mini-llm sweep")
    assert guard(invocation, fail(OSError(errno.ENOSPC, "No space\nleft"))) == 1
    assert capsys.readouterr().err == "mini-llm sweep: error: [Errno 28] No space left\n"
    assert guard(invocation, fail(ValueError("x" * 1000))) == 2
    assert len(capsys.readouterr().err.strip()) == len("mini-llm sweep: error: ") + 500
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        guard(invocation, fail(RuntimeError("a bug")))
    assert guard(invocation, lambda: 0) == 0


def test_ctrl_c_gives_130_with_the_advice_of_the_command(capsys):
    invocation = Invocation(["zoo", "train"])
    assert guard(invocation, fail(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"
    invocation.on_interrupt = lambda: "run it again"
    assert guard(invocation, fail(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "\ninterrupted; run it again\n"
    assert invocation.line == "mini-llm zoo train"


def test_formats_flags_check_names_before_any_model_loads(capsys):
    args = build_parser().parse_args(["formats", "--out", "f.csv", "--models", "zoo,smollm2", "--formats",
                                      "FP16,gptq-nf3-64,mxfp4,q4_k"])
    assert args.models == ("zoo", "smollm2") and args.formats == ("fp16", "gptq-nf3-64", "mxfp4", "q4_k")
    for flags, message in ((["--formats", "nf4"], "format must be one of"), (["--models", "bert"], "models must be")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["formats", "--out", "f.csv", *flags])
        assert message in capsys.readouterr().err
