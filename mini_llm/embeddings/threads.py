"""Run Numba parallel loops on a given number of threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba


@contextmanager
def numba_threads(workers: int) -> Iterator[int]:
    """Run the body with numba.set_num_threads(min(workers, NUMBA_NUM_THREADS)) and restore the old count."""
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(workers, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(previous)
