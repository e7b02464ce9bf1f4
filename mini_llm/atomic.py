"""Atomic file writes: a file is written beside its final name and renamed over it only when complete.

A crash, Ctrl-C or full disk mid-write therefore leaves the earlier file (or none), never half a file. Every floor
of mini_llm may import this module; it imports nothing of mini_llm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` only if the block ends without error.

    A write that fails (disk full, file size limit), through safetensors or not, comes out as an OSError naming
    ``path``.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        os.replace(partial, path)
    except SafetensorError as error:
        raise OSError(f"could not write {path}: {error}") from error
    except OSError as error:
        if error.filename is None:  # a failed write (EFBIG, ENOSPC) names no file by itself
            raise OSError(error.errno, f"could not write {path}: {error.strerror or error}") from error
        raise
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
