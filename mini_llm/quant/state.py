"""QuantState: everything needed to turn packed k-bit codes back into a tensor, saved as safetensors (no pickle).

Tensors: ``code`` (2**k,) float32 table, ``absmax`` (n_blocks,) float32, ``offset`` (n_blocks,) float32 when centered.
Metadata (strings): format tag, bits, blocksize ("tensor" for one block), shape, dtype, codebook name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mini_llm.kernels.checks import check_state
from mini_llm.kernels.reference import n_blocks, packed_nbytes

FORMAT = "mini_llm.quant/1"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@dataclass
class QuantState:
    """How a tensor was quantized: value = code[c] * absmax[block] (+ offset[block]) over the flattened tensor."""

    shape: tuple[int, ...]  # shape of the original tensor
    dtype: torch.dtype  # dtype of the original tensor (what dequantize returns)
    bits: int  # k: bits per code, 2..8
    blocksize: int | None  # consecutive flattened elements per absmax; None: one block for the whole tensor
    codebook: str  # name of the codebook, e.g. "nf4"
    code: torch.Tensor  # (2**k,) float32 table, sorted ascending
    absmax: torch.Tensor  # (n_blocks,) float32 per-block scale
    offset: torch.Tensor | None = None  # (n_blocks,) float32 per-block centre when quantized with centering

    @property
    def numel(self) -> int:
        """Number of quantized values."""
        return math.prod(self.shape)

    @property
    def effective_blocksize(self) -> int:
        """Elements per block (numel for a whole-tensor block)."""
        return self.numel if self.blocksize is None else self.blocksize

    @property
    def n_blocks(self) -> int:
        """Number of blocks (absmax values)."""
        return n_blocks(self.numel, self.effective_blocksize)

    @property
    def packed_nbytes(self) -> int:
        """Bytes of the densely packed codes."""
        return packed_nbytes(self.numel, self.bits)

    def validate(self, packed: torch.Tensor | None = None) -> None:
        """Raise ValueError when the state is inconsistent in itself or with packed."""
        check_state(self, packed)  # the layout: bits, blocksize, shape, vector lengths, packed bytes
        if self.dtype not in DTYPES.values():
            raise ValueError(f"state.dtype must be one of {', '.join(DTYPES)}, got {self.dtype}")
        _check_vector("state.code", self.code, 2**self.bits)
        if bool((self.code[1:] < self.code[:-1]).any()):
            raise ValueError("state.code must be sorted ascending")
        _check_vector("state.absmax", self.absmax, self.n_blocks)
        if bool((self.absmax < 0).any()):
            raise ValueError("state.absmax must be >= 0")
        if self.offset is not None:
            _check_vector("state.offset", self.offset, self.n_blocks)

    def metadata(self) -> dict[str, str]:
        """The non-tensor fields as safetensors metadata (str -> str)."""
        return {
            "format": FORMAT,
            "bits": str(self.bits),
            "blocksize": "tensor" if self.blocksize is None else str(self.blocksize),
            "shape": json.dumps(list(self.shape)),
            "dtype": str(self.dtype).removeprefix("torch."),
            "codebook": self.codebook,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name (code, absmax and offset when centered), contiguous on the CPU."""
        out = {"code": self.code, "absmax": self.absmax}
        if self.offset is not None:
            out["offset"] = self.offset
        return {name: t.detach().cpu().contiguous() for name, t in out.items()}

    @classmethod
    def from_parts(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> QuantState:
        """Rebuild and validate a state from tensors() and metadata(); ValueError on anything malformed."""
        if metadata.get("format") != FORMAT:
            raise ValueError(f"metadata format must be {FORMAT!r}, got {metadata.get('format')!r}")
        try:
            bits = int(metadata["bits"])
            blocksize = None if metadata["blocksize"] == "tensor" else int(metadata["blocksize"])
            shape = tuple(int(d) for d in json.loads(metadata["shape"]))
            dtype_name, codebook_name = metadata["dtype"], metadata["codebook"]
            code, absmax = tensors["code"], tensors["absmax"]
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"malformed quantization state: {error!r}") from error
        if dtype_name not in DTYPES:
            raise ValueError(f"state dtype must be one of {', '.join(DTYPES)}, got {dtype_name!r}")
        state = cls(shape, DTYPES[dtype_name], bits, blocksize, codebook_name, code, absmax, tensors.get("offset"))
        state.validate()
        return state


def _check_vector(name: str, t: object, length: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.shape != (length,):
        raise ValueError(
            f"{name} must be a float32 tensor of shape ({length},), got "
            f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")


def save_quantized(path: str | Path, packed: torch.Tensor, state: QuantState) -> None:
    """Write packed codes and their state to one safetensors file."""
    state.validate(packed)
    save_file({"packed": packed.detach().cpu().contiguous(), **state.tensors()}, str(path), metadata=state.metadata())


def load_quantized(path: str | Path) -> tuple[torch.Tensor, QuantState]:
    """Read (packed, state) written by save_quantized, validated against each other."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    if "packed" not in tensors:
        raise ValueError(f"{path} holds no 'packed' tensor")
    packed = tensors.pop("packed")
    state = QuantState.from_parts(tensors, metadata)
    state.validate(packed)
    return packed, state
