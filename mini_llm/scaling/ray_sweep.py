"""The k-bit sweep on Ray: the same runs and the same CSV as ``run_sweep``, spread over the workers of a Ray cluster.

A local cluster by default (``address`` None or "local": started here with ``workers`` CPUs and stopped at the
end), or an existing one: ``HOST:PORT`` of a head started with ``ray start --head`` (the driver joins the cluster)
or ``ray://HOST:PORT`` (Ray Client, port 10001 by default). Every task runs ``sweep.checkpoint_rows`` on one CPU
with one torch thread and returns its rows; this driver process alone appends them to the CSV as the tasks finish,
so the rows come in completion order (compare runs order-independently, on the key columns). Rows already in the
file are skipped as in the serial sweep, and a task whose runs are all done is never submitted.

On many machines every worker reads the checkpoints by their path: put the zoo cache on a filesystem that all of
them mount at the same path. Ray is the optional ``cluster`` extra and is imported only inside these functions.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mini_llm import helpers
from mini_llm.data import CharData, prepare_data
from mini_llm.scaling.sweep import (
    EVAL_WINDOWS,
    OUTLIER_FRACTION,
    Log,
    QuantConfig,
    SweepGrid,
    checkpoint_rows,
    plan_runs,
    row_appender,
)
from mini_llm.scaling.zoo import ZooCheckpoint

EXTRA = "mini-llm[cluster]"  # the optional dependency that brings Ray
LOCAL = "local"  # the address that starts a local cluster
CONNECT_TIMEOUT = 5.0  # seconds to wait for a TCP answer from the cluster's address before giving up
OBJECT_STORE_BYTES = 128 * 2**20  # a local cluster's object store: the corpus split (~15 MB) and the rows
# One task = one checkpoint x at most CONFIGS_PER_TASK configurations. Loading a checkpoint and rounding it to
# 16 bits costs little next to 32 quantize-and-evaluate runs, and batches bound what a lost worker or Ctrl-C
# throws away, make the progress bar move every few seconds, and spread even a one-checkpoint sweep over the
# cluster. The 16-bit model is not shared between a checkpoint's tasks: each task loads it again.
CONFIGS_PER_TASK = 32
Task = tuple[ZooCheckpoint, list[QuantConfig]]


def require_ray() -> Any:
    """The ray module; ModuleNotFoundError naming the extra if it is not installed."""
    try:
        import ray
    except ImportError as error:
        raise ModuleNotFoundError(f"the sweep on Ray needs the optional dependency ray: pip install '{EXTRA}'",
                                  name="ray") from error
    return ray


def host_port(address: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; ValueError for anything else."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a Ray address must be '{LOCAL}', HOST:PORT or ray://HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """ConnectionError naming ``address`` unless something accepts a TCP connection there within ``timeout`` s.

    ray.init itself keeps retrying an address where nothing listens for minutes (Ray Client: 30 s).
    """
    host, port = host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = f"no answer within {timeout:g} s" if isinstance(error, TimeoutError) else error.strerror or error
        raise ConnectionError(f"no Ray cluster answers at {address} ({reason}); start one there with `ray start "
                              f"--head`, or leave the address out for a local cluster") from error


def connect(ray: Any, address: str | None, workers: int) -> None:
    """ray.init: a new local cluster of ``workers`` CPUs for None or "local", else join the cluster at address."""
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}  # errors still come back with ray.get
    if address in (None, LOCAL):
        helpers.check_int("workers", workers, 1)
        ray.init(address=LOCAL, num_cpus=workers, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                 **quiet)
        return
    check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except ConnectionError as error:  # e.g. a cluster with token authentication and a driver without the token
        raise ConnectionError(f"could not join the Ray cluster at {address} ({error}); if it uses token "
                              f"authentication, set RAY_AUTH_MODE=token and copy its ~/.ray/auth_token here") from error


def batches(todo: Sequence[Task], size: int = CONFIGS_PER_TASK) -> list[Task]:
    """The sweep's runs as tasks: each checkpoint's missing configurations cut into groups of at most size."""
    helpers.check_int("configs_per_task", size, 1)
    return [(checkpoint, missing[i : i + size]) for checkpoint, missing in todo for i in range(0, len(missing), size)]


def sweep_task(
    checkpoint: ZooCheckpoint, configs: list[QuantConfig], eval_windows: int, outlier_fraction: float, data: CharData
) -> list[dict[str, object]]:
    """The rows of one task, computed with one torch (and Numba) thread: the function every Ray worker runs."""
    with helpers.threads(1):
        return list(checkpoint_rows(checkpoint, configs, eval_windows, outlier_fraction, data))


def _results(ray: Any, submit: Iterator[Any], limit: int | None) -> Iterator[Any]:
    """The values of the submitted tasks in the order they finish, with at most ``limit`` in flight (None: all).

    A task's error is raised as the worker raised it (a ValueError stays a ValueError).
    """
    pending = []
    for ref in submit:
        pending.append(ref)
        while limit is not None and len(pending) >= limit:
            (ready,), pending = ray.wait(pending, num_returns=1)
            yield _value(ray, ready)
    while pending:
        (ready,), pending = ray.wait(pending, num_returns=1)
        yield _value(ray, ready)


def _value(ray: Any, ref: Any) -> Any:
    """ray.get(ref), with a task's exception unwrapped from Ray's RayTaskError."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def run_ray_sweep(
    out: str | os.PathLike,
    checkpoints: Sequence[ZooCheckpoint],
    grid: SweepGrid | None = None,
    eval_windows: int = EVAL_WINDOWS,
    outlier_fraction: float = OUTLIER_FRACTION,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    log: Log | None = None,
    configs_per_task: int = CONFIGS_PER_TASK,
) -> int:
    """``run_sweep`` on Ray: the runs not yet in the CSV ``out`` as Ray tasks, their rows appended; return rows written.

    ``workers``: CPUs of a new local cluster (default 2), or with an address, the most tasks running at once
    (default: as many as the cluster's CPUs take). A process already connected to Ray (``ray.is_initialized()``)
    runs the tasks on that cluster, whatever ``address`` says, and stays connected.
    """
    ray = require_ray()
    say = log or (lambda message: None)
    path = Path(out)
    tasks = batches(plan_runs(path, checkpoints, grid or SweepGrid(), eval_windows, outlier_fraction, say),
                    configs_per_task)
    if not tasks:
        return 0
    local, joined = address in (None, LOCAL), ray.is_initialized()  # joined: keep the caller's connection open
    if not joined:
        connect(ray, address, (workers or 2) if local else 1)  # an existing cluster brings its own CPUs
    try:
        where = "the connected cluster" if joined else "a new local cluster" if local else address
        say(f"sweep on Ray at {where}: {len(tasks)} tasks on {int(ray.cluster_resources().get('CPU', 0))} CPUs")
        data = ray.put(prepare_data())  # once for every worker instead of seconds of encoding in each
        remote = ray.remote(num_cpus=1)(sweep_task)
        submit = (remote.remote(c, configs, eval_windows, outlier_fraction, data) for c, configs in tasks)
        written = 0
        with row_appender(path) as append, tqdm(total=sum(len(configs) for _, configs in tasks), desc="sweep (ray)",
                                                disable=not progress) as bar:
            for rows in _results(ray, submit, None if local and not joined else workers):
                for row in rows:
                    append(row)
                written += len(rows)
                bar.update(len(rows))
        return written
    finally:
        if not joined:
            ray.shutdown()
