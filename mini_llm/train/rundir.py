"""The run-directory convention of every command that trains and writes a run (char-GPT, classifiers, the zoo).

- Where: ``run_dir(command, name)`` = ``<cache>/<command>/<name>``, the cache being ``cache_dir`` if given, else
  ``$MINI_LLM_CACHE``, else ``$XDG_CACHE_HOME/mini_llm``, else ``~/.cache/mini_llm`` (``helpers.cache_root``).
  A command may also be pointed at any directory (``--run-dir``).
- What: one run record, a JSON object tagged with ``"format": "mini_llm.<command>/<version>"`` (``config.json`` of
  a char-GPT run, ``run.json`` of a classifier run), written by ``write_record`` and read by ``read_record`` (the
  format checked, and a schema if given), beside the run's tensors in safetensors files (``atomic.write_safetensors``
  or ``train.checkpoint``). Every file is written atomically: a crash leaves the earlier file or none, never half.
- Replacing a finished run: train into ``staging_dir(run)`` (``<run>.new``) and ``swap_in`` when done, so an
  interrupted overwrite leaves the earlier run as it was.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

from mini_llm.atomic import write_text_atomic
from mini_llm.helpers import cache_root
from mini_llm.jsonfiles import Schema, format_json, read_format_json


def run_dir(command: str, name: str | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """<cache>/<command>/<name> (just <cache>/<command> without a name); see the module docstring for <cache>."""
    root = cache_root(cache_dir) / command
    return root if name is None else root / name


def write_json(
    path: str | os.PathLike, payload: Any, indent: int | None = 1, one_line: Collection[str] = ()
) -> Path:
    """Write ``jsonfiles.format_json(payload, indent, one_line)`` to path atomically: the one JSON writer of mini_llm
    (run records, results, model settings)."""
    path = Path(path)
    write_text_atomic(path, format_json(payload, indent, one_line))
    return path


def write_record(
    path: str | os.PathLike, record: dict[str, Any], indent: int = 1, one_line: Collection[str] = ()
) -> Path:
    """Write a run record (a JSON object with a "format" entry) atomically; see ``jsonfiles.format_json``."""
    if not isinstance(record, dict) or not isinstance(record.get("format"), str):
        raise ValueError(f"a run record must be a JSON object with a 'format' string, not {type(record).__name__}")
    return write_json(path, record, indent, one_line)


def read_record(path: str | os.PathLike, record_format: str, what: str, schema: Schema | None = None) -> dict[str, Any]:
    """The run record in path, its format (and schema, if given) checked; ValueError naming the file otherwise."""
    return read_format_json(path, record_format, what, schema)


def staging_dir(run: str | os.PathLike) -> Path:
    """Where the run that replaces the one in ``run`` is trained: ``<run>.new`` beside it."""
    run = Path(run)
    return run.with_name(run.name + ".new")


def swap_in(new: str | os.PathLike, run: str | os.PathLike) -> None:
    """Replace the run directory ``run`` by ``new``: two renames, the earlier run deleted only after both."""
    new, run = Path(new), Path(run)
    old = run.with_name(run.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(run, old)
    os.replace(new, run)
    shutil.rmtree(old)
