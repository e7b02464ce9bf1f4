"""k-bit GEMV at batch 1 on a GPU: mini_llm's Triton kernels against torch bf16 and bitsandbytes' gemv_4bit.

For each weight shape N x K (default 8192x28672 and 28672x8192, bf16 weights of 470 MB, far above an H100/H200's
60 MB L2) every kernel computes y = W x for one bf16 vector; triton.testing.do_bench reports the median time with
the L2 cache flushed before each call. Kernels: torch.mv and torch.matmul on bf16 (cuBLAS); bitsandbytes'
gemv_4bit and matmul_4bit (NF4, absmax per 64 in float32) when installed; mini_llm.kernels.gemv on CUDA
tensors (Triton, fused dequantize-GEMV, absmax per 64 in float32) for k = 3 (NF3), 4 (NF4) and 8 (int8). The same
script measures the device-to-device copy bandwidth (read + write of a 2 GiB buffer): "% of copy BW" = achieved
GB/s / that bandwidth, and "x floor" = measured time / (bytes the kernel must read / that bandwidth).

Last, tokens/s of greedy batch-1 generation (KV cache) with a randomly initialised mini_llm GPT in bf16 and the
same model after quantize_model (NF4 and NF3, LM head kept in bf16).

On a machine without CUDA (or without triton) it prints why nothing was measured and exits with status 0.
Run: python benchmarks/bench_kbit_gemv_gpu.py [--shapes 8192x28672 28672x8192] [--bits 3 4 8] [--no-peers] [--no-gpt]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from common import markdown_table, shape_arg

COLUMNS = ("shape", "kernel", "MB read", "µs (median)", "GB/s", "% of copy BW", "x floor", "speed-up vs bf16 mv")
BOOKS = {3: ("nf", "NF3"), 4: ("nf", "NF4"), 5: ("nf", "NF5"), 6: ("nf", "NF6"), 7: ("nf", "NF7"), 8: ("int", "int8")}
MV = "torch.mv bf16"
DEVICE = "cuda"  # every tensor of the benchmark lives here


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: shapes, bits, peers, the GPT generation run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=shape_arg, nargs="+", default=[(8192, 28672), (28672, 8192)])
    parser.add_argument("--bits", type=int, nargs="+", default=[3, 4, 8], choices=sorted(BOOKS))
    parser.add_argument("--no-peers", action="store_true", help="leave out bitsandbytes")
    parser.add_argument("--no-gpt", action="store_true", help="leave out the tokens/s of a quantized GPT")
    parser.add_argument("--gpt", type=int, nargs=3, default=[24, 16, 2048], metavar=("LAYERS", "HEADS", "WIDTH"))
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens generated per timed run")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def unavailable() -> str | None:
    """Why this machine cannot run the benchmark, or None when it can."""
    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'mini-llm[gpu]')"
    return None


def machine() -> str:
    """One line: the GPU, its capability and the versions the numbers belong to."""
    import triton

    props = torch.cuda.get_device_properties(0)
    parts = [
        f"gpu {props.name}",
        f"sm_{props.major}{props.minor}",
        f"{props.total_memory / 2**30:.0f} GiB",
        f"{props.multi_processor_count} SMs",
        f"torch {torch.__version__}",
        f"cuda {torch.version.cuda}",
        f"triton {triton.__version__}",
        f"python {platform.python_version()}",
    ]
    if importlib.util.find_spec("bitsandbytes") is not None:
        import bitsandbytes

        parts.append(f"bitsandbytes {bitsandbytes.__version__}")
    return "machine: " + ", ".join(parts)


def bench_ms(fn: Callable[[], Any]) -> float:
    """Median milliseconds of fn() with the L2 cache flushed before every call (triton.testing.do_bench)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=25, rep=200, return_mode="median"))


def synchronize() -> None:
    """Wait for the GPU to finish its queued work."""
    if torch.device(DEVICE).type == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth() -> float:
    """Bytes per second (read + write) of a device-to-device copy of a 2 GiB buffer."""
    src = torch.ones(2**30, dtype=torch.int16, device=DEVICE)  # 2 GiB
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def candidates(W: torch.Tensor, x: torch.Tensor, bits: Sequence[int], peers: bool) -> dict[str, tuple[int, Any]]:
    """name -> (bytes each call must read, the call) for W (N, K) bf16 and x (K,) bf16 on the GPU."""
    from mini_llm import kernels
    from mini_llm.quant import quantize

    N, K = W.shape
    x_row = x.reshape(1, K)  # (1, K)
    found: dict[str, tuple[int, Any]] = {
        MV: (2 * N * K, lambda: torch.mv(W, x)),
        "torch.matmul bf16 (x W^T)": (2 * N * K, lambda: torch.matmul(x_row, W.t())),
    }
    if peers and importlib.util.find_spec("bitsandbytes") is not None:
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnb_functional

        nf4, nf4_state = bnb_functional.quantize_4bit(W, blocksize=64, quant_type="nf4")  # (N*K/2, 1) uint8
        nbytes = N * K // 2 + 4 * N * K // 64
        B = nf4.t()  # (1, N*K/2): the orientation bitsandbytes' Linear4bit passes
        found["bitsandbytes gemv_4bit NF4"] = (nbytes, lambda: bnb_functional.gemv_4bit(x_row, B, state=nf4_state))
        found["bitsandbytes matmul_4bit NF4"] = (nbytes, lambda: bnb.matmul_4bit(x_row, B, quant_state=nf4_state))
    W_cpu = W.float().cpu()  # quantize() runs the Numba kernels on the CPU
    for k in bits:
        book, label = BOOKS[k]
        packed, state = quantize(W_cpu, k, book, 64)
        packed = packed.to(DEVICE)
        state.code, state.absmax = state.code.to(DEVICE), state.absmax.to(DEVICE)
        nbytes = packed.numel() + 4 * state.absmax.numel()
        found[f"mini_llm Triton k={k} {label}"] = (nbytes, lambda p=packed, s=state: kernels.gemv(p, s, x))
    return found


