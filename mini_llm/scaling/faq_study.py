"""``mini-llm faq compress``: chapter 9's question-4 measurements on the zoo, written as small CSV files.

Files (in ``out_dir``): faq_pruning.csv, faq_distillation.csv, faq_precision.csv, faq_speculative.csv,
faq_decode.csv and faq_sparse_matmul.csv. Each is written whole and atomically once its table is measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path

from mini_llm import helpers
from mini_llm.atomic import write_csv_atomic
from mini_llm.data import prepare_data
from mini_llm.scaling import sweep
from mini_llm.scaling.compression import (
    EvalSet,
    distillation_rows,
    precision_rows,
    pruning_rows,
    zoo_model,
    zoo_size,
)
from mini_llm.scaling.decode_speed import decode_rows, held_out_prompts, sparse_matmul_rows, speculative_rows

TABLES = ("pruning", "distillation", "precision", "speculative", "decode", "sparse_matmul")
NF4 = sweep.QuantConfig(4, "nf", 64, embedding="16bit")  # the decode-speed row of a 4-bit model


def write_rows(path: Path, rows: Iterable[dict[str, object]]) -> list[dict[str, object]]:
    """Write rows (dicts with the same keys) as one CSV file, atomically; returns them."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    write_csv_atomic(path, list(rows[0]), rows)
    return rows


def run_faq_compress(
    out_dir: str | os.PathLike = "results", preset_set: str = "main", target: str = "3x144",
    small: Sequence[str] = ("1x64", "2x64"), seeds: Sequence[int] = (0, 1), fraction: Fraction = Fraction(1, 4),
    recovery_steps: int = 100, new_tokens: int = 64, prompts: int = 8, tables: Sequence[str] = TABLES,
    cache_dir: str | os.PathLike | None = None, log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Measure the chosen tables with the zoo's ``target`` as teacher/target and ``small`` as students/drafts."""
    for table in tables:
        helpers.check_choice("tables", table, TABLES)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    teacher = zoo_model(target, preset_set, cache_dir=cache_dir)
    needs_drafts = {"speculative", "decode"} & set(tables)  # students are trained, drafts loaded
    drafts = {name: zoo_model(name, preset_set, cache_dir=cache_dir) for name in small} if needs_drafts else {}
    data = prepare_data()
    evals = EvalSet.of(data, teacher.config.block_size)
    length = teacher.config.block_size - new_tokens
    if length < 1:
        raise ValueError(f"new_tokens must be below the context ({teacher.config.block_size}), got {new_tokens}")
    held_out = held_out_prompts(data.val, prompts, length)
    makers = {
        "pruning": lambda: pruning_rows(teacher, zoo_size(target, preset_set), data, evals,
                                        recovery_steps=recovery_steps, log=log),
        "distillation": lambda: distillation_rows(teacher, small, seeds, fraction, data, evals, preset_set, log=log),
        "precision": lambda: precision_rows(teacher, evals),
        "speculative": lambda: speculative_rows(teacher, drafts, held_out, new_tokens, log=log),
        "decode": lambda: decode_rows({target: teacher, f"{target} NF4": sweep.quantized_copy(
            sweep.to_16bit(teacher), NF4), **drafts}, held_out, new_tokens),
        "sparse_matmul": sparse_matmul_rows,
    }
    written = {}
    for table in tables:
        written[table] = out / f"faq_{table}.csv"
        write_rows(written[table], makers[table]())
        log(f"wrote {written[table]}")
    return written
