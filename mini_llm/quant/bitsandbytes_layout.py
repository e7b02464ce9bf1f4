"""bitsandbytes' 4-bit layout: flattened row-major, first element in the HIGH nibble, float32 absmax per block.

mini_llm's 4-bit packing is this layout already, so conversion only reshapes and checks; with the NF4 table
(codebook 'nf', bits 4) the same bytes and absmax give the same numbers in both libraries.
"""

from __future__ import annotations

import torch

from mini_llm.quant.checks import check_blocksize
from mini_llm.quant.codebooks import codebook
from mini_llm.quant.state import DTYPES, QuantState

BNB_QUANT_TYPES = ("nf4",)


def to_bitsandbytes(packed: torch.Tensor, state: QuantState) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed (ceil(n/2), 1) uint8, absmax (n_blocks,) float32) as bitsandbytes.functional.quantize_4bit returns."""
    state.validate(packed)
    if state.bits != 4 or state.offset is not None or state.blocksize is None:
        raise ValueError(
            "to_bitsandbytes needs a 4-bit, uncentred, blockwise state, got "
            f"bits={state.bits}, centered={state.offset is not None}, blocksize={state.blocksize}"
        )
    return packed.reshape(-1, 1), state.absmax


def from_bitsandbytes(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...],
    blocksize: int = 64,
    quant_type: str = "nf4",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, QuantState]:
    """Wrap bitsandbytes' 4-bit tensors (packed uint8, float32 absmax) as mini_llm (packed, state)."""
    if quant_type not in BNB_QUANT_TYPES:
        raise ValueError(f"quant_type must be one of {', '.join(BNB_QUANT_TYPES)}, got {quant_type!r}")
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype}")
    blocksize = check_blocksize(blocksize)
    book = codebook("nf", 4)
    state = QuantState(
        shape=tuple(int(d) for d in shape),
        dtype=dtype,
        bits=4,
        blocksize=blocksize,
        codebook=book.name,
        code=book.tensor(),
        absmax=absmax.detach().cpu().float().reshape(-1).contiguous(),
    )
    flat = packed.detach().cpu().contiguous().reshape(-1)
    state.validate(flat)
    return flat, state
