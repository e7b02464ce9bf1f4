"""Data-parallel training on this CPU: 1 process with 2 threads against 2 DDP processes with 1 thread each.

The same GPT (default: the "small" char preset, 4 layers x 128, context 128, batch 32) trains on the same batches in
five ways: 1 process x 2 threads; 1 process x 1 thread; 1 process x 1 thread with 2 accumulation steps; 1 process x
1 thread at half the batch (the work of one rank); and 2 processes x 1 thread under torchrun (DistributedDataParallel,
gloo). The 2-rank run also times the all-reduce alone, of the gradient's bytes and of a 64 MiB buffer (the bus
bandwidth: 2 (N - 1) / N * bytes / seconds). The model of data-parallel scaling,
    step(N) = step_1(B / N) + 2 (N - 1) / N * gradient bytes / bandwidth,
is checked against the measured 2-process step. Each variant runs ``--rounds`` times, in turn (medians reported).

Run: .venv/bin/python benchmarks/bench_ddp.py [--csv results/ddp_cpu.csv] [--rounds 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from common import markdown_table, median, positive_int, print_machine, time_call

from mini_llm.nn import GPT, GPTConfig
from mini_llm.train import TokenBatches, Trainer, TrainerConfig, distributed

BIG_BUFFER = 16 * 2**20  # float32 values in the bandwidth probe: 64 MiB
VARIANTS = {  # name -> (processes, threads per process, batch divisor, accumulation steps)
    "1 process x 2 threads": (1, 2, 1, 1),
    "1 process x 1 thread": (1, 1, 1, 1),
    "1 process x 1 thread, 2 accumulation steps": (1, 1, 1, 2),
    "1 process x 1 thread, half batch": (1, 1, 2, 1),
    "2 processes x 1 thread (DDP, gloo)": (2, 1, 1, 1),
}
COLUMNS = ("variant", "step ms", "tokens/s", "speed-up vs 1 x 2", "all-reduce MB/step", "all-reduce ms")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: model size, batch, steps, rounds, the CSV; --worker is the part run inside each process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-layer", type=positive_int, default=4)
    parser.add_argument("--n-embd", type=positive_int, default=128)
    parser.add_argument("--n-head", type=positive_int, default=4)
    parser.add_argument("--vocab-size", type=positive_int, default=4620, help="People's Daily characters + <unk>")
    parser.add_argument("--block-size", type=positive_int, default=128)
    parser.add_argument("--batch-size", type=positive_int, default=32, help="sequences per step (all processes)")
    parser.add_argument("--warmup", type=positive_int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps per run (median reported)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="runs of every variant, in turn")
    parser.add_argument("--csv", type=Path, default=None, help="also write the table to this CSV file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # variant name: run it here
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)  # where the worker writes
    return parser.parse_args(argv)


def timed(fn, repeats: int, world: distributed.World) -> float:
    """Median seconds of fn over repeats, every rank starting together."""
    seconds = []
    for _ in range(repeats):
        distributed.barrier(world)
        seconds.append(time_call(fn))
    return median(seconds)


def worker(args: argparse.Namespace) -> None:
    """Train the variant ``args.worker`` in this process (one rank under torchrun); rank 0 writes its timings."""
    processes, threads, divisor, accum = VARIANTS[args.worker]
    world, _ = distributed.init_from_env(torch.device("cpu"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                       n_head=args.n_head, n_embd=args.n_embd)
    tokens = torch.randint(args.vocab_size, (200_000,), generator=torch.Generator().manual_seed(1))  # (N,)
    batch = args.batch_size // divisor
    trainer = Trainer(GPT(config), TrainerConfig(max_steps=10**6, batch_size=batch, grad_accum_steps=accum,
                                                 warmup_steps=0, eval_interval=0, progress=False),
                      TokenBatches(tokens, args.block_size))
    for _ in range(args.warmup):
        trainer.train_step()
    result: dict[str, Any] = {"step_s": timed(trainer.train_step, args.steps, world), "batch": batch,
                              "gradient_bytes": sum(p.numel() * p.element_size() for p in trainer.params)}
    if world.size > 1:
        import torch.distributed as dist

        gradients = torch.zeros(result["gradient_bytes"] // 4)  # float32, as DDP's buckets hold them
        big = torch.zeros(BIG_BUFFER)
        result["allreduce_s"] = timed(lambda: dist.all_reduce(gradients), args.steps, world)
        big_s = timed(lambda: dist.all_reduce(big), 3, world)
        result["bus_bandwidth_Bps"] = 2 * (world.size - 1) / world.size * big.numel() * 4 / big_s
    if world.is_main:
        args.json.write_text(json.dumps(result))
    distributed.shutdown()


def run_variant(name: str, args: argparse.Namespace, argv: Sequence[str], out: Path) -> dict[str, Any]:
    """Run one variant in fresh processes (torchrun for several) and return rank 0's timings."""
    processes = VARIANTS[name][0]
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [*launcher, __file__, *argv, "--worker", name, "--json", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Time every variant, print the table and the model check; return the table's rows."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return []
    forwarded = [a for i, a in enumerate(argv) if a != "--csv" and (i == 0 or argv[i - 1] != "--csv")]
    info = print_machine()
    print(f"GPT n_layer={args.n_layer}, n_embd={args.n_embd}, vocab_size={args.vocab_size}, "
          f"block_size={args.block_size}; batch {args.batch_size} sequences per step; medians of {args.rounds} rounds")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name in VARIANTS:
                runs[name].append(run_variant(name, args, forwarded, Path(tmp) / "result.json"))
    med = {name: {key: median([run[key] for run in results]) for key in results[0]}
           for name, results in runs.items()}
    tokens_per_s = {name: result["batch"] * args.block_size / result["step_s"]
                    for name, result in med.items()}  # the batch of a step, over all processes: B / divisor
    rows = []
    for name, result in med.items():
        rows.append({"variant": name, "step ms": 1e3 * result["step_s"], "tokens/s": tokens_per_s[name],
                     "speed-up vs 1 x 2": tokens_per_s[name] / tokens_per_s["1 process x 2 threads"],
                     "all-reduce MB/step": result["gradient_bytes"] / 1e6 if VARIANTS[name][0] > 1 else 0.0,
                     "all-reduce ms": 1e3 * result.get("allreduce_s", 0.0)})
    print(markdown_table(rows, COLUMNS))
    ddp = med["2 processes x 1 thread (DDP, gloo)"]
    bandwidth = ddp["bus_bandwidth_Bps"]
    predicted = med["1 process x 1 thread, half batch"]["step_s"] + 2 * (2 - 1) / 2 * ddp["gradient_bytes"] / bandwidth
    print(f"all-reduce bus bandwidth (64 MiB, 2 ranks): {bandwidth / 1e9:.2f} GB/s")
    print(f"model: step(2) = step_1(B/2) + (2-1)/2 * 2 * bytes / bandwidth = {1e3 * predicted:.1f} ms; "
          f"measured {1e3 * ddp['step_s']:.1f} ms (ratio {ddp['step_s'] / predicted:.2f})")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as file:
            fields = ["variant", "processes", "threads_per_process", "batch_per_process_step", "accumulation_steps",
                      "step_s", "tokens_per_s", "gradient_bytes", "allreduce_s", "bus_bandwidth_Bps", "cpu",
                      "logical_cores", "torch", "command"]
            writer = csv.DictWriter(file, fieldnames=fields)
            writer.writeheader()
            for name, result in med.items():
                processes, threads, divisor, accum = VARIANTS[name]
                writer.writerow({
                    "variant": name, "processes": processes, "threads_per_process": threads,
                    "batch_per_process_step": args.batch_size // divisor // processes, "accumulation_steps": accum,
                    "step_s": f"{result['step_s']:.6f}",
                    "tokens_per_s": f"{tokens_per_s[name]:.1f}",
                    "gradient_bytes": int(result["gradient_bytes"]),
                    "allreduce_s": f"{result.get('allreduce_s', 0.0):.6f}",
                    "bus_bandwidth_Bps": f"{result.get('bus_bandwidth_Bps', 0.0):.0f}",
                    "cpu": info["cpu"], "logical_cores": info["logical cores"], "torch": info["torch"],
                    "command": "python benchmarks/bench_ddp.py " + " ".join(argv),
                })
        print(f"wrote {args.csv}")
    return rows


if __name__ == "__main__":
    main()
