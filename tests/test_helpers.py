"""mini_llm.helpers: argument checks, threads(n), eval_mode, cache_root."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numba
import numpy as np
import pytest
import torch
from torch import nn

from mini_llm import helpers
from mini_llm.helpers import cache_root, check_choice, check_int, check_number, check_seed, eval_mode, threads


@pytest.mark.parametrize("value", [0, 7, np.int64(3), -2])
def test_check_int_returns_a_python_int(value: object) -> None:
    result = check_int("n", value)
    assert result == value and type(result) is int


@pytest.mark.parametrize(
    ("kwargs", "value", "error", "message"),
    [
        (dict(low=1), 0, ValueError, "n must be an integer >= 1, got 0"),
        (dict(low=1), True, ValueError, "n must be an integer >= 1, got True"),
        (dict(low=1), 2.0, ValueError, "n must be an integer >= 1, got 2.0"),
        (dict(low=1), "2", ValueError, "n must be an integer >= 1, got '2'"),
        (dict(low=1, type_error=TypeError), "2", TypeError, "n must be an integer >= 1, got '2'"),
        (dict(low=1, type_error=TypeError), -1, ValueError, "n must be an integer >= 1, got -1"),
        (dict(low=0, high=8), 9, ValueError, r"n must be an integer in \[0, 8\], got 9"),
        (dict(high=8), 9, ValueError, "n must be an integer <= 8, got 9"),
        (dict(low=1, allowed="a positive integer"), 0, ValueError, "n must be a positive integer, got 0"),
        (dict(low=1, kinds=int), np.int64(4), ValueError, "n must be an integer >= 1, got "),
    ],
)
def test_check_int_names_the_argument_and_the_allowed_values(kwargs: dict, value: object, error: type,
                                                             message: str) -> None:
    with pytest.raises(error, match=f"^{message}"):
        check_int("n", value, **kwargs)


def test_check_number() -> None:
    assert check_number("lr", 3) == 3.0 and type(check_number("lr", 3)) is float
    assert check_number("x", np.float32(0.5), 0.0, 1.0) == 0.5
    assert check_number("x", math.inf, 0.0) == math.inf  # an interval closed at inf holds inf
    with pytest.raises(ValueError, match=r"^lr must be a finite number in \[0.0, inf\), got inf$"):
        check_number("lr", math.inf, 0.0, math.inf, high_open=True)
    with pytest.raises(ValueError, match=r"^eps must be a finite number in \(0.0, inf\), got 0.0$"):
        check_number("eps", 0.0, 0.0, math.inf, low_open=True, high_open=True)
    with pytest.raises(ValueError, match=r"^p must be a number in \[0, 1\), got nan$"):
        check_number("p", math.nan, 0, 1, high_open=True, allowed="a number in [0, 1)")
    with pytest.raises(ValueError, match=r"must be a finite number in \[0, 1\], got True"):
        check_number("p", True, 0, 1)
    with pytest.raises(TypeError, match=r"^x must be a number in \[0.0, inf\], got '1'$"):
        check_number("x", "1", 0.0, type_error=TypeError)
    with pytest.raises(ValueError, match=r"got 1.5"):
        check_number("x", 1.5, 0.0, 1.0)


def test_check_seed_and_choice() -> None:
    assert check_seed(0) == 0 and check_seed(2**63 - 1) == 2**63 - 1
    for bad in (-1, 2**63, 1.0, True, None):
        with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 2\*\*63 - 1\], got "):
            check_seed(bad)
    with pytest.raises(ValueError, match=r"^seeds must be an integer"):
        check_seed(-1, "seeds")
    assert check_choice("side", "head", ("head", "tail")) == "head"
    with pytest.raises(ValueError, match="^side must be one of head, tail, got 'middle'$"):
        check_choice("side", "middle", ("head", "tail"))
    with pytest.raises(ValueError, match=r"^side must be one of head, tail, got \['head'\]$"):
        check_choice("side", ["head"], {"head", "tail"})  # unhashable: an error about the value, not a TypeError


def test_threads_sets_both_pools_and_restores_them_after_an_exception() -> None:
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    target = 1 if torch_before != 1 else 2
    with pytest.raises(RuntimeError, match="boom"), threads(target) as counts:
        assert counts == (target, min(target, numba.config.NUMBA_NUM_THREADS))
        assert torch.get_num_threads() == target
        assert numba.get_num_threads() == min(target, numba.config.NUMBA_NUM_THREADS)
        raise RuntimeError("boom")
    assert (torch.get_num_threads(), numba.get_num_threads()) == (torch_before, numba_before)


def test_threads_none_keeps_the_counts_and_libraries_limits_what_is_set() -> None:
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    with threads(None) as counts:
        assert counts == (torch_before, numba_before)
    target = 1 if torch_before != 1 else 2
    with threads(target, libraries=("torch",)) as counts:
        assert counts.torch == target and counts.numba is None
        assert numba.get_num_threads() == numba_before
    assert torch.get_num_threads() == torch_before
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="threads must be None or an integer >= 1"), threads(bad):
            pass
    with pytest.raises(ValueError, match="libraries must be among torch, numba"), threads(1, libraries=("mkl",)):
        pass


def test_eval_mode_restores_nested_training_flags() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2)), nn.Dropout(0.1))
    model.train()
    model[1].eval()  # a frozen sub-block stays in eval mode, its parent trains
    before = [m.training for m in model.modules()]
    assert before == [True, True, False, False, False, True]
    with eval_mode(model) as inside:
        assert inside is model and not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    with pytest.raises(KeyError), eval_mode(model):
        raise KeyError("restored anyway")
    assert [m.training for m in model.modules()] == before
    model.eval()
    with eval_mode(model):
        pass
    assert not any(m.training for m in model.modules())


def test_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MINI_LLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "cache"
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("MINI_LLM_CACHE", "")
    assert cache_root() == tmp_path / "xdg" / "mini_llm"
    monkeypatch.delenv("MINI_LLM_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "mini_llm"
    assert cache_root("~/elsewhere") == tmp_path / "home" / "elsewhere"


def test_helpers_imports_only_the_standard_library_at_module_level() -> None:
    tree = ast.parse(Path(helpers.__file__).read_text(encoding="utf-8"))
    top = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = {alias.name.split(".")[0] for node in top if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in top if isinstance(node, ast.ImportFrom) and node.module}
    assert names <= {"__future__", "math", "os", "collections", "contextlib", "numbers", "pathlib", "typing"}
