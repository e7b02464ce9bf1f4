"""Atomic file writes, and safetensors files that carry a digest of their tensors.

A file is written beside its final name and renamed over it only when complete: a crash, Ctrl-C or full disk
mid-write therefore leaves the earlier file (or none), never half a file. A safetensors file written by
``write_safetensors`` records the SHA-256 of its tensors (names, dtypes, shapes and bytes) in its metadata, and
``read_safetensors`` checks it, so a flipped bit in the data is an error instead of a silently different weight.
Every floor of mini_llm may import this module; it imports nothing of mini_llm.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file as save_numpy

if TYPE_CHECKING:  # torch is imported by the functions that need it: mini_llm.data stays light
    import torch

DIGEST_KEY = "mini_llm.sha256"  # metadata entry: SHA-256 of the tensors, see tensors_digest


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


def write_csv_atomic(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    """Write rows under a header of ``columns`` to the CSV ``path`` atomically (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial, partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _raw_bytes(tensor: torch.Tensor | np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """(dtype name, shape, bytes in C order) of a torch tensor or a numpy array."""
    if isinstance(tensor, np.ndarray):
        return tensor.dtype.name, tuple(tensor.shape), np.ascontiguousarray(tensor).tobytes()
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape), data


def tensors_digest(tensors: Mapping[str, torch.Tensor | np.ndarray]) -> str:
    """SHA-256 (hex) over the names, dtypes, shapes and bytes of tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        dtype, shape, data = _raw_bytes(tensors[name])
        digest.update(f"{name}|{dtype}|{list(shape)}|{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write torch tensors or numpy arrays (not a mix) and metadata to path atomically, with their digest."""
    path = Path(path)
    if any(isinstance(t, np.ndarray) for t in tensors.values()):
        save = save_numpy
    else:
        from safetensors.torch import save_file as save
    with atomic_path(path) as partial:
        save(
            dict(tensors), str(partial), metadata={**(metadata or {}), DIGEST_KEY: tensors_digest(tensors)}
        )
    return path


def read_safetensors(
    path: str | os.PathLike, what: str = "a safetensors file", framework: str = "pt"
) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, its digest checked when it has one; FileNotFoundError when path
    is missing, ValueError "<path> is not <what>: ..." when it is a directory, unreadable or damaged."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is not {what}: it is a directory")
    try:
        with safe_open(str(path), framework=framework, device="cpu") as file:
            metadata = dict(file.metadata() or {})
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not {what}: {_one_line(error)}") from error
    recorded = metadata.pop(DIGEST_KEY, None)
    if recorded is not None and recorded != tensors_digest(tensors):
        raise ValueError(
            f"{path} is damaged: its tensors do not match the SHA-256 recorded when it was written "
            "(restore the file or write it again)"
        )
    return tensors, metadata


def _one_line(error: BaseException) -> str:
    """The message of error on one line."""
    return " ".join(str(error).split())
