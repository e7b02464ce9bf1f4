"""Shared helpers of every floor: argument checks, thread counts, eval mode, the cache root.

- ``check_int``, ``check_number``, ``check_seed``, ``check_choice``: each returns the value it accepts and raises
  an error that names the argument and the allowed values: ``"{name} must be {allowed}, got {value!r}"``.
  ``is_int`` / ``is_number`` are the tests behind them (a bool is neither, numpy scalars are both).
- ``threads(n)``: run a block with n torch threads and n Numba threads (at most NUMBA_NUM_THREADS), restoring both.
- ``check_device(device)``: the torch.device a model can run on, or a ValueError naming the device.
- ``eval_mode(model)``: run a block with the model in eval mode, restoring every submodule's training flag.
- ``cache_root()``: where runs and models are cached, ``$MINI_LLM_CACHE``, else ``$XDG_CACHE_HOME/mini_llm``,
  else ``~/.cache/mini_llm``.

This module is the bottom floor of mini_llm: every other module may import it, and it imports only the standard
library (torch and Numba inside the functions that need them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

CACHE_ENV = "MINI_LLM_CACHE"  # the cache root, when set
SEED_LIMIT = 2**63  # seeds lie in [0, 2**63 - 1], the range torch generators accept
LIBRARIES = ("torch", "numba")  # the thread pools ``threads`` sets
ModuleT = TypeVar("ModuleT", bound="nn.Module")


def is_int(value: object) -> bool:
    """True for an integer (int, numpy integer), False for a bool, a float or anything else."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for a real number (int, float, numpy scalar; NaN and inf included), False for a bool or anything else."""
    return isinstance(value, Real) and not isinstance(value, bool)


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> str:
    """The interval written out: interval(0, 1, high_open=True) == "[0, 1)"."""
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_int(
    name: str,
    value: Any,
    low: int | None = None,
    high: int | None = None,
    *,
    allowed: str | None = None,
    kinds: type | tuple[type, ...] = Integral,
    type_error: type[Exception] = ValueError,
) -> int:
    """value as an int in [low, high] (None: no bound); else ``{name} must be {allowed}, got {value!r}``.

    allowed defaults to "an integer >= low", "an integer <= high" or "an integer in [low, high]". A value that is not
    an integer (a bool, a float, a string; with ``kinds``, not of those types) raises ``type_error``, one out of
    range ValueError.
    """
    if allowed is None:
        allowed = (
            "an integer" if low is None and high is None
            else f"an integer >= {low}" if high is None
            else f"an integer <= {high}" if low is None
            else f"an integer in {interval(low, high)}"
        )
    if not isinstance(value, kinds) or not is_int(value):
        raise type_error(f"{name} must be {allowed}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allowed: str | None = None,
    type_error: type[Exception] = ValueError,
) -> float:
    """value as a float in the interval from low to high; else ``{name} must be {allowed}, got {value!r}``.

    NaN lies in no interval; inf only in one closed at inf. allowed defaults to "a finite number in [low, high)"
    ("a number in ..." when an end is a closed infinity). A value that is not a number raises ``type_error``.
    """
    if allowed is None:
        infinite = (high == math.inf and not high_open) or (low == -math.inf and not low_open)
        span = interval(low, high, low_open=low_open, high_open=high_open)
        allowed = f"{'a number' if infinite else 'a finite number'} in {span}"
    if not is_number(value):
        raise type_error(f"{name} must be {allowed}, got {value!r}")
    number = float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (above and below):  # also False for NaN
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


def check_seed(seed: Any, name: str = "seed") -> int:
    """seed as an int in [0, 2**63 - 1] (what torch and numpy generators accept); ValueError otherwise."""
    return check_int(name, seed, 0, SEED_LIMIT - 1, allowed="an integer in [0, 2**63 - 1]")


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """value if it is one of choices; else ValueError ``{name} must be one of a, b, c, got {value!r}``."""
    try:
        if value in choices:
            return value
    except TypeError:  # an unhashable value asked of a set
        pass
    shown = sorted(map(str, choices)) if isinstance(choices, (set, frozenset)) else map(str, choices)  # stable order
    raise ValueError(f"{name} must be one of {', '.join(shown)}, got {value!r}")


class ThreadCounts(NamedTuple):
    """The thread counts in force inside ``threads``: None for a library it was told to leave alone."""

    torch: int | None
    numba: int | None


@contextmanager
def threads(n: int | None, libraries: Collection[str] = LIBRARIES) -> Iterator[ThreadCounts]:
    """Run the body with n torch threads and min(n, NUMBA_NUM_THREADS) Numba threads; restore both on exit.

    ``n=None`` keeps the current counts; ``libraries`` names the pools to set ("torch", "numba"), the others are
    left alone. The earlier counts come back however the body ends (an exception, Ctrl-C). Yields the counts in
    force.
    """
    if n is not None:
        check_int("threads", n, 1, allowed="None or an integer >= 1")
    unknown = sorted(set(libraries) - set(LIBRARIES))
    if unknown:
        raise ValueError(f"libraries must be among {', '.join(LIBRARIES)}, got {unknown}")
    restore = []
    counts: dict[str, int | None] = dict.fromkeys(LIBRARIES)
    try:
        if "torch" in libraries:
            import torch

            restore.append((torch.set_num_threads, torch.get_num_threads()))
            if n is not None:
                torch.set_num_threads(n)
            counts["torch"] = torch.get_num_threads()
        if "numba" in libraries:
            import numba

            restore.append((numba.set_num_threads, numba.get_num_threads()))
            if n is not None:
                numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            counts["numba"] = numba.get_num_threads()
        yield ThreadCounts(**counts)
    finally:
        for set_count, previous in reversed(restore):
            set_count(previous)


@contextmanager
def eval_mode(model: ModuleT) -> Iterator[ModuleT]:
    """Run the body with ``model.eval()``; on exit every submodule gets back the training flag it had before."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """cache_dir if given, else $MINI_LLM_CACHE, else $XDG_CACHE_HOME/mini_llm, else ~/.cache/mini_llm."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mini_llm"


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device if a tensor can be put there; ValueError naming it otherwise."""
    import torch

    try:
        resolved = torch.device(device)
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"device {str(device)!r} is not usable here ({error}); try 'cpu'") from error
    if resolved.type == "meta":
        raise ValueError(f"device {str(device)!r} holds shapes but no data, so a model cannot run there; try 'cpu'")
    return resolved
