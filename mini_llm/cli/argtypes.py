"""The argument types of the ``mini-llm`` flags, all in one style.

Each type is a function ``str -> value`` that raises ``argparse.ArgumentTypeError`` saying what is allowed and what
was given; argparse prints it after ``<prog>: error: argument --flag:`` and exits with status 2. A parser that lives in
the package (``ValueError`` by the package's convention) becomes a type through ``package_type``. Nothing heavy is
imported here: a type that needs a table of the package (presets, codebooks) imports it when a value is checked,
never when the parser is built, so ``mini-llm --help`` starts without torch.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

from mini_llm.helpers import SEED_LIMIT

MAX_STEPS = 1_000_000  # --max-steps: weeks of training for the presets on a CPU; more is a typo
MAX_NEW_TOKENS = 100_000  # --max-new-tokens / --new-chars: minutes of decoding; more is a typo
MAX_THREADS = 1024  # --threads

ArgumentType = Callable[[str], Any]


def _number(text: str, kind: Callable[[str], float], allowed: str, ok: Callable[[float], bool]) -> float:
    """``text`` read by ``kind`` (int or float) if it is finite and ``ok`` holds, else ArgumentTypeError."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return int(_number(text, int, "an integer >= 1", lambda v: v >= 1))


def bounded_int(maximum: int) -> Callable[[str], int]:
    """The type of an integer in 1..maximum."""

    def check(text: str) -> int:
        return int(_number(text, int, f"an integer >= 1 and at most {maximum:_}", lambda v: 1 <= v <= maximum))

    return check


steps = bounded_int(MAX_STEPS)
new_tokens = bounded_int(MAX_NEW_TOKENS)
thread_count = bounded_int(MAX_THREADS)


def seed_value(text: str) -> int:
    """An integer in [0, 2**63 - 1], the range torch generators accept."""
    return int(_number(text, int, "an integer in [0, 2**63 - 1]", lambda v: 0 <= v < SEED_LIMIT))


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, "a number > 0", lambda v: v > 0)


def probability(text: str) -> float:
    """A number in (0, 1]."""
    return _number(text, float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def ratio(text: str) -> float:
    """A majority:minority ratio: a finite number >= 1."""
    return _number(text, float, "a number >= 1", lambda v: v >= 1)


def non_empty(hint: str, *, strip: bool = False) -> Callable[[str], str]:
    """The type of a text with at least one character (with ``strip``: one that is not a space)."""

    def check(text: str) -> str:
        if not (text.strip() if strip else text):
            raise argparse.ArgumentTypeError(f"must not be empty: {hint}")
        return text

    return check


def one_of(names: Callable[[], Sequence[str]], what: str = "") -> Callable[[str], str]:
    """The type of a name among ``names()``, called when a value is checked (the table may live beside torch).

    Without ``what`` the message is argparse's own for ``choices``; with it, ``<what> must be among ...``.
    """

    def check(text: str) -> str:
        allowed = tuple(names())
        if text in allowed:
            return text
        if what:
            raise argparse.ArgumentTypeError(f"{what} must be among {', '.join(allowed)}, got {text!r}")
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(map(repr, allowed))})")

    return check


def package_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A parser of the package (ValueError for a bad value) as an argument type."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    check.__name__ = getattr(parse, "__name__", "value")
    return check


def comma_list(item: ArgumentType) -> Callable[[str], tuple]:
    """The type of a comma-separated list of values of type ``item``."""

    def check(text: str) -> tuple:
        items = [part.strip() for part in text.split(",")]
        if not text.strip() or not all(items):
            raise argparse.ArgumentTypeError(f"must be a comma-separated list without empty items, got {text!r}")
        return tuple(item(part) for part in items)

    return check


# --- names and values defined by the package, imported when a value is checked --------------------------------


def _char_preset(text: str) -> str:
    from mini_llm.tasks.charlm import get_preset

    get_preset(text)
    return text


def _classify_preset(text: str) -> str:
    from mini_llm.tasks.classify import get_preset

    get_preset(text)
    return text


def classify_models() -> Sequence[str]:
    from mini_llm.tasks.classify import MODELS

    return MODELS


def _codebooks() -> Sequence[str]:
    from mini_llm.quant import CODEBOOKS

    return tuple(CODEBOOKS)


def _embeddings() -> Sequence[str]:
    from mini_llm.scaling.sweep import EMBEDDINGS

    return tuple(EMBEDDINGS)


def _blocksize(text: str) -> int | None:
    from mini_llm.scaling.sweep import parse_blocksize

    return parse_blocksize(text)


def _fraction(text: str) -> object:
    from mini_llm.scaling.zoo import parse_fraction

    return parse_fraction(text)


def _weight_format(text: str) -> str:
    from mini_llm.quant.formats import parse_format

    return parse_format(text).spec


def formats_subjects() -> Sequence[str]:
    from mini_llm.scaling.formats import SUBJECTS

    return SUBJECTS


char_preset = package_type(_char_preset)  # a preset of mini_llm.tasks.charlm.PRESETS
classify_preset = package_type(_classify_preset)  # a preset of mini_llm.tasks.classify.PRESETS
classify_model = one_of(classify_models)  # a model of mini_llm.tasks.classify.MODELS
codebook = one_of(_codebooks, "codebooks")  # a codebook of mini_llm.quant
embedding = one_of(_embeddings, "embedding")  # how the sweep stores the tied embedding
blocksize = package_type(_blocksize)  # 'tensor' or a power of two in 32..4096
fraction = package_type(_fraction)  # a share of the zoo's token budget at which weights were kept
weight_format = package_type(_weight_format)  # a format spec of mini_llm.quant.formats (rtn-nf4-64, mxfp4, q4_k...)
formats_subject = one_of(formats_subjects, "models")  # a subject of mini-llm formats


def sweep_bits(text: str) -> int:
    """k in 2..8, or 16 for the baseline."""
    if text not in {str(k) for k in range(2, 9)} | {"16"}:
        raise argparse.ArgumentTypeError(f"bits must be integers in 2..8 or 16 (the 16-bit baseline), got {text!r}")
    return int(text)


def yes_no(text: str) -> bool:
    """'yes' or 'no' (of the sweep's --outliers)."""
    if text not in ("no", "yes"):
        raise argparse.ArgumentTypeError(f"outliers must be no, yes or no,yes, got {text!r}")
    return text == "yes"


def char_preset_help() -> str:
    """One line per char-GPT preset, for --help."""
    from mini_llm.tasks.charlm import PRESETS

    return "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())


def classify_preset_help() -> str:
    """One line per classifier preset, for --help."""
    from mini_llm.tasks.classify import PRESETS

    return "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())
