"""``mini-llm zoo train | list``, ``mini-llm sweep`` and ``mini-llm formats``: the model zoo, the k-bit sweep of the
scaling chapter, and the comparison of the newer formats (GPTQ, AWQ, microscaling, k-quants)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mini_llm.cli import argtypes
from mini_llm.cli.guard import Invocation, UsageError
from mini_llm.cli.parser import PROG, add_actions, add_command


def _add_selection(parser: argparse.ArgumentParser) -> None:
    """Flags shared by the zoo and sweep commands: which models, and where they are cached."""
    parser.add_argument("--preset-set", default="main",
                        help="main (the zoo of the book), eighth / quarter (four small sizes on 1/8 / 1/4 "
                             "of the budget, each with its own schedule: chapter 8) or test (seconds; default main)")
    parser.add_argument("--sizes", type=argtypes.comma_list(str), default=None,
                        help="comma-separated sizes such as 2x64,3x80 (default: all of the set; see zoo list)")
    parser.add_argument("--seeds", type=argtypes.comma_list(argtypes.seed_value), default=None,
                        help="comma-separated seeds for every chosen size (default: each size's planned seeds)")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR", default=None,
                        help="cache root; the zoo lives in <cache>/zoo/<set> (default: $MINI_LLM_CACHE, else "
                             "~/.cache/mini_llm)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``zoo train``, ``zoo list``, ``sweep`` and ``formats``."""
    zoo = add_command(commands, "zoo", "train or list the model zoo of the scaling experiment",
                      description="The model zoo: char-level GPTs of several sizes, one recipe.")
    actions = add_actions(zoo)
    train = add_command(actions, "train", "train the zoo (resumes; finished models are skipped)", run_zoo_train,
                        description="Train the zoo's models into the cache; run it again to resume.")
    _add_selection(train)
    train.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    listing = add_command(actions, "list", "the plan: sizes, parameters, tokens, estimated time, status",
                          run_zoo_list, description="Print the zoo plan and what is in the cache.")
    _add_selection(listing)

    sweep = add_command(
        commands, "sweep", "quantize every kept zoo checkpoint in many ways and measure it", run_sweep,
        description="k-bit sweep over the zoo's kept checkpoints: one CSV row per run, appended; rows already in "
                    "--out are skipped, so an interrupted sweep resumes.",
    )
    sweep.add_argument("--out", type=Path, metavar="FILE", required=True,
                       help="CSV file to append to, e.g. results/kbit_sweep.csv")
    _add_selection(sweep)
    lists = argtypes.comma_list
    sweep.add_argument("--fractions", type=lists(argtypes.fraction), default=None,
                       help="budget shares of the kept checkpoints, from 1/8,1/4,1/2,1 (default: all)")
    sweep.add_argument("--bits", type=lists(argtypes.sweep_bits), default=None,
                       help="k values from 2..8, and 16 for the baseline (default: 2,3,4,5,6,7,8,16)")
    sweep.add_argument("--codebooks", type=lists(argtypes.codebook), default=None,
                       help="from int,float,dynamic,quantile,nf (default: all)")
    sweep.add_argument("--blocksizes", type=lists(argtypes.blocksize), default=None,
                       help="'tensor' (one block) or powers of two in 32..4096 (default: tensor,1024,256,64)")
    sweep.add_argument("--outliers", type=lists(argtypes.yes_no), default=None,
                       help="no, yes or no,yes: keep outlier input dimensions in 16 bit (default: no,yes)")
    sweep.add_argument("--embedding", type=lists(argtypes.embedding), default=None,
                       help="quantized and/or 16bit: how the tied embedding matrix is stored (default: quantized)")
    sweep.add_argument("--eval-windows", type=argtypes.positive_int, default=None,
                       help="held-out windows of context length (default 64)")
    sweep.add_argument("--outlier-fraction", type=argtypes.probability, default=None,
                       help="share of input dimensions kept in 16 bit with outliers (default 0.02)")
    sweep.add_argument("--threads", type=argtypes.thread_count, default=None,
                       help="torch threads (default: every core)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run the sweep as Ray tasks (needs the cluster extra): on a new local cluster without "
                            "ADDRESS, else on the cluster at HOST:PORT (`ray start --head`) or ray://HOST:PORT")
    sweep.add_argument("--ray-workers", type=argtypes.positive_int, default=None, metavar="N",
                       help="with --ray: CPUs of the local cluster (default 2); with an ADDRESS, the most tasks "
                            "running at once (default: every CPU of the cluster)")

    formats = add_command(
        commands, "formats", "round-to-nearest, GPTQ, AWQ, MX/NVFP4 and k-quants on one bit axis", run_formats,
        description="Store the linear layers of the cached zoo models, all-MiniLM-L6-v2 and SmolLM2-135M in many "
                    "formats and measure held-out perplexity (sentence-embedding error for MiniLM) against exact "
                    "total bits. One CSV row per (model, format), appended; rows already in --out are skipped.",
    )
    formats.add_argument("--out", type=Path, metavar="FILE", required=True,
                         help="CSV file to append to, e.g. results/formats_compare.csv")
    formats.add_argument("--models", type=argtypes.comma_list(argtypes.formats_subject), default=None,
                         help="from zoo,minilm,smollm2 (default: all; zoo = every cached final checkpoint of main)")
    formats.add_argument("--formats", type=argtypes.comma_list(argtypes.weight_format), default=None,
                         help="format specs such as fp16,rtn-nf4-64,gptq-int3-64,awq-nf4-64,mxfp4,nvfp4,q4_k "
                              "(default: each model's list in mini_llm.scaling.formats)")
    formats.add_argument("--cache-dir", type=Path, metavar="DIR", default=None,
                         help="cache root of the zoo (default: $MINI_LLM_CACHE, else ~/.cache/mini_llm)")
    formats.add_argument("--threads", type=argtypes.thread_count, default=None, help="torch threads (default: torch's)")