def check(W: torch.Tensor, x: torch.Tensor, call: Callable[[], Any]) -> float:
    """Relative error ||y - W x|| / ||W x|| of one call against a float32 product."""
    exact = W.float() @ x.float()  # (N,)
    y = call().float().reshape(-1)
    return float((y - exact).norm() / exact.norm())


def gemv_rows(args: argparse.Namespace, bandwidth: float) -> list[dict[str, Any]]:
    """The GEMV table: one row per shape and kernel."""
    rows: list[dict[str, Any]] = []
    generator = torch.Generator(device=DEVICE).manual_seed(args.seed)
    for N, K in args.shapes:
        W = (torch.randn(N, K, generator=generator, device=DEVICE) * 0.02).bfloat16()  # (N, K)
        x = torch.randn(K, generator=generator, device=DEVICE).bfloat16()  # (K,)
        found = candidates(W, x, args.bits, peers=not args.no_peers)
        times = {name: bench_ms(call) for name, (_, call) in found.items()}
        for name, (nbytes, call) in found.items():
            ms = times[name]
            rows.append(
                {
                    "shape": f"{N}x{K}",
                    "kernel": name,
                    "MB read": nbytes / 1e6,
                    "µs (median)": 1e3 * ms,
                    "GB/s": nbytes / (ms * 1e-3) / 1e9,
                    "% of copy BW": 100 * nbytes / (ms * 1e-3) / bandwidth,
                    "x floor": ms * 1e-3 / (nbytes / bandwidth),
                    "speed-up vs bf16 mv": times[MV] / ms,
                    "relative error": check(W, x, call),
                }
            )
        del W, found
        if torch.device(DEVICE).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def tokens_per_second(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> float:
    """Greedy batch-1 tokens/s of generate() with the KV cache (after one untimed warm-up run)."""
    from mini_llm.generation import generate

    generate(model, prompt, 8, greedy=True)  # compiles and autotunes the kernels
    synchronize()
    start = time.perf_counter()
    generate(model, prompt, new_tokens, greedy=True)
    synchronize()
    return new_tokens / (time.perf_counter() - start)


def gpt_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """tokens/s of a random-init mini_llm GPT in bf16 and after quantize_model at 4 and 3 bits."""
    from mini_llm.nn import GPT, GPTConfig
    from mini_llm.quant import count_quantized, quantize_model

    layers, heads, width = args.gpt
    config = GPTConfig(vocab_size=32000, block_size=1024, n_layer=layers, n_head=heads, n_embd=width)
    torch.manual_seed(args.seed)
    prompt = torch.randint(0, config.vocab_size, (1, 16), device=DEVICE)
    rows = []
    for bits in (None, 4, 3):
        model = GPT(config).eval().to(device=DEVICE, dtype=torch.bfloat16)
        if bits is not None:
            quantize_model(model, bits, "nf", 64)
            assert count_quantized(model) == 4 * layers
        tensors = itertools.chain(model.parameters(), model.buffers())
        megabytes = sum(t.numel() * t.element_size() for t in tensors) / 1e6
        with torch.no_grad():
            rate = tokens_per_second(model, prompt, args.new_tokens)
        name = "bf16" if bits is None else f"NF{bits} (quantize_model)"
        rows.append({"model": name, "weights MB": megabytes, "tokens/s": rate})
        del model
        if torch.device(DEVICE).type == "cuda":
            torch.cuda.empty_cache()
    for row in rows:
        row["speed-up vs bf16"] = row["tokens/s"] / rows[0]["tokens/s"]
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark and print the machine, the copy bandwidth and the tables; return the GEMV rows."""
    args = parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"bench_kbit_gemv_gpu: {reason}; nothing was measured. Run it on a machine with an NVIDIA GPU and "
              "triton (pip install -e '.[gpu,peers]').")
        return []
    print(machine())
    bandwidth = copy_bandwidth()
    print(f"device-to-device copy bandwidth (read + write, 2 GiB): {bandwidth / 1e9:,.0f} GB/s")
    rows = gemv_rows(args, bandwidth)
    print("batch 1, bf16 x, L2 flushed before every call (triton.testing.do_bench), medians; "
          "relative error against a float32 product")
    print(markdown_table(rows, COLUMNS + ("relative error",)))
    if not args.no_gpt:
        layers, heads, width = args.gpt
        print(f"\ngreedy generation, batch 1, KV cache, 16-token prompt + {args.new_tokens} tokens; mini_llm GPT "
              f"n_layer={layers} n_head={heads} n_embd={width} vocab 32000, random init, bf16")
        gpt = gpt_rows(args)
        print(markdown_table(gpt, ("model", "weights MB", "tokens/s", "speed-up vs bf16")))
    return rows


if __name__ == "__main__":
    main()
