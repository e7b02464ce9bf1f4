"""Microscaling formats: OCP MX v1.0 (MXFP4, MXFP6, MXFP8) and NVIDIA's NVFP4, encoded and decoded in torch.

API (the ``quantize -> (packed, state)`` / ``dequantize(packed, state)`` pattern of mini_llm.quant.blockwise):

    codes, state = mx_quantize(W, "mxfp4")     # codes: uint8, W's shape, one element code per byte (unpacked)
    W_hat = mx_dequantize(codes, state)        # W's shape and dtype, on codes' device
    mx_bits(W.numel(), "mxfp4")                # exact total bits: 4.25 per element for MXFP4
    packed, qstate = mx_to_kbit(codes, state)  # MXFP4/MXFP6 as a k-bit QuantState: every mini_llm kernel, exactly

The k-bit state stores each E8M0 scale as a float32 absmax, so count an MX tensor's bits with mx_bits, not
quant.accounting.tensor_bits (which would say 4 + 32/32 for MXFP4).

Formats (FORMATS): mxfp4 (E2M1), mxfp6_e3m2, mxfp6_e2m3, mxfp8_e4m3 (OFP8 E4M3FN) and nvfp4 (E2M1). An element code
is its bit pattern: sign in bit k-1, then the exponent field, then the mantissa field. Each value table is derived
from that layout (exponent bias 2**(e-1) - 1, subnormals when the exponent field is 0, no Inf; E4M3FN's one NaN
magnitude 0b1111_111 is the only special code). Rounding to an element format is round-to-nearest, ties to even,
saturating to +-max; the sign of x is kept, so a negative value that rounds to zero becomes -0.

MX (OCP Microscaling Formats Specification v1.0, 2023, section 6.3): blocks of 32 consecutive elements along the last
dimension share one E8M0 scale 2**(b - 127) (b in 0..254; 255 is NaN). shared_exp = floor(log2(max|x| in block))
- emax_elem (emax_elem = the exponent of the element format's largest normal: E2M1 2, E3M2 4, E2M3 2, E4M3 8),
clamped to the E8M0 range [-127, 127]; elements = round(x / 2**shared_exp). An all-zero block gets b = 0 (scale
2**-127), the smallest scale: floor(log2 0) = -inf clamped to the E8M0 range, so no special case and never the
NaN byte; its elements are 0 whatever the scale. ``state.scales`` holds the bytes b. Note that E4M3's max 448 is
1.75 * 2**8, so this scale rule saturates MXFP8 blocks whose max has a significand in [1.75, 2) (about 1 in 6 Gaussian
blocks of 32), where E2M3's 7.5 = 1.875 * 2**2 saturates fewer: on Gaussian weights MXFP8 E4M3 is then no more
accurate than MXFP6 E2M3 (both carry 3 mantissa bits).

NVFP4 (NVIDIA, "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference", 2025, and Transformer
Engine's NVFP4 recipe): E2M1 elements, one E4M3 block scale per 16, one fp32 tensor scale.
s_t = fp32(max|W| / (448 * 6)); s_b = round_E4M3(max|block| / 6 / s_t); elements = round_E2M1(x / (s_b * s_t));
value = element * s_b * s_t. ``state.scales`` holds the E4M3 codes of s_b and ``state.tensor_scale`` s_t. A block
whose s_b rounds to 0 (max|block| below ~2e-6 of max|W|) is stored as zeros; an all-zero tensor gets s_t = 1.

Arithmetic is float64 (every scaling by a power of two, and the products s_b * s_t, are exact there), so results
are deterministic across devices. The last dimension must be a multiple of the block (32, or 16 for NVFP4): nothing
is padded. The block is fixed by the format: blocksize=None takes it, any other value than the format's is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mini_llm.helpers import check_choice, check_int
from mini_llm.quant.checks import check_float32_range, check_weight
from mini_llm.quant.codebooks import codebook
from mini_llm.quant.packing import pack_codes
from mini_llm.quant.state import QuantState


@dataclass(frozen=True)
class ElementFormat:
    """A sign-exponent-mantissa element type: bias 2**(e-1) - 1, subnormals at exponent 0, no Inf."""

    name: str  # e.g. "e2m1"
    exponent_bits: int
    mantissa_bits: int
    has_nan: bool = False  # OFP8 E4M3FN: the all-ones magnitude is NaN, everything else finite

    @property
    def bits(self) -> int:
        """Bits per element code, sign included."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        """Exponent bias 2**(e-1) - 1."""
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def emax(self) -> int:
        """Exponent of the largest normal (the top exponent field is normal in every format here)."""
        return 2**self.exponent_bits - 1 - self.bias

    def magnitudes(self) -> np.ndarray:
        """Finite non-negative values by magnitude code 0, 1, ... (ascending), decoded from the bit layout; float64."""
        n = 2 ** (self.exponent_bits + self.mantissa_bits) - (1 if self.has_nan else 0)
        values = []
        for magnitude in range(n):
            exponent = magnitude >> self.mantissa_bits
            fraction = (magnitude & (2**self.mantissa_bits - 1)) / 2**self.mantissa_bits
            if exponent == 0:  # subnormal: no implicit leading 1, exponent 1 - bias
                values.append(fraction * 2.0 ** (1 - self.bias))
            else:
                values.append((1.0 + fraction) * 2.0 ** (exponent - self.bias))
        return np.array(values)

    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self.magnitudes()[-1])

    def table(self) -> np.ndarray:
        """Value of every code 0 .. 2**bits - 1 (sign bit on top; NaN for a NaN pattern); float64."""
        magnitudes = self.magnitudes()
        half = np.full(2 ** (self.bits - 1), np.nan)
        half[: magnitudes.size] = magnitudes
        return np.concatenate([half, -half])


E2M1 = ElementFormat("e2m1", 2, 1)
E3M2 = ElementFormat("e3m2", 3, 2)
E2M3 = ElementFormat("e2m3", 2, 3)
E4M3 = ElementFormat("e4m3", 4, 3, has_nan=True)

ELEMENTS = {"mxfp4": E2M1, "mxfp6_e3m2": E3M2, "mxfp6_e2m3": E2M3, "mxfp8_e4m3": E4M3, "nvfp4": E2M1}
FORMATS = tuple(ELEMENTS)
BLOCKSIZES = {name: 16 if name == "nvfp4" else 32 for name in FORMATS}
E8M0_BIAS = 127  # E8M0 byte b stands for 2**(b - 127); 255 is NaN
NVFP4_TENSOR_DIVISOR = 448.0 * 6.0  # E4M3 max * E2M1 max
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_format(fmt: object) -> str:
    """fmt as one of FORMATS, or a ValueError listing them."""
    return check_choice("fmt", fmt, FORMATS)


def check_mx_blocksize(blocksize: object, fmt: str) -> int:
    """The format's block (32 for MX, 16 for NVFP4) when blocksize is None or that value; ValueError otherwise."""
    block = BLOCKSIZES[fmt]
    if blocksize is None:
        return block
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize != block:
        why = "the MX specification fixes the block at 32" if block == 32 else "NVFP4 scales blocks of 16"
        raise ValueError(f"blocksize must be {block} (or None) for {fmt} ({why}), got {blocksize!r}")
    return block


