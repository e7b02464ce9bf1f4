"""Dense k-bit packing of codes (k = 2..8): 3-bit codes take 3 bits; element i starts at bit i*k, MSB first.

The bit layout is the kernels' (mini_llm.kernels.reference); packing runs its pure-torch definition on the codes'
device.
"""

from __future__ import annotations

import torch

from mini_llm.kernels.reference import pack_torch, packed_nbytes, unpack_torch
from mini_llm.quant.checks import check_bits


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes (n,) uint8 with values < 2**bits into (ceil(n*bits/8),) uint8."""
    bits = check_bits(bits)
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
        raise ValueError(f"codes must be a uint8 tensor, got {getattr(codes, 'dtype', type(codes).__name__)}")
    flat = codes.detach().reshape(-1)
    if flat.numel() and int(flat.max()) >= 2**bits:
        raise ValueError(f"codes must be < 2**bits = {2**bits}, got a maximum of {int(flat.max())}")
    return pack_torch(flat, bits)


def unpack_codes(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Unpack n codes (n,) uint8 from packed (ceil(n*bits/8),) uint8."""
    bits = check_bits(bits)
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        raise ValueError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
    if packed.numel() != packed_nbytes(n, bits):
        raise ValueError(f"packed must hold ceil(n*bits/8) = {packed_nbytes(n, bits)} bytes, got {packed.numel()}")
    return unpack_torch(packed.detach(), bits, n).to(torch.uint8)
