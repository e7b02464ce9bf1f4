"""QuantState: everything needed to turn packed k-bit codes back into a tensor, saved as safetensors (no pickle).

Tensors: ``code`` (2**k,) float32 table, ``absmax`` (n_blocks,) float32, ``offset`` (n_blocks,) float32 when centered.
Metadata (strings): format tag, bits, blocksize ("tensor" for one block), shape, dtype, codebook name, and
centered ("true"/"false"): an offset tensor must be there exactly when it is "true". Files written before centering
was recorded have no such entry; they load only when that is unambiguous, that is when they hold an offset (a centered
state), since an uncentered file and a centered one whose offset was removed look the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from mini_llm.atomic import read_safetensors, write_safetensors
from mini_llm.kernels.checks import check_shape, check_state
from mini_llm.kernels.reference import n_blocks, packed_nbytes
from mini_llm.quant.codebooks import check_codebook_name

FORMAT = "mini_llm.quant/1"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}
TENSOR_NAMES = ("packed", "code", "absmax", "offset")  # what a file written by save_quantized holds
MAX_METADATA_CHARS = 200  # longer than any shape or number a state writes: refused before parsing


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
            "centered": "true" if self.offset is not None else "false",
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
        for name in ("bits", "blocksize", "shape", "dtype", "codebook"):
            if not isinstance(metadata.get(name), str):
                raise ValueError(f"malformed quantization state: metadata has no {name!r} entry")
        for name in ("code", "absmax"):
            if name not in tensors:
                raise ValueError(f"malformed quantization state: no {name!r} tensor")
        bits = _int_entry(metadata, "bits")
        blocksize = None if metadata["blocksize"] == "tensor" else _int_entry(metadata, "blocksize")
        dtype_name = metadata["dtype"]
        if dtype_name not in DTYPES:
            raise ValueError(f"state dtype must be one of {', '.join(DTYPES)}, got {dtype_name!r}")
        offset = tensors.get("offset")
        _check_centered(metadata.get("centered"), offset is not None)
        state = cls(
            _shape_entry(metadata), DTYPES[dtype_name], bits, blocksize, metadata["codebook"], tensors["code"],
            tensors["absmax"], offset,
        )
        state.validate()
        check_codebook_name(state.codebook, state.bits, state.code)
        return state


def _int_entry(metadata: dict[str, str], name: str) -> int:
    """The metadata entry `name` as a decimal integer (no sign, point or exponent); ValueError otherwise."""
    text = metadata[name]
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ValueError(f"metadata {name!r} must be a decimal integer, got {text[:MAX_METADATA_CHARS]!r}")
    return int(text)


def _shape_entry(metadata: dict[str, str]) -> tuple[int, ...]:
    """The metadata shape: a JSON list of positive integers such as "[64, 128]"; ValueError otherwise."""
    text = metadata["shape"]
    try:
        if len(text) > MAX_METADATA_CHARS:
            raise ValueError(f"longer than {MAX_METADATA_CHARS} characters")
        values = json.loads(text)
    except (ValueError, RecursionError) as error:
        message = f"metadata 'shape' must be a JSON list of positive integers, got {text[:80]!r}: {error}"
        raise ValueError(message) from error
    return check_shape(values, "metadata 'shape'")


def _check_centered(entry: str | None, has_offset: bool) -> None:
    """The 'centered' entry agrees with the offset tensor; a file without the entry needs an offset (see above)."""
    if entry is None and not has_offset:
        raise ValueError(
            "metadata has no 'centered' entry and the file no offset tensor: it may be a centered state whose offset "
            "was removed, so it is refused (files written by save_quantized since centering is recorded load)"
        )
    if entry not in (None, "true", "false"):
        raise ValueError(f"metadata 'centered' must be 'true' or 'false', got {entry[:MAX_METADATA_CHARS]!r}")
    if entry is not None and (entry == "true") != has_offset:
        raise ValueError(
            f"metadata 'centered' is {entry!r} but the file {'holds' if has_offset else 'has no'} offset tensor: "
            "a centered state needs its per-block offset, an uncentered one has none"
        )


def _check_vector(name: str, t: object, length: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or t.shape != (length,):
        raise ValueError(
            f"{name} must be a float32 tensor of shape ({length},), got "
            f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")


def save_quantized(path: str | Path, packed: torch.Tensor, state: QuantState) -> None:
    """Write packed codes and their state to one safetensors file (atomically, with the digest of its tensors)."""
    state.validate(packed)
    check_codebook_name(state.codebook, state.bits, state.code)  # what load_quantized will require
    write_safetensors(path, {"packed": packed.detach().cpu().contiguous(), **state.tensors()}, state.metadata())


def load_quantized(path: str | Path) -> tuple[torch.Tensor, QuantState]:
    """Read (packed, state) written by save_quantized, validated against each other; ValueError naming the file."""
    path = Path(path)
    tensors, metadata = read_safetensors(path, "a safetensors file written by save_quantized")
    try:
        unknown = sorted(set(tensors) - set(TENSOR_NAMES))
        if unknown or "packed" not in tensors:
            raise ValueError(f"tensors must be {', '.join(TENSOR_NAMES)} (offset when centered), got {sorted(tensors)}")
        packed = tensors.pop("packed")
        state = QuantState.from_parts(tensors, metadata)
        state.validate(packed)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return packed, state