def round_to_element(x: torch.Tensor, element: ElementFormat) -> torch.Tensor:
    """Codes (uint8, x's shape) of x rounded to nearest, ties to even, saturating at +-element.max."""
    magnitudes = torch.tensor(element.magnitudes(), dtype=torch.float64, device=x.device)  # (m,) ascending
    mids = (magnitudes[1:] + magnitudes[:-1]) / 2  # (m-1,) exact: the values have few significant bits
    a = x.double().abs()
    code = torch.bucketize(a, mids)  # how many midpoints lie below a: the lower candidate; m-1 above every midpoint
    tie = (code < mids.numel()) & (a == mids[code.clamp(max=mids.numel() - 1)])
    code = torch.where(tie & (code % 2 == 1), code + 1, code)  # a tie goes to the even code (even mantissa)
    sign = torch.signbit(x).to(torch.int64) << (element.bits - 1)
    return (code | sign).to(torch.uint8)


def decode_element(codes: torch.Tensor, element: ElementFormat) -> torch.Tensor:
    """float64 values of element codes (any shape, uint8)."""
    table = torch.tensor(element.table(), dtype=torch.float64, device=codes.device)
    return table[codes.long()]


def decode_e8m0(scales: torch.Tensor) -> torch.Tensor:
    """float64 values 2**(b - 127) of E8M0 bytes (255 -> NaN)."""
    b = scales.long()
    return torch.where(b == 255, torch.nan, torch.exp2((b - E8M0_BIAS).double()))


