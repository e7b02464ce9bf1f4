"""Every weight format of mini_llm under one short name, for comparing them on one bit axis.

A format spec names what a weight matrix is stored as and how its codes are chosen:

- ``fp16``: the 16-bit baseline (each weight rounded to float16);
- ``rtn-nf4-64``: round-to-nearest into a mini_llm codebook (int, float, dynamic, nf) with k = 2..8 and blocks of
  64 (a power of two in 32..4096, or ``tensor`` for one block per matrix), one float32 absmax per block;
- ``gptq-int3-64``, ``awq-nf4-64``: the same stored formats, with codes chosen by GPTQ, or by round-to-nearest after
  AWQ's per-input-channel scales were folded into the previous operation (see ``quant.calibrated``);
- ``mxfp4``, ``mxfp6_e2m3``, ``mxfp6_e3m2``, ``mxfp8_e4m3``, ``nvfp4``: the microscaling formats;
- ``q2_k`` .. ``q6_k``, ``q4_0``, ``q4_1``, ``q8_0``: llama.cpp's GGUF block formats.

``store_matrix`` gives the matrix a format stores, decoded to float, and its exact stored bits. Microscaling and
GGUF blocks run along the flattened (row-major) matrix, so a GGUF super-block of 256 may span two rows when a row is
shorter (llama.cpp would fall back to another type for such a tensor; the bits are the same).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from mini_llm.quant.accounting import tensor_bits
from mini_llm.quant.blockwise import dequantize, quantize
from mini_llm.quant.checks import check_bits, check_blocksize, check_weight
from mini_llm.quant.codebooks import CODEBOOKS
from mini_llm.quant.gguf_formats import GGUF_TYPES, gguf_dequantize, gguf_quantize, gguf_type
from mini_llm.quant.gptq import gptq_quantize
from mini_llm.quant.microscaling import BLOCKSIZES as MX_BLOCKSIZES
from mini_llm.quant.microscaling import ELEMENTS as MX_ELEMENTS
from mini_llm.quant.microscaling import FORMATS as MX_FORMATS
from mini_llm.quant.microscaling import mx_bits, mx_dequantize, mx_quantize

METHODS = ("fp16", "rtn", "gptq", "awq", "mx", "gguf")
CALIBRATED = ("gptq", "awq")
BLOCKWISE = re.compile(r"(rtn|gptq|awq)-([a-z]+?)([2-8])-(\d+|tensor)")
SPEC_HELP = ("fp16; rtn|gptq|awq-<codebook><k>-<blocksize> such as rtn-nf4-64 or gptq-int3-tensor (codebooks "
             f"{', '.join(c for c in CODEBOOKS if c != 'quantile')}); {', '.join(MX_FORMATS)}; "
             f"{', '.join(GGUF_TYPES)}")
GGUF_KBITS = {"q2_k": 2, "q3_k": 3, "q4_k": 4, "q5_k": 5, "q6_k": 6, "q4_0": 4, "q4_1": 4, "q8_0": 8}


@dataclass(frozen=True)
class WeightFormat:
    """A parsed format spec: the method that picks the codes, the stored format's name, element bits, block size."""

    spec: str  # as written, lower case
    method: str  # one of METHODS
    name: str = ""  # codebook (rtn, gptq, awq), microscaling format or GGUF type; '' for fp16
    bits: int = 16  # element bits k (for a GGUF type, the k in its name)
    blocksize: int | None = None  # values per scale of rtn / gptq / awq (None: one per matrix)

    @property
    def calibrated(self) -> bool:
        """True when the codes depend on calibration inputs (GPTQ, AWQ)."""
        return self.method in CALIBRATED

    def stored(self) -> WeightFormat:
        """The round-to-nearest format a GPTQ or AWQ matrix is stored in (the format itself otherwise)."""
        if not self.calibrated:
            return self
        return parse_format(f"rtn-{self.name}{self.bits}-{'tensor' if self.blocksize is None else self.blocksize}")


def parse_format(spec: object) -> WeightFormat:
    """The WeightFormat of a spec such as 'rtn-nf4-64', 'gptq-int3-64', 'mxfp4' or 'q4_k'; ValueError otherwise."""
    if not isinstance(spec, str):
        raise ValueError(f"format must be a string ({SPEC_HELP}), got {spec!r}")
    text = spec.strip().lower()
    if text == "fp16":
        return WeightFormat(text, "fp16")
    if text in MX_FORMATS:
        return WeightFormat(text, "mx", text, MX_ELEMENTS[text].bits, MX_BLOCKSIZES[text])
    if text in GGUF_TYPES:
        return WeightFormat(text, "gguf", text, GGUF_KBITS[text], gguf_type(text).block_size)
    match = BLOCKWISE.fullmatch(text)
    if match is None or match.group(2) not in CODEBOOKS or match.group(2) == "quantile":
        raise ValueError(f"format must be one of: {SPEC_HELP}; got {spec!r}")
    method, book, bits, block = match.groups()
    blocksize = None if block == "tensor" else check_blocksize(int(block))
    return WeightFormat(text, method, book, check_bits(int(bits)), blocksize)


def store_matrix(W: torch.Tensor, fmt: WeightFormat | str, X: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(the matrix format fmt stores for W (out, in), decoded to W's dtype and shape; its exact stored bits).

    GPTQ needs its calibration inputs X (..., in); AWQ matrices are stored as their round-to-nearest format (the
    scales are folded by quant.calibrated before). Bits: packed codes and every scale (and tensor scale) of the format.
    """
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    W = check_weight(W, "W")
    if W.ndim != 2:
        raise ValueError(f"W must be a matrix (out, in), got shape {tuple(W.shape)}")
    if fmt.method == "gptq":
        if X is None:
            raise ValueError(f"{fmt.spec} needs calibration inputs X (n, {W.shape[1]})")
        packed, state = gptq_quantize(W, X, fmt.bits, fmt.name, fmt.blocksize)
        return dequantize(packed, state).to(W.dtype), tensor_bits(state)
    fmt = fmt.stored()
    if fmt.method == "fp16":
        return W.detach().half().to(W.dtype), 16 * W.numel()
    if fmt.method == "rtn":
        packed, state = quantize(W.detach(), fmt.bits, fmt.name, fmt.blocksize)
        return dequantize(packed, state).to(W.dtype), tensor_bits(state)
    flat = W.detach().float().reshape(-1)  # (out * in,) blocks run along the flattened matrix
    if flat.numel() % fmt.blocksize:
        raise ValueError(f"W must hold a multiple of {fmt.spec}'s block size {fmt.blocksize} values, got "
                         f"{flat.numel()} (shape {tuple(W.shape)})")
    if fmt.method == "mx":
        codes, state = mx_quantize(flat, fmt.name)
        return mx_dequantize(codes, state).reshape(W.shape).to(W.dtype), mx_bits(flat.numel(), fmt.name)
    blocks = gguf_quantize(flat.reshape(-1, fmt.blocksize), fmt.name)  # (n_blocks, block_bytes) uint8
    values = gguf_dequantize(blocks, fmt.name, (flat.numel() // fmt.blocksize, fmt.blocksize))
    return values.reshape(W.shape).to(W.dtype), 8 * blocks.size
