"""history.csv of a char-GPT run: one row per step, written atomically and read back with checks."""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from pathlib import Path
from typing import Any

from mini_llm.atomic import atomic_path
from mini_llm.jsonfiles import read_text

HISTORY_COLUMNS = ("step", "lr", "train_loss", "grad_norm", "eval_loss", "eval_perplexity")


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """One CSV row per step (written atomically); evaluation columns are empty at steps without an evaluation."""
    with atomic_path(path) as partial, partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in history:
            writer.writerow({key: "" if record.get(key) is None else record[key] for key in HISTORY_COLUMNS})


def read_history(path: str | os.PathLike) -> list[dict[str, float | int | None]]:
    """Read a history.csv back: numbers, and None for empty evaluation cells; ValueError naming the file when it is
    damaged (other columns, a row with missing or extra cells, a cell that is not a finite number, no steps)."""
    path = Path(path)
    rows = list(csv.reader(io.StringIO(read_text(path, "a training history"), newline="")))
    if not rows or tuple(rows[0]) != HISTORY_COLUMNS:
        raise ValueError(f"{path} is not a training history: the header must be {','.join(HISTORY_COLUMNS)}")
    if len(rows) < 2:
        raise ValueError(f"{path} holds no steps: the file is damaged (train again or restore it)")
    history = [_history_row(path, line, row) for line, row in enumerate(rows[1:], 2)]
    steps = [row["step"] for row in history]
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"{path}: the steps must increase from row to row")
    return history


def _history_row(path: Path, line: int, row: list[str]) -> dict[str, float | int | None]:
    """One row of history.csv as numbers (None for an empty evaluation cell); ValueError naming file and line."""
    if len(row) != len(HISTORY_COLUMNS):
        raise ValueError(f"{path}, line {line}: {len(row)} cells, the header has {len(HISTORY_COLUMNS)}")
    record: dict[str, float | int | None] = {}
    for key, text in zip(HISTORY_COLUMNS, row, strict=True):
        try:
            if text == "" and key.startswith("eval_"):
                record[key] = None
            elif key == "step":
                record[key] = int(text) if text.isascii() and text.isdigit() else int("x")
            else:
                record[key] = float(text)
                if not math.isfinite(record[key]):
                    raise ValueError
        except ValueError:
            raise ValueError(f"{path}, line {line}: column {key!r} cannot be {text[:40]!r}") from None
    return record

