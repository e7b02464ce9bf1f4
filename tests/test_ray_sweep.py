"""The k-bit sweep on Ray (``mini-llm sweep --ray``): on a local cluster of 2 workers it writes the rows of the
serial sweep, resumes by skipping rows already written, and fails in one line without ray or without a cluster."""

from __future__ import annotations

import csv
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from cli_runner import run_main

from mini_llm.scaling import ray_sweep, sweep, zoo

ray = pytest.importorskip("ray", reason="the cluster extra is not installed")

TEST_SIZE = "1x16"
GRID = sweep.SweepGrid(bits=(4, 16), codebooks=("nf",), blocksizes=(None, 64), outliers=(False, True))
GRID_FLAGS = ["--bits", "4,16", "--codebooks", "nf", "--blocksizes", "tensor,64", "--outliers", "no,yes"]
EVAL_WINDOWS = 8
N_ROWS = 4 * 5  # kept checkpoints (steps 1, 2, 4, 8) x (baseline + 2 block sizes x 2 outlier settings)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A cache holding the test set's 1x16 model (seed 0) and its four kept checkpoints."""
    cache = tmp_path_factory.mktemp("cache")
    code, _, stderr = run_main(["zoo", "train", "--preset-set", "test", "--sizes", TEST_SIZE, "--seeds", "0",
                                "--cache-dir", str(cache), "--no-progress", "--threads", "1"])
    assert code == 0, stderr
    return cache


@pytest.fixture(scope="module")
def checkpoints(trained) -> list[zoo.ZooCheckpoint]:
    """The four kept checkpoints of the trained model."""
    kept = zoo.zoo_checkpoints(zoo.plan("test", [TEST_SIZE], [0]), trained)
    assert [c.fraction for c in kept] == [float(Fraction(1, 2**i)) for i in (3, 2, 1, 0)]
    return kept


@pytest.fixture(scope="module")
def serial(checkpoints, tmp_path_factory) -> Path:
    """The serial sweep's CSV: the reference."""
    out = tmp_path_factory.mktemp("serial") / "sweep.csv"
    assert sweep.run_sweep(out, checkpoints, GRID, eval_windows=EVAL_WINDOWS, threads=1, progress=False) == N_ROWS
    return out


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module; the sweeps join it instead of starting their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        patch.setenv("RAY_DISABLE_USAGE_STATS", "1")
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 2**20, logging_level="WARNING")
        try:
            yield ray
        finally:
            ray.shutdown()


def rows_without_seconds(path: Path) -> list[tuple[str, ...]]:
    """The CSV's rows, every column but the wall time, as sorted tuples of text."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return sorted(tuple(value for name, value in row.items() if name != "seconds") for row in rows)


def test_the_ray_sweep_writes_the_rows_of_the_serial_sweep(trained, serial, cluster, tmp_path):
    out = tmp_path / "ray.csv"
    code, stdout, stderr = run_main(["sweep", "--out", str(out), "--preset-set", "test", "--sizes", TEST_SIZE,
                                     "--seeds", "0", "--cache-dir", str(trained), *GRID_FLAGS,
                                     "--eval-windows", str(EVAL_WINDOWS), "--no-progress", "--ray"])
    assert code == 0, stderr
    assert f"wrote {N_ROWS} rows" in stdout and "tasks on 2 CPUs" in stdout
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(sweep.COLUMNS)
    assert rows_without_seconds(out) == rows_without_seconds(serial)  # same runs, same numbers, in any order


def test_the_ray_sweep_computes_only_the_missing_rows(checkpoints, serial, cluster, tmp_path):
    out = tmp_path / "resumed.csv"
    lines = serial.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:8]) + lines[8][:20], encoding="utf-8")  # 7 rows, then a row cut by a crash
    said = []
    written = ray_sweep.run_ray_sweep(out, checkpoints, GRID, eval_windows=EVAL_WINDOWS, progress=False,
                                      log=said.append, configs_per_task=2)
    assert written == N_ROWS - 7
    assert "13 runs to do, 7 already" in said[0]
    assert "8 tasks" in said[1]  # checkpoint 1 done, 2: 3 runs left -> 2 tasks, 3 and 4: 5 runs -> 3 tasks each
    assert rows_without_seconds(out) == rows_without_seconds(serial)  # every row once
    assert ray_sweep.run_ray_sweep(out, checkpoints, GRID, eval_windows=EVAL_WINDOWS, progress=False) == 0


def test_an_error_in_a_task_reaches_the_driver_as_it_was_raised(checkpoints, cluster, tmp_path):
    broken = tmp_path / "weights.safetensors"
    broken.write_bytes(b"not a weights file")
    checkpoint = zoo.ZooCheckpoint(checkpoints[0].job, checkpoints[0].step, broken)
    with pytest.raises(ValueError, match="weights.safetensors"):
        ray_sweep.run_ray_sweep(tmp_path / "x.csv", [checkpoint], GRID, eval_windows=EVAL_WINDOWS, progress=False)
    assert cluster.is_initialized()  # the caller's connection stays open


def test_without_ray_the_flag_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    code, _, stderr = run_main(["sweep", "--out", str(tmp_path / "x.csv"), "--preset-set", "test", "--ray"])
    assert code == 2
    assert stderr.strip() == ("mini-llm sweep: error: --ray needs the optional dependency ray: "
                              "pip install 'mini-llm[cluster]'")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'mini-llm\[cluster\]'"):
        ray_sweep.run_ray_sweep(tmp_path / "x.csv", [])


def test_an_unreachable_address_fails_at_once_in_one_line(tmp_path):
    start = time.perf_counter()
    code, _, stderr = run_main(["sweep", "--out", str(tmp_path / "x.csv"), "--preset-set", "test",
                                "--ray", "127.0.0.1:1"])
    assert time.perf_counter() - start < 30
    assert code == 1 and stderr.count("\n") == 1
    assert stderr.startswith("mini-llm sweep: error: --ray: no Ray cluster answers at 127.0.0.1:1")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--ray", "headnode"], "--ray: a Ray address must be 'local', HOST:PORT or ray://HOST:PORT, got 'headnode'"),
    (["--ray-workers", "2"], "--ray-workers needs --ray"),
    (["--ray", "--threads", "2"], "--threads is for the serial sweep"),
    (["--ray", "--ray-workers", "0"], "argument --ray-workers: must be an integer >= 1, got '0'"),
])
def test_bad_ray_flags_are_usage_errors(flags, message, tmp_path):
    code, _, stderr = run_main(["sweep", "--out", str(tmp_path / "x.csv"), "--preset-set", "test", *flags])
    assert code == 2 and message in stderr