def _jobs(args: argparse.Namespace) -> list:
    """The zoo jobs the selection flags ask for (ValueError for an unknown set or size)."""
    from mini_llm.scaling.zoo import plan

    return plan(args.preset_set, args.sizes, args.seeds)


def _show_plan(args: argparse.Namespace) -> list:
    """Print the chosen zoo models with their status in the cache; return their jobs."""
    from mini_llm.scaling.zoo import plan_table, zoo_dir

    jobs, where = _jobs(args), zoo_dir(args.cache_dir, args.preset_set)
    print(f"zoo {args.preset_set!r} in {where}")
    print(plan_table(jobs, args.cache_dir))
    return jobs


def run_zoo_list(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm zoo list``: the plan and the status of each model in the cache."""
    _show_plan(args)
    return 0


def run_zoo_train(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm zoo train``: print the plan, then train what is not done yet."""
    import torch

    from mini_llm.scaling.zoo import train_zoo
    from mini_llm.train import distributed

    world, _ = distributed.init_from_env(torch.device("cpu"))  # under torchrun: data-parallel over its processes
    jobs = _show_plan(args) if world.is_main else _jobs(args)
    start = time.perf_counter()
    invocation.on_interrupt = lambda: "run the same command again to resume from the last checkpoint"
    try:
        train_zoo(jobs, args.cache_dir, progress=not args.no_progress, log=print, threads=args.threads)
    finally:
        distributed.shutdown()
    if world.is_main:
        processes = f" on {world.size} processes" if world.size > 1 else ""
        print(f"zoo trained in {(time.perf_counter() - start) / 60:.1f} min{processes}; "
              f"next: {PROG} sweep --preset-set {args.preset_set} --out results/<name>.csv")
    return 0


def _check_ray(args: argparse.Namespace) -> None:
    """UsageError for Ray flags that cannot work: --ray-workers or --threads beside the wrong mode, no ray, a bad
    address; ConnectionError naming --ray for an address where no cluster answers."""
    if args.ray is None:
        if args.ray_workers is not None:
            raise UsageError("--ray-workers needs --ray: it sets how many Ray workers run the sweep")
        return
    if args.threads is not None:
        raise UsageError("--threads is for the serial sweep; with --ray each task runs on 1 thread (see --ray-workers)")
    from mini_llm.scaling import ray_sweep

    try:
        ray_sweep.require_ray()
    except ModuleNotFoundError as error:
        raise UsageError(f"--ray needs the optional dependency ray: pip install '{ray_sweep.EXTRA}'") from error
    if args.ray != ray_sweep.LOCAL:
        try:
            ray_sweep.check_reachable(args.ray)
        except ValueError as error:
            raise UsageError(f"--ray: {error}") from error
        except ConnectionError as error:
            raise ConnectionError(f"--ray: {error}") from error


def run_sweep(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm sweep``: quantize the kept checkpoints and append the rows to --out (on Ray with --ray)."""
    from mini_llm.scaling.sweep import EVAL_WINDOWS, OUTLIER_FRACTION, SweepGrid, run_sweep
    from mini_llm.scaling.zoo import zoo_checkpoints, zoo_dir

    _check_ray(args)
    axes = {"bits": args.bits, "codebooks": args.codebooks, "blocksizes": args.blocksizes,
            "outliers": args.outliers, "embeddings": args.embedding}
    grid = SweepGrid(**{name: value for name, value in axes.items() if value is not None})
    checkpoints = zoo_checkpoints(_jobs(args), args.cache_dir, args.fractions)
    if not checkpoints:
        raise UsageError(f"no kept checkpoints of the chosen models in {zoo_dir(args.cache_dir, args.preset_set)}; "
                         f"train them first with: {PROG} zoo train --preset-set {args.preset_set}"
                         + (f" --cache-dir {args.cache_dir}" if args.cache_dir else ""))
    start = time.perf_counter()
    invocation.on_interrupt = lambda: f"the rows so far are in {args.out}; run the same command again to continue"
    options = {"eval_windows": args.eval_windows or EVAL_WINDOWS,
               "outlier_fraction": args.outlier_fraction or OUTLIER_FRACTION, "progress": not args.no_progress,
               "log": print}
    if args.ray is None:
        written = run_sweep(args.out, checkpoints, grid, threads=args.threads, **options)
    else:
        from mini_llm.scaling.ray_sweep import run_ray_sweep

        try:
            written = run_ray_sweep(args.out, checkpoints, grid, address=args.ray, workers=args.ray_workers, **options)
        except ConnectionError as error:
            raise ConnectionError(f"--ray: {error}") from error
    print(f"wrote {written} rows to {args.out} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def run_formats(args: argparse.Namespace, invocation: Invocation) -> int:
    """``mini-llm formats``: append the (model, format) rows that --out lacks."""
    from mini_llm.helpers import threads
    from mini_llm.scaling.formats import SUBJECTS
    from mini_llm.scaling.formats import run_formats as run

    start = time.perf_counter()
    invocation.on_interrupt = lambda: f"the rows so far are in {args.out}; run the same command again to continue"
    with threads(args.threads, libraries=("torch",)):
        added = run(args.out, args.models or SUBJECTS, args.formats, args.cache_dir)
    print(f"wrote {added} rows to {args.out} in {(time.perf_counter() - start) / 60:.1f} min")
    return 0
