"""The layout arguments of the kernel registry's ops, and the adapter that gives an implementation their signature.

dequantize, gemv and matmul (mini_llm.kernels.registry) take the same seven layout arguments ``packed, bits, shape,
code, absmax, offset, blocksize``, then one argument of their own (``dtype`` or ``x``) and ``backend``. Every
backend (reference, cpu, cuda) writes its implementation as ``fn(layout, arg, backend)`` on a ``Layout`` and
``layout_op`` turns it into the registry's positional signature. This module imports nothing of mini_llm, so that
mini_llm.kernels.reference (which mini_llm.kernels.checks and hence the registry import) can use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch


class Layout(NamedTuple):
    """The layout arguments of one call, with shape as a tuple of ints and blocksize resolved (an int: the number of
    elements, for None, one block over the whole tensor)."""

    packed: torch.Tensor
    bits: int
    shape: tuple[int, ...]
    code: torch.Tensor
    absmax: torch.Tensor
    offset: torch.Tensor | None
    blocksize: int

    @property
    def numel(self) -> int:
        """The number of values the packed codes stand for."""
        return math.prod(self.shape)


def layout_op(fn: Callable[[Layout, Any, str], Any]) -> Callable[..., Any]:
    """fn(layout, arg, backend) as an implementation with the registry's signature
    ``op(packed, bits, shape, code, absmax, offset, blocksize, arg, backend="auto")``."""

    def op(packed: torch.Tensor, bits: int, shape: tuple[int, ...], code: torch.Tensor, absmax: torch.Tensor,
           offset: torch.Tensor | None, blocksize: int | None, arg: Any, backend: str = "auto") -> Any:
        shape = tuple(int(d) for d in shape)
        block = math.prod(shape) if blocksize is None else int(blocksize)
        return fn(Layout(packed, bits, shape, code, absmax, offset, block), arg, backend)

    # fn's name and docstring, but not its signature (inspect.signature shows the registry's)
    op.__module__, op.__name__, op.__qualname__, op.__doc__ = fn.__module__, fn.__name__, fn.__qualname__, fn.__doc__
    return op
