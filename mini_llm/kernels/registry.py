"""The kernel registry: one signature per k-bit operation, implementations registered per device type.

In the style of bitsandbytes' backends (ops declared once, one implementation per device), as a plain dict:
``op name -> {device type: implementation}``. The pure-torch reference of mini_llm.kernels.reference is registered
under DEFAULT and serves every device that has no entry of its own; mini_llm.kernels.cpu (Numba) registers "cpu" and
mini_llm.kernels.cuda (Triton) "cuda". ``call`` is the one entry point: it runs the op's argument checks
(mini_llm.kernels.checks, O(1) in the tensor sizes) before any Numba or Triton code, finds the device of the input
tensors and calls that device's entry with the arguments unchanged.

Operations and their one signature (every implementation takes exactly these arguments; ``blocksize`` None means one
block over the whole tensor; code, absmax and offset may sit on another device than the input, implementations move
them; ``backend`` names a variant of the device's implementation, "auto" its own choice, and "reference" makes
``call`` use the DEFAULT entry on any device):

- ``quantize(A, code, bits, blocksize, centered, backend) -> (packed, absmax, offset)``: A any floating tensor
  (flattened row-major, cast to float32), code (2**bits,) float32 sorted; packed (ceil(numel * bits / 8),) uint8,
  absmax (n_blocks,) float32, offset (n_blocks,) float32 or None unless centered; all on A's device.
- ``dequantize(packed, bits, shape, code, absmax, offset, blocksize, dtype, backend) -> Tensor``: shape ``shape``,
  dtype ``dtype``, on packed's device.
- ``gemv(packed, bits, shape, code, absmax, offset, blocksize, x, backend) -> y``: y = W @ x in float32 for the
  (N, K) weight, x (K,) -> (N,) or (B, K) -> (B, N) row after row (the batch-1 kernel); on x's device.
- ``matmul(...)``: the same arguments as gemv; the small-batch matmul (B, K) -> (B, N) that dequantizes each weight
  tile once for all B rows (tensor cores on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mini_llm.kernels import checks

DEFAULT = "default"  # the device key of the implementation that serves every device without its own
REFERENCE = "reference"  # the backend name that selects the DEFAULT entry on any device


@dataclass(frozen=True)
class Op:
    """One operation: its name, its signature (documentation), its argument check and which arguments fix the device."""

    name: str
    signature: str
    check: Callable[..., None]  # called with the op's arguments; raises ValueError/TypeError naming the argument
    device_args: tuple[int, ...]  # positions of the tensors that must share one device (the call's device)


LAYOUT = "packed, bits, shape, code, absmax, offset, blocksize"
OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("quantize", "quantize(A, code, bits, blocksize, centered, backend) -> (packed, absmax, offset)",
           checks.check_quantize_args, (0,)),
        Op("dequantize", f"dequantize({LAYOUT}, dtype, backend) -> Tensor", checks.check_dequantize_args, (0,)),
        Op("gemv", f"gemv({LAYOUT}, x, backend) -> y", checks.check_gemv_args, (0, 7)),
        Op("matmul", f"matmul({LAYOUT}, x, backend) -> y", checks.check_gemv_args, (0, 7)),
    )
}
IMPLEMENTATIONS: dict[str, dict[str, Callable[..., Any]]] = {name: {} for name in OPS}


def _op(name: str) -> Op:
    if name not in OPS:
        raise KeyError(f"no k-bit operation {name!r}; the registered operations are {', '.join(OPS)}")
    return OPS[name]


def register(op: str, device: str = DEFAULT) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register fn as op's implementation for a device type ("cpu", "cuda", ...) or DEFAULT."""
    _op(op)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        IMPLEMENTATIONS[op][device] = fn
        return fn

    return decorate


def registered(op: str) -> dict[str, Callable[..., Any]]:
    """A copy of op's table: device type (or DEFAULT) -> implementation."""
    return dict(IMPLEMENTATIONS[_op(op).name])


def lookup(op: str, device: str | torch.device, backend: str = "auto") -> Callable[..., Any]:
    """The implementation of op for a device type: its own entry, else DEFAULT (always DEFAULT for backend
    'reference'); NotImplementedError naming the device and the registered devices when there is neither."""
    table = IMPLEMENTATIONS[_op(op).name]
    kind = device.type if isinstance(device, torch.device) else device
    key = DEFAULT if backend == REFERENCE else kind
    if key in table:
        return table[key]
    if DEFAULT in table:
        return table[DEFAULT]
    raise NotImplementedError(
        f"no implementation of k-bit {op!r} for device {kind!r}; registered: {', '.join(table) or 'none'}"
    )


def device_of(op: str, *args: Any) -> str:
    """The one device type of op's input tensors; NotImplementedError when they sit on several devices."""
    kinds = sorted({args[i].device.type for i in _op(op).device_args})
    if len(kinds) > 1:
        names = ("A",) if op == "quantize" else ("packed", "x")
        raise NotImplementedError(f"{' and '.join(names)} must be on one device for k-bit {op!r}, got {kinds}")
    return kinds[0]


def call(op: str, *args: Any, backend: str = "auto") -> Any:
    """Check op's arguments, then run the implementation registered for their device (see the module docstring)."""
    spec = _op(op)
    spec.check(*args)
    if not isinstance(backend, str):
        raise ValueError(f"backend must be a string, got {type(backend).__name__}")
    return lookup(op, device_of(op, *args), backend)(*args, backend)
