"""k-bit GEMV at batch 1 (decoding one token): mini_llm's Numba kernels against torch and bitsandbytes on the CPU.

For each weight shape (default 4096x4096 and 11008x4096) every kernel computes y = W x in bursts of --burst calls
in a row (as decoding does, one kernel for layer after layer), kernels in turn round after round. "ms (median)" is
the median over the later calls of the bursts; "first call ms" the median first call, which also pays for waking
the kernel's thread pool after the other kernels ran (tens of microseconds on a virtual machine). Cold cache: each
kernel rotates through copies of its weight that together exceed 96 MiB (three times the 32 MiB L3), so every call
reads its weight from DRAM. The read-bandwidth floor is measured in the same rounds, as one more candidate: torch.sum
over the rotating float32 weight copies of torch.mv fp32 (a pure read of the same bytes, cold). Floor ms = bytes a
kernel must read / that bandwidth, and "% of floor" = floor ms / measured ms ("% of fp32 GB/s" uses the bandwidth
torch.mv fp32 reaches in the same rounds as a second floor, lower where torch.sum reads faster); measured beside the
kernels, the ratio
stays steady while the machine's bandwidth drifts from run to run (48-89 GB/s seen here). Kernels: torch.mv fp32
and bf16; torch's aten int4 weight-only kernel
(_weight_int4pack_mm_for_cpu, bf16 input, groups of 64); bitsandbytes' CPU NF4 GEMV (bf16 input, weight repacked by
_convert_weight_packed_for_cpu, absmax per 64 in bf16) when installed; mini_llm k = 3 (NF3), 4 (NF4, int4), 8 (int8,
NF8), float32 input and absmax per 64, NF4 also through the portable kernel (plain Numba, what a CPU without AVX2
runs); NF4 and int4 also through the int8-activation kernel (backend 'int8': x rounded to int8 per 64,
integer dot products with AVX-512 VNNI or AVX2, as llama.cpp's q4_0 x q8_0); the SIMD kernels are AVX-512 or, without
it (MINI_LLM_NO_AVX512=1, or NUMBA_CPU_NAME=haswell to compile for an AVX2-only CPU), AVX2; MXFP4 and MXFP6 E2M3
converted exactly to k-bit states (blocks of 32, the same kernels); llama.cpp's Q4_K straight from its GGUF bytes
(mini_llm.kernels.kquant_cpu, portable Numba).
``--warm`` keeps one copy of each weight instead (a 4096x4096 4-bit weight, 8.4 MB, stays in the 32 MiB L3): the
kernels' compute cost without DRAM, which shows what a CPU whose kernels are compute-bound gains.
A last line gives NF4 quantization throughput (params/s) of a 4096x4096 matrix.
The compute ceiling for a roofline is measured too: float32 GFLOP/s of torch.mm on two 2048x2048 matrices
(the fastest of 10 calls).
``--csv PATH`` also writes the table as CSV, headed by comment lines (``# key: value``) with the command, the
machine, the read bandwidth and the matmul ceiling; the book reads results/kbit_gemv_cpu.csv written this way.

Both torch and Numba run OpenMP thread pools; the script leaves OMP_WAIT_POLICY as it finds it (printed with the
machine). GNU OpenMP's default lets idle workers spin a little before they sleep, so a burst's later calls find them
awake. OMP_WAIT_POLICY=PASSIVE (sleep at once) makes every call pay the wake-up, ~50 µs on the 2-vCPU machine
of results/kbit_gemv_cpu.csv; it is the better choice only when other jobs share the cores.

Run: .venv/bin/python benchmarks/bench_kbit_gemv.py [--threads 2] [--rounds 40] [--burst 4]
     [--shapes 4096x4096 11008x4096] [--warm] [--csv results/kbit_gemv_cpu.csv]
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numba
import torch
from common import (
    format_machine,
    interleaved_bursts,
    machine_info,
    markdown_table,
    median,
    positive_int,
    print_machine,
    shape_arg,
    time_call,
)

from mini_llm import kernels
from mini_llm.helpers import threads
from mini_llm.kernels.kquant_cpu import gemv_q4_k
from mini_llm.quant import gguf_quantize, mx_quantize, mx_to_kbit, quantize

COLUMNS = (
    "shape",
    "kernel",
    "MiB read",
    "ms (median)",
    "first call ms",
    "GB/s",
    "% of floor",
    "floor GB/s",
    "% of fp32 GB/s",
    "speed-up vs torch fp32",
)
COLD_BYTES = 96 * 2**20  # rotate weight copies until they exceed three times the 32 MiB L3
FP32 = "torch.mv fp32"
FLOOR = "read floor: torch.sum fp32"  # timed with the kernels, not reported as one


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: shapes, rounds, threads, peers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=shape_arg, nargs="+", default=[(4096, 4096), (11008, 4096)])
    parser.add_argument("--rounds", type=positive_int, default=40, help="bursts timed per kernel")
    parser.add_argument("--burst", type=positive_int, default=4, help="calls of one kernel in a row per round")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch and Numba threads")
    parser.add_argument("--no-peers", action="store_true", help="leave out bitsandbytes")
    parser.add_argument("--warm", action="store_true", help="one weight copy per kernel (cache-resident), not rotated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH", help="also write the table as CSV to PATH")
    return parser.parse_args(argv)


class Rotating:
    """Calls fn(copy) on the next of several weight copies, so that each call reads its weight from DRAM."""

    def __init__(self, make_copy: Callable[[], Any], nbytes: int, fn: Callable[[Any], Any], warm: bool) -> None:
        n_copies = 1 if warm else max(2, math.ceil(COLD_BYTES / max(nbytes, 1)) + 1)
        self.copies = [make_copy() for _ in range(n_copies)]
        self.fn, self.i = fn, 0

    def sharing(self, fn: Callable[[Any], Any]) -> Rotating:
        """Another Rotating that calls fn on these same copies (a shallow copy shares the list)."""
        other = copy.copy(self)
        other.fn, other.i = fn, 0
        return other

    def __call__(self) -> Any:
        self.i = (self.i + 1) % len(self.copies)
        return self.fn(self.copies[self.i])


def matmul_flops(size: int = 2048) -> float:
    """Float32 FLOP/s of torch.mm on two size x size matrices (fastest of 10, after a warm-up): the compute ceiling.

    A ceiling is what the machine can do, so the fastest call counts, not the median a busy machine drags down.
    """
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    torch.mm(a, b)
    return 2 * size**3 / min(time_call(lambda: torch.mm(a, b)) for _ in range(10))


# set, these go into the CSV's command
SIMD_SWITCHES = ("MINI_LLM_NO_AVX512", "MINI_LLM_NO_AVX2", "MINI_LLM_NO_VNNI", "NUMBA_CPU_NAME")


def write_csv(path: Path, rows: Sequence[dict[str, Any]], header: dict[str, Any]) -> None:
    """rows as CSV (full float precision) after one '# key: value' comment line per header entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        for key, value in header.items():
            f.write(f"# {key}: {value}\n")
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def aten_int4(W: torch.Tensor, group: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """W (N, K) as torch's CPU int4 pack (asymmetric, groups of 64) and its (K/64, N, 2) bf16 scales and zeros."""
    N, K = W.shape
    Wg = W.reshape(N, K // group, group)  # (N, G, 64)
    hi, lo = Wg.amax(-1, keepdim=True), Wg.amin(-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp_min(1e-8)  # (N, G, 1)
    q = ((Wg - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(N, K)
    zero = lo + 8 * scale  # value = (q - 8) * scale + zero
    scales_zeros = torch.stack([scale.reshape(N, -1).t(), zero.reshape(N, -1).t()], -1).to(torch.bfloat16)
    return torch._convert_weight_to_int4pack_for_cpu(q, 2), scales_zeros.contiguous()


def bitsandbytes_nf4(W: torch.Tensor) -> tuple[torch.Tensor, Any] | None:
    """bitsandbytes' NF4 weight repacked for its CPU GEMV, or None when bitsandbytes is missing."""
    try:
        import bitsandbytes.functional as bnb_functional
    except ImportError:
        return None
    packed, state = bnb_functional.quantize_4bit(W, blocksize=64, quant_type="nf4")
    return bnb_functional._convert_weight_packed_for_cpu(packed, state)


def candidates(
    W: torch.Tensor, x: torch.Tensor, peers: bool, warm: bool
) -> dict[str, tuple[int, Callable[[], Any], Any]]:
    """name -> (bytes read per call, timed call, result for the accuracy check); warm: one weight copy each."""
    N, K = W.shape
    out: dict[str, tuple[int, Callable[[], Any], Any]] = {}

    def add(name: str, nbytes: int, make_copy: Callable[[], Any], fn: Callable[[Any], Any]) -> None:
        call = Rotating(make_copy, nbytes, fn, warm)
        out[name] = (nbytes, call, call())

    add(FP32, 4 * N * K, W.clone, lambda w: torch.mv(w, x))
    floor_call = out[FP32][1].sharing(torch.sum)
    out[FLOOR] = (4 * N * K, floor_call, floor_call())
    add("torch.mv bf16", 2 * N * K, lambda: W.bfloat16(), lambda w: torch.mv(w, x.bfloat16()))
    x_bf16 = x.bfloat16().reshape(1, K)
    add(
        "aten int4 (bf16 in)",
        N * K // 2 + 4 * N * K // 64,
        lambda: aten_int4(W),
        lambda p: torch._weight_int4pack_mm_for_cpu(x_bf16, p[0], 64, p[1]).reshape(-1),
    )
    if peers and (bnb := bitsandbytes_nf4(W)) is not None:
        import bitsandbytes.functional as bnb_functional

        add(
            "bitsandbytes nf4 (bf16 in)",
            N * K // 2 + 2 * N * K // 64,
            lambda: (bnb[0].clone(), bnb[1]),
            lambda p: bnb_functional.gemv_4bit(x_bf16, p[0], state=p[1]).reshape(-1),
        )
    for bits, book, label in [
        (3, "nf", "NF3"),
        (4, "nf", "NF4"),
        (4, "int", "int4"),
        (8, "int", "int8"),
        (8, "nf", "NF8"),
    ]:
        packed, state = quantize(W, bits, book, 64)
        nbytes = packed.numel() + 4 * state.absmax.numel()
        add(f"mini_llm k={bits} {label}", nbytes, lambda p=packed: p.clone(), lambda p, s=state: kernels.gemv(p, s, x))
        if label == "NF4":  # the plain-Numba kernel every CPU runs, beside the SIMD one
            add("mini_llm k=4 NF4 (portable)", nbytes, lambda p=packed: p.clone(),
                lambda p, s=state: kernels.gemv(p, s, x, backend="portable"))
        if bits == 4 and kernels.HAS_INT8_DOT:  # x rounded to int8, integer dot products
            add(f"mini_llm k=4 {label} (int8 x, {kernels.cpu_int8.DOT_PATH})", nbytes, lambda p=packed: p.clone(),
                lambda p, s=state: kernels.gemv(p, s, x, backend="int8"))
    for fmt, label in (("mxfp4", "MXFP4"), ("mxfp6_e2m3", "MXFP6 E2M3")):  # as k-bit states: the same kernels
        packed, state = mx_to_kbit(*mx_quantize(W, fmt))
        nbytes = packed.numel() + 4 * state.absmax.numel()  # the k-bit state reads float32 scales, not E8M0 bytes
        add(f"mini_llm {label} (k-bit, 32)", nbytes, lambda p=packed: p.clone(),
            lambda p, s=state: kernels.gemv(p, s, x))
    blocks = gguf_quantize(W, "q4_k")  # (N, K / 256 * 144) uint8, llama.cpp's bytes
    add("mini_llm Q4_K (GGUF bytes)", blocks.size, blocks.copy, lambda b: gemv_q4_k(b, (N, K), x))
    return out


def quantize_throughput(seed: int) -> float:
    """Parameters per second of quantize(W, 4, 'nf', 64) for a 4096x4096 float32 matrix (median of 3, after warm-up)."""
    W = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(seed))
    quantize(W, 4, "nf", 64)
    return W.numel() / median([time_call(lambda: quantize(W, 4, "nf", 64)) for _ in range(3)])


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the machine, the table and the quantization line; return the table's rows."""
    args = parse_args(argv)
    rows: list[dict[str, Any]] = []
    with threads(args.threads), torch.no_grad():
        info = machine_info()
        info["numba threads"] = numba.get_num_threads()
        info["SIMD kernels"] = "AVX-512" if kernels.HAS_AVX512 else "AVX2" if kernels.HAS_AVX2 else "none (portable)"
        info["int8 dot products"] = kernels.cpu_int8.DOT_PATH
        info["NUMBA_CPU_NAME"] = os.environ.get("NUMBA_CPU_NAME", "host")
        info["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "unset")
        print_machine(info)
        flops = matmul_flops()
        print(f"compute ceiling (torch.mm fp32 2048x2048, {args.threads} threads): {flops / 1e9:.0f} GFLOP/s")
        generator = torch.Generator().manual_seed(args.seed)
        floors: list[float] = []  # read bandwidth per shape, bytes/s
        for N, K in args.shapes:
            W = torch.randn(N, K, generator=generator) * 0.02  # (N, K)
            x = torch.randn(K, generator=generator)  # (K,)
            found = candidates(W, x, peers=not args.no_peers, warm=args.warm)
            exact = (W.double() @ x.double()).float()
            bursts = interleaved_bursts({name: call for name, (_, call, _) in found.items()}, args.rounds, args.burst)
            later = {name: [s for calls in per_round for s in calls[1:] or calls] for name, per_round in bursts.items()}
            fp32_ms = 1e3 * median(later[FP32])
            fp32_bandwidth = found[FP32][0] / (fp32_ms * 1e-3)  # the second floor: what torch.mv fp32 streams
            bandwidth = found[FLOOR][0] / median(later[FLOOR])
            floors.append(bandwidth)
            for name, (nbytes, _, result) in found.items():
                if name == FLOOR:
                    continue
                ms = 1e3 * median(later[name])
                rel_err = float((result.float() - exact).norm() / exact.norm())
                rows.append(
                    {
                        "shape": f"{N}x{K}",
                        "kernel": name,
                        "MiB read": nbytes / 2**20,
                        "ms (median)": ms,
                        "first call ms": 1e3 * median([calls[0] for calls in bursts[name]]),
                        "GB/s": nbytes / (ms * 1e-3) / 1e9,
                        "% of floor": 100 * (nbytes / bandwidth) / (ms * 1e-3),
                        "floor GB/s": bandwidth / 1e9,
                        "% of fp32 GB/s": 100 * nbytes / (ms * 1e-3) / fp32_bandwidth,
                        "speed-up vs torch fp32": fp32_ms / ms,
                        "relative error": rel_err,
                    }
                )
        cache = "warm cache (one weight copy per kernel)" if args.warm else (
            f"cold cache (weight copies > {COLD_BYTES // 2**20} MiB rotated)")
        print(
            f"{cache}, batch 1, {args.rounds} rounds of "
            f"{args.burst} calls per kernel, kernels in turn; relative error = ||y - W x|| / ||W x|| against float64"
        )
        print(markdown_table(rows, COLUMNS + ("relative error",)))
        bandwidth = median(floors)
        print(
            f"read floor: torch.sum of the cold float32 weight, {args.threads} threads, median of the shapes' "
            f"{', '.join(f'{b / 1e9:.1f}' for b in floors)}: {bandwidth / 1e9:.1f} GB/s"
        )
        if args.shapes == [(4096, 4096), (11008, 4096)] or 4096 in (k for _, k in args.shapes):
            rate = quantize_throughput(args.seed)
            print(f"quantize NF4 4096x4096 (blocks of 64): {rate / 1e6:.0f} M params/s")
        if args.csv is not None:
            header = {
                "command": " ".join([*(f"{k}={os.environ[k]}" for k in SIMD_SWITCHES if k in os.environ),
                                     "python benchmarks/bench_kbit_gemv.py",
                                     *(sys.argv[1:] if argv is None else argv)]),
                "machine": format_machine(info).removeprefix("machine: "),
                "read bandwidth GB/s": f"{bandwidth / 1e9:.2f}",
                "fp32 matmul GFLOP/s": f"{flops / 1e9:.1f}",
                "rounds": args.rounds,
                "burst": args.burst,
                **({"warm cache": "one weight copy per kernel"} if args.warm else
                   {"cold cache": f"weight copies > {COLD_BYTES // 2**20} MiB rotated"}),
            }
            write_csv(args.csv, rows, header)
            print(f"wrote {args.csv}")
    return rows


if __name__ == "__main__":
    main()
