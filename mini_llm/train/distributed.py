"""Data-parallel training on torch.distributed: join torchrun's process group, split a batch among the ranks.

Launched as ``torchrun --nproc_per_node N -m mini_llm train ...`` every process sees RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/MASTER_PORT in its environment; ``init_from_env`` joins the group (gloo on the CPU, NCCL on CUDA) and
returns the process's ``World``. Without those variables it is a single process (``World()``), and every function
here is then a no-op, so one process trains exactly as it always has.

The data-parallel rule of ``Trainer``: every rank draws the same global batch of ``batch_size`` examples from the
same seeded generator and keeps its own ``batch_size / (world size * accumulation steps)``-row micro-batches; the
gradients are averaged over the ranks by DistributedDataParallel's all-reduce. Two ranks therefore compute what one
process computes with two accumulation steps (``TrainerConfig.grad_accum_steps``) on the same batches.

With ``TrainerConfig.parallel = "fsdp"`` the model is sharded instead (FSDP2's ``fully_shard``, one unit per block of
every ModuleList plus the root): each rank keeps 1/N of the parameters, gradients and optimizer state, gathers a
block's parameters just before using it, and reduce-scatters the gradients. Checkpoints hold full tensors either
way (``full_state``), so a run saved sharded resumes sharded and a file never depends on the sharding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mini_llm.helpers import check_int

PARALLEL = ("ddp", "fsdp")  # replicate the model on every rank, or shard it
TIMEOUT_ENV = "MINI_LLM_DIST_TIMEOUT"  # seconds a rank waits for the others before it gives up (default below)
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes: rank in [0, size)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0


def current() -> World:
    """The world of the process group this process has joined, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def timeout_seconds() -> int:
    """The collective timeout: $MINI_LLM_DIST_TIMEOUT seconds (an integer >= 1), else DEFAULT_TIMEOUT_S."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    value = int(text) if text.strip().lstrip("-").isdigit() else text
    return check_int(TIMEOUT_ENV, value, 1, allowed="a whole number of seconds >= 1")


def init_from_env(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes (gloo for the CPU, NCCL for CUDA); return (world, this rank's device).

    Without WORLD_SIZE (or with WORLD_SIZE=1) nothing is joined and the device is returned unchanged.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1 or dist.is_initialized():
        return current(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds()))
    return current(), device


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_split(batch_size: int, world: World, accum_steps: int) -> int:
    """Rows per micro-batch, batch_size / (world size * accum_steps); ValueError naming the settings otherwise."""
    parts = world.size * accum_steps
    if batch_size % parts:
        per = "processes (--nproc_per_node)" if world.size > 1 else "process"
        raise ValueError(
            f"batch_size = {batch_size} must be divisible by the world size x grad_accum_steps = {world.size} "
            f"x {accum_steps} = {parts}: with {world.size} {per}, use a batch_size that is a multiple of {parts}"
            + (f" (at most {batch_size} processes for this batch)" if parts > batch_size else "")
        )
    return batch_size // parts


def micro_batches(x: Any, y: torch.Tensor, world: World, accum_steps: int) -> list[tuple[Any, torch.Tensor]]:
    """This rank's accum_steps consecutive micro-batches of a global batch (x may be a dict of (B, ...) tensors)."""
    rows = check_split(len(y), world, accum_steps)
    first = world.rank * accum_steps
    parts = []
    for i in range(first, first + accum_steps):
        rows_i = slice(i * rows, (i + 1) * rows)
        x_i = {key: value[rows_i] for key, value in x.items()} if isinstance(x, dict) else x[rows_i]
        parts.append((x_i, y[rows_i]))  # (B / (W A), T), (B / (W A), T)
    return parts


def wrap(model: torch.nn.Module, world: World, parallel: str = "ddp") -> torch.nn.Module:
    """The model to run forward/backward through: DistributedDataParallel over the ranks, or the model itself.

    With parallel="fsdp" the model is sharded in place (call it before building the optimizer) and returned.
    """
    if world.size == 1:
        return model
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in [block for module in model.modules() if isinstance(module, torch.nn.ModuleList)
                      for block in module]:
            fully_shard(block)  # gathered just before the block runs, freed after it
        return fully_shard(model)  # the rest: embeddings, final norm, head
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [model_device.index] if (model_device := next(model.parameters()).device).type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@contextmanager
def no_sync(model: torch.nn.Module) -> Iterator[None]:
    """Backward without reducing the gradients over the ranks (accumulation steps before the last one)."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with model.no_sync() if hasattr(model, "no_sync") else nullcontext():
            yield


def full_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict with every sharded tensor (DTensor) gathered whole; every rank must call it."""
    from torch.distributed.tensor import DTensor

    return {key: value.full_tensor() if isinstance(value, DTensor) else value for key, value in state.items()}


def full_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state dict with its sharded tensors gathered whole; every rank must call it."""
    return {"state": {index: full_state(values) for index, values in state["state"].items()},
            "param_groups": state["param_groups"]}


def shard_like(full: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """Whole tensors of ``full`` sharded as the tensors of the same name in ``like`` are (unsharded ones kept)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    return {key: distribute_tensor(value.to(ref.device), ref.device_mesh, ref.placements)
            if isinstance(ref := like.get(key), DTensor) else value for key, value in full.items()}


def shard_optimizer_state(full: dict[str, Any], params: list[torch.Tensor]) -> dict[str, Any]:
    """A whole optimizer state dict with each parameter-shaped tensor sharded as its parameter is."""
    index_to_param = dict(zip([i for group in full["param_groups"] for i in group["params"]], params, strict=True))
    state = {}
    for index, values in full["state"].items():
        param = index_to_param[index]
        like = {key: param for key, value in values.items()
                if isinstance(value, torch.Tensor) and value.shape == param.shape}  # Adam's m and v, not its step
        state[index] = shard_like(values, like)
    return {"state": state, "param_groups": full["param_groups"]}


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a tensor over the ranks (all-reduce), or the tensor itself for one process."""
    if world.size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.size


def gather_objects(value: Any, world: World) -> list[Any]:
    """Every rank's value, in rank order (all ranks must call it)."""
    if world.size == 1:
        return [value]
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def barrier(world: World) -> None:
    """Wait until every rank gets here."""
    if world.size > 1:
        dist.barrier()


def rank_failed(world: World, step: int, error: BaseException) -> RuntimeError:
    """The one-line error of a rank whose step failed: in a process group, usually because another rank stopped."""
    text = str(error).strip()
    first_line = text.splitlines()[0][:300] if text else ""
    return RuntimeError(
        f"rank {world.rank} of {world.size} failed at step {step + 1} ({type(error).__name__}: {first_line}); "
        f"when a collective fails like this another rank has usually stopped: see its output (a rank that hangs "
        f"is given up after ${TIMEOUT_ENV} = {timeout_seconds()} s)"
    )
