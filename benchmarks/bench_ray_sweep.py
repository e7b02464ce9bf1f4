"""The k-bit sweep's wall time: serial (1 process, 2 torch threads) against Ray with 2 workers (1 thread each).

The same small sweep (the test-set zoo's kept checkpoints x a reduced grid) runs three ways, each into a new CSV:
serial ``run_sweep`` with ``--threads`` threads; ``run_ray_sweep`` on a new local cluster of ``--workers`` CPUs, the
cluster's start and stop included (what ``mini-llm sweep --ray`` costs); and ``run_ray_sweep`` again on a cluster
that is already up (the workers' start, their torch import and the corpus sent to them still included). A serial
run on 1 thread is timed too: on a busy machine 2 threads may wait for each other. An untimed serial sweep of one
checkpoint comes first, so that no run pays for encoding the corpus (cached in the driver) or compiling Numba
kernels (cached on disk). The test-set zoo is trained into ``--cache-dir`` first if it is not there (a temporary
directory by default).

Run: .venv/bin/python benchmarks/bench_ray_sweep.py [--workers 2] [--threads 2] [--eval-windows 64] ...
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import markdown_table, positive_int, print_machine

from mini_llm.scaling import ray_sweep, sweep, zoo

COLUMNS = ("run", "processes x threads", "seconds", "rows", "ratio vs serial")
GRIDS = {  # small: 13 configurations per checkpoint, medium: 91
    "small": sweep.SweepGrid(bits=(3, 4, 8, 16), codebooks=("int", "nf"), blocksizes=(None, 64), outliers=(False,)),
    "medium": sweep.SweepGrid(bits=(3, 4, 8, 16), blocksizes=(None, 256, 64)),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: workers, threads, the zoo's cache and the size of the sweep."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=positive_int, default=2, help="Ray workers (CPUs of the local cluster)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads of the serial sweep")
    parser.add_argument("--grid", choices=tuple(GRIDS), default="medium", help="configurations per checkpoint")
    parser.add_argument("--eval-windows", type=positive_int, default=64, help="held-out windows per run")
    parser.add_argument("--sizes", default="1x16,1x32", help="sizes of the test-set zoo (default: both)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the test-set zoo is (trained there if missing; default: a temporary directory)")
    return parser.parse_args(argv)


def trained_test_zoo(cache: Path, sizes: list[str]) -> list[zoo.ZooCheckpoint]:
    """The kept checkpoints of the test-set zoo in cache, trained first where missing (one thread, seconds)."""
    jobs = zoo.plan("test", sizes)
    zoo.train_zoo(jobs, cache, progress=False, threads=1)
    return zoo.zoo_checkpoints(jobs, cache)


def timed(run: Callable[[], int]) -> tuple[float, int]:
    """(wall seconds, rows written) of one sweep."""
    start = time.perf_counter()
    rows = run()
    return time.perf_counter() - start, rows


def measure(args: argparse.Namespace, checkpoints: list[zoo.ZooCheckpoint], out: Path) -> list[dict[str, Any]]:
    """The three runs of the sweep, each into its own CSV: one table row each."""
    import ray

    grid, options = GRIDS[args.grid], {"eval_windows": args.eval_windows, "progress": False}
    sweep.run_sweep(out / "warmup.csv", checkpoints[:1], grid, threads=1, **options)  # corpus encoded, kernels JIT-ed
    runs: list[tuple[str, str, Callable[[], int]]] = [
        ("serial run_sweep", f"1 x {args.threads}",
         lambda: sweep.run_sweep(out / "serial.csv", checkpoints, grid, threads=args.threads, **options)),
        ("serial run_sweep, 1 thread", "1 x 1",
         lambda: sweep.run_sweep(out / "serial1.csv", checkpoints, grid, threads=1, **options)),
        ("Ray, new local cluster (start + stop included)", f"{args.workers} x 1",
         lambda: ray_sweep.run_ray_sweep(out / "ray.csv", checkpoints, grid, workers=args.workers, **options)),
    ]
    rows = []
    for name, shape, run in runs:
        seconds, written = timed(run)
        rows.append({"run": name, "processes x threads": shape, "seconds": seconds, "rows": written})
    ray_sweep.connect(ray, None, args.workers)
    try:
        seconds, written = timed(lambda: ray_sweep.run_ray_sweep(out / "ray_up.csv", checkpoints, grid, **options))
    finally:
        ray.shutdown()
    rows.append({"run": "Ray, cluster already up", "processes x threads": f"{args.workers} x 1", "seconds": seconds,
                 "rows": written})
    for row in rows:
        row["ratio vs serial"] = rows[0]["seconds"] / row["seconds"]
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Train the test zoo if needed, time the three sweeps, print the table; return its rows."""
    args = parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print_machine()
    with tempfile.TemporaryDirectory(prefix="bench_ray_sweep_") as tmp:
        checkpoints = trained_test_zoo(args.cache_dir or Path(tmp) / "cache", args.sizes.split(","))
        configs = len(GRIDS[args.grid].configs())
        print(f"sweep: {len(checkpoints)} checkpoints x {configs} configurations ({args.grid} grid), "
              f"{args.eval_windows} held-out windows per run")
        rows = measure(args, checkpoints, Path(tmp))
    print(markdown_table(rows, COLUMNS))
    print("ratio vs serial > 1: faster than the serial sweep")
    return rows


if __name__ == "__main__":
    main()
