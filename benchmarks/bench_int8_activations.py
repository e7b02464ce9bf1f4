"""What rounding the activations to int8 costs SmolLM2-135M: the accuracy side of backend 'int8'.

The int8-activation GEMV (mini_llm.kernels.cpu_int8) rounds each run of 64 inputs of every k-bit linear layer to
int8 (one float scale per run) and the 16-value code table to int8, then multiplies with integer dot products, as
llama.cpp's q4_0 x q8_0 does. Its speed is in benchmarks/bench_kbit_gemv.py and bench_llm_decode.py (formats
"nf4-a8", "int4-a8"); this script measures its error on the real model, side by side with the float32-activation
kernels on the very same k-bit weights (SmolLM2's GGUF weights rounded to 16 bits, then every linear layer and the
tied LM head quantized by mini_llm, blocks of 64, as in bench_llm_decode.py):

- layer error: ||y_int8 - y_fp32|| / ||y_fp32|| per kind of layer (q, k, v, o, gate, up, down, LM head) on the
  inputs the layers see in one forward pass of the first --layer-tokens tokens of the English text;
- perplexity and top-1 accuracy on --eval-tokens held-out tokens of each text (english: the end of the World
  English Bible; people_daily: People's Daily validation), windows of 512, as mini-llm ppl scores them;
- greedy agreement: how many of --new-tokens greedy tokens after a 16-token prompt equal the fp32-activation ones
  (FusedLlamaDecoder, the compiled decode step) before the first difference.

Needs a CPU with AVX-512 VNNI or AVX2. ``--csv PATH`` writes the table, headed by the command and the machine.

Run: .venv/bin/python benchmarks/bench_int8_activations.py [--eval-tokens 4096] [--csv results/int8_activations_cpu.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from common import format_machine, machine_info, markdown_table, positive_int, print_machine

from mini_llm import kernels
from mini_llm.helpers import threads
from mini_llm.quant import QuantizedLinear, quantize_model

FORMATS = {"nf4": (4, "nf"), "int4": (4, "int")}
TEXT_NAMES = ("english", "people_daily")  # mini_llm.scaling.llm_ppl.TEXTS
KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
COLUMNS = ("format", "activations", "layer error (mean over kinds)", *(f"error {kind}" for kind in KINDS),
           "perplexity english", "perplexity people_daily", "accuracy english", "accuracy people_daily",
           "greedy tokens equal")


def token_count(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: formats, tokens, threads, the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--texts", nargs="+", choices=TEXT_NAMES, default=list(TEXT_NAMES),
                        help="held-out texts to score (default both)")
    parser.add_argument("--eval-tokens", type=positive_int, default=4096, help="held-out tokens per text")
    parser.add_argument("--layer-tokens", type=positive_int, default=128, help="tokens whose layer inputs are kept")
    parser.add_argument("--new-tokens", type=token_count, default=64, help="greedy tokens compared (0: none)")
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH", help="also write the table as CSV to PATH")
    return parser.parse_args(argv)


def set_backend(model: torch.nn.Module, backend: str) -> None:
    """Every QuantizedLinear of model runs the CPU kernel backend (int8 or auto)."""
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            module.backend = backend


@torch.no_grad()
def layer_errors(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, float]:
    """kind -> ||y_int8 - y_fp32|| / ||y_fp32|| over all layers of that kind, on the inputs of one forward pass."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0][0]))
             for name, module in model.named_modules() if isinstance(module, QuantizedLinear)]
    try:
        model(ids.view(1, -1))
    finally:
        for hook in hooks:
            hook.remove()
    num = dict.fromkeys(KINDS, 0.0)
    den = dict.fromkeys(KINDS, 0.0)
    for name, x in inputs.items():  # x (T, K)
        layer = model.get_submodule(name)
        exact = kernels.gemv(layer.packed, layer.state, x.contiguous(), backend="auto")  # (T, N)
        rounded = kernels.gemv(layer.packed, layer.state, x.contiguous(), backend="int8")
        kind = name.rsplit(".", 1)[-1]
        num[kind] += float(((rounded - exact).double() ** 2).sum())
        den[kind] += float((exact.double() ** 2).sum())
    return {kind: (num[kind] / den[kind]) ** 0.5 for kind in KINDS}