@dataclass(frozen=True)
class MXState:
    """How a tensor was microscaled: value = element(code) * block scale (* tensor_scale for NVFP4)."""

    fmt: str  # one of FORMATS
    shape: tuple[int, ...]  # shape of the original tensor
    dtype: torch.dtype  # dtype of the original tensor (what mx_dequantize returns)
    scales: torch.Tensor  # (*shape[:-1], shape[-1] // blocksize) uint8: E8M0 bytes (MX) or E4M3 codes (NVFP4)
    tensor_scale: float | None = None  # NVFP4's fp32 tensor scale s_t (a float32 value); None for MX

    @property
    def element(self) -> ElementFormat:
        """The element format."""
        return ELEMENTS[self.fmt]

    @property
    def blocksize(self) -> int:
        """Elements per block scale along the last dimension."""
        return BLOCKSIZES[self.fmt]

    @property
    def numel(self) -> int:
        """Number of quantized values."""
        return math.prod(self.shape)

    def validate(self, codes: object = None) -> None:
        """Raise ValueError when the state is inconsistent in itself or with codes."""
        check_format(self.fmt)
        if (
            not isinstance(self.shape, tuple) or len(self.shape) not in (1, 2)
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.shape)
        ):
            raise ValueError(f"state.shape must be a tuple of 1 or 2 positive ints, got {self.shape!r}")
        if self.shape[-1] % self.blocksize:
            raise ValueError(f"state.shape[-1] must be a multiple of {self.blocksize}, got {self.shape!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"state.dtype must be one of {', '.join(map(str, DTYPES))}, got {self.dtype}")
        scale_shape = (*self.shape[:-1], self.shape[-1] // self.blocksize)
        _check_uint8("state.scales", self.scales, scale_shape)
        if self.fmt == "nvfp4":
            s = self.tensor_scale
            if isinstance(s, bool) or not isinstance(s, float) or not (math.isfinite(s) and s > 0):
                raise ValueError(f"state.tensor_scale must be a positive finite float for nvfp4, got {s!r}")
            if bool((self.scales > 0x7E).any()):
                raise ValueError("state.scales must be non-negative finite E4M3 codes (0..0x7E) for nvfp4")
        elif self.tensor_scale is not None:
            raise ValueError(f"state.tensor_scale must be None for {self.fmt}, got {self.tensor_scale!r}")
        if codes is not None:
            _check_uint8("codes", codes, self.shape)
            if self.element.bits < 8 and bool((codes >= 2**self.element.bits).any()):
                raise ValueError(f"codes must be {self.element.bits}-bit element codes (< {2**self.element.bits})")
            if codes.device != self.scales.device:
                raise ValueError(f"codes and state.scales must be on one device, got {codes.device} and "
                                 f"{self.scales.device}")


def _check_uint8(name: str, t: object, shape: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or tuple(t.shape) != shape:
        raise ValueError(
            f"{name} must be a uint8 tensor of shape {shape}, got "
            f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
        )


def _check_input(W: object, block: int) -> torch.Tensor:
    """W as a finite, non-empty 1-D or 2-D float tensor whose last dimension is a multiple of block."""
    W = check_float32_range(check_weight(W))
    if W.ndim not in (1, 2):
        raise ValueError(f"W must be a 1-D or 2-D tensor, got shape {tuple(W.shape)}")
    if W.shape[-1] % block:
        raise ValueError(
            f"W's last dimension must be a multiple of the block size {block} (nothing is padded), "
            f"got shape {tuple(W.shape)}"
        )
    return W


def mx_quantize(W: torch.Tensor, fmt: str = "mxfp4", blocksize: int | None = None) -> tuple[torch.Tensor, MXState]:
    """Quantize W to a microscaling format: codes (uint8, W's shape, one per element) and an MXState."""
    fmt = check_format(fmt)
    block = check_mx_blocksize(blocksize, fmt)
    W = _check_input(W, block)
    x = W.detach().double().reshape(*W.shape[:-1], W.shape[-1] // block, block)  # (..., n_blocks, block)
    amax = x.abs().amax(dim=-1)  # (..., n_blocks)
    if fmt == "nvfp4":
        codes, scales, tensor_scale = _nvfp4_encode(x, amax)
    else:
        element = ELEMENTS[fmt]
        _, exponent = torch.frexp(amax)  # amax = m * 2**exponent, m in [0.5, 1): floor(log2 amax) = exponent - 1
        shared = torch.where(amax > 0, exponent.long() - 1 - element.emax, -E8M0_BIAS).clamp(-E8M0_BIAS, E8M0_BIAS)
        codes = round_to_element(x / torch.exp2(shared.double()).unsqueeze(-1), element)  # exact power-of-two scaling
        scales, tensor_scale = (shared + E8M0_BIAS).to(torch.uint8), None
    state = MXState(fmt, tuple(W.shape), W.dtype, scales, tensor_scale)
    return codes.reshape(W.shape), state


def _nvfp4_encode(x: torch.Tensor, amax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """NVIDIA's recipe on blocks x (..., n_blocks, 16): (element codes, E4M3 block-scale codes, fp32 tensor scale)."""
    tensor_scale = float(np.float32(float(amax.max()) / NVFP4_TENSOR_DIVISOR))
    if tensor_scale == 0.0:  # an all-zero tensor (or one whose scale underflows float32): every block flushes
        tensor_scale = 1.0
    scale_codes = round_to_element(amax / 6.0 / tensor_scale, E4M3)  # (..., n_blocks)
    block_scale = decode_element(scale_codes, E4M3) * tensor_scale  # exact: 4 x 24 significant bits
    safe = torch.where(block_scale > 0, block_scale, 1.0).unsqueeze(-1)
    codes = round_to_element(x / safe, E2M1)
    codes = torch.where((block_scale > 0).unsqueeze(-1), codes, torch.zeros_like(codes))  # flushed blocks: +0
    return codes, scale_codes, tensor_scale


def mx_dequantize(codes: torch.Tensor, state: MXState) -> torch.Tensor:
    """The tensor (state.shape, state.dtype) that codes stand for, on codes' device; ValueError on mismatch."""
    if not isinstance(state, MXState):
        raise ValueError(f"state must be an MXState, got {type(state).__name__}")
    state.validate(codes)
    block = state.blocksize
    values = decode_element(codes, state.element).reshape(*state.shape[:-1], -1, block)  # (..., n_blocks, block)
    if state.fmt == "nvfp4":
        scale = decode_element(state.scales, E4M3) * state.tensor_scale  # (..., n_blocks) exact in float64
    else:
        scale = decode_e8m0(state.scales)
    return (values * scale.unsqueeze(-1)).reshape(state.shape).to(state.dtype)


def mx_bits(numel: int, fmt: str) -> int:
    """Exact total bits of numel elements in fmt: k per element + 8 per block (+ 32 per tensor for NVFP4)."""
    fmt = check_format(fmt)
    block = BLOCKSIZES[fmt]
    numel = check_int("numel", numel, 1)
    if numel % block:
        raise ValueError(f"numel must be a multiple of the {fmt} block size {block}, got {numel}")
    bits = numel * ELEMENTS[fmt].bits + 8 * (numel // block)
    return bits + 32 if fmt == "nvfp4" else bits


KBIT_FORMATS = ("mxfp4", "mxfp6_e3m2", "mxfp6_e2m3")  # no NaN code and a power-of-two scale: exact as k-bit states


def mx_to_kbit(codes: torch.Tensor, state: MXState) -> tuple[torch.Tensor, QuantState]:
    """MXFP4/MXFP6 as mini_llm's k-bit (packed, QuantState), decoding to the same values bit for bit.

    The element codes become ranks in the float codebook of the same layout (float4_e2m1, float6_e3m2,
    float6_e2m3: the values divided by their max), blocks of 32 along the last dimension are the state's flattened
    blocks of 32, and absmax = max_elem * 2**(b - 127) in float32, so code * absmax is exact (checked for every
    code and scale byte in the tests). The registry's dequantize and gemv kernels (AVX-512 on the CPU, Triton on
    CUDA) and save_quantized then take MX tensors as they are. mxfp8_e4m3 (NaN codes: no sorted table) and nvfp4
    (s_b * s_t needs 28 significant bits, not a float32) are refused.
    """
    if not isinstance(state, MXState):
        raise ValueError(f"state must be an MXState, got {type(state).__name__}")
    state.validate(codes)
    check_choice("state.fmt (for a k-bit state)", state.fmt, KBIT_FORMATS)
    element = state.element
    book = codebook("float", element.bits, exponent_bits=element.exponent_bits)
    order = np.argsort(element.table(), kind="stable")  # codes by ascending value: the codebook's order
    rank = np.empty(order.size, dtype=np.uint8)
    rank[order] = np.arange(order.size)
    ranks = torch.from_numpy(rank).to(codes.device)[codes.long()]  # (shape) uint8 indices into book's table
    absmax = (element.max * decode_e8m0(state.scales)).float().reshape(-1)  # (n_blocks,) exact powers of two
    if not bool(torch.isfinite(absmax).all()):
        raise ValueError(f"state.scales must be E8M0 bytes whose scale times {element.max} is a finite float32")
    qstate = QuantState(
        shape=state.shape, dtype=state.dtype, bits=element.bits, blocksize=state.blocksize, codebook=book.name,
        code=book.tensor().to(codes.device), absmax=absmax,
    )
    return pack_codes(ranks.reshape(-1), element.bits), qstate