def greedy(model: torch.nn.Module, backend: str, prompt: list[int], n: int) -> list[int]:
    """n greedy tokens after prompt through FusedLlamaDecoder on the given kernel backend."""
    from mini_llm.tasks.fused_llama import FusedLlamaDecoder

    decoder = FusedLlamaDecoder(model, backend=backend)
    logits, out = decoder.forward(prompt), []
    for _ in range(n):
        out.append(int(logits.argmax()))
        logits = decoder.forward([out[-1]])
    return out


def main(argv: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Measure each format with float32 and int8 activations, print the table, optionally write it."""
    from mini_llm.interop.gguf import gguf_tokenizer, llama_from_reader, read_gguf, smollm2_path
    from mini_llm.scaling.llm_ppl import WINDOW, held_out_text, text_windows
    from mini_llm.scaling.sweep import evaluate, to_16bit

    args = parse_args(argv)
    if not kernels.HAS_INT8_DOT:
        sys.exit("bench_int8_activations: the int8-activation kernel needs AVX-512 VNNI or AVX2; nothing to run")
    rows: list[dict[str, object]] = []
    with threads(args.threads):
        info = machine_info()
        print_machine(info)
        reader = read_gguf(smollm2_path())
        tokenizer = gguf_tokenizer(reader)
        base = to_16bit(llama_from_reader(reader)).eval()
        windows = {text: text_windows(tokenizer, text, args.eval_tokens, min(WINDOW, args.eval_tokens))
                   for text in args.texts}
        english = torch.tensor(tokenizer.encode(held_out_text("english")).ids, dtype=torch.long)  # (N,)
        prompt = english[:16].tolist()
        for fmt in args.formats:
            bits, codebook = FORMATS[fmt]
            model = quantize_model(to_16bit(base), bits, codebook, 64, skip=())
            errors = layer_errors(model, english[: args.layer_tokens])
            reference_tokens = greedy(model, "auto", prompt, args.new_tokens) if args.new_tokens else []
            for activations, backend in (("fp32", "auto"), ("int8", "int8")):
                set_backend(model, backend)
                row: dict[str, object] = {"format": fmt, "activations": activations,
                                          **{f"{m} {t}": "" for m in ("perplexity", "accuracy") for t in TEXT_NAMES}}
                row["layer error (mean over kinds)"] = sum(errors.values()) / len(errors) if backend == "int8" else 0.0
                for kind in KINDS:
                    row[f"error {kind}"] = errors[kind] if backend == "int8" else 0.0
                for text, (x, y) in windows.items():
                    metrics = evaluate(model, x, y, batch_size=2)
                    row[f"perplexity {text}"] = metrics["perplexity"]
                    row[f"accuracy {text}"] = metrics["accuracy"]
                tokens = greedy(model, backend, prompt, args.new_tokens) if args.new_tokens else []
                same = next((i for i, (a, b) in enumerate(zip(tokens, reference_tokens, strict=True)) if a != b),
                            len(tokens))
                row["greedy tokens equal"] = same
                rows.append(row)
                scores = ", ".join(f"{text} {row[f'perplexity {text}']:.3f}" for text in args.texts)
                print(f"{fmt} {activations}: perplexity {scores}", flush=True)
    print(f"SmolLM2-135M, every linear layer and the LM head in k bits (blocks of 64); {args.eval_tokens} tokens per "
          f"text; layer error on {args.layer_tokens} tokens; greedy: {args.new_tokens} tokens")
    print(markdown_table(rows, COLUMNS))
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="", encoding="utf-8") as file:
            arguments = sys.argv[1:] if argv is None else argv
            command = " ".join(["python benchmarks/bench_int8_activations.py", *arguments])
            file.write(f"# command: {command}\n# machine: {format_machine(info).removeprefix('machine: ')}\n")
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return rows


if __name__ == "__main__":
    main()
