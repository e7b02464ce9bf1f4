"""k-bit codebooks (data types): 2**k sorted values in [-1, 1] that absmax-scaled numbers are rounded to.

Dettmers & Zettlemoyer (2023) compare these families; each is built here from its generating formula:

- ``int``: symmetric integer, code c stands for (c - 2**(k-1)) / (2**(k-1) - 1); code 0 lies below -1 and is never
  chosen under absmax scaling, so 2**k - 1 values are used (as in bitsandbytes' linear map).
- ``float``: a sign bit, e exponent bits and m = k - 1 - e mantissa bits (E2M1 at 4 bits), IEEE-style bias
  2**(e-1) - 1 and subnormals, no Inf/NaN codes, divided by the largest value; +0 and -0 are both kept.
- ``dynamic``: the dynamic tree / dynamic exponent type of bitsandbytes' create_dynamic_map (signed).
- ``quantile``: the midpoints of 2**k + 1 empirical quantiles of the data being quantized.
- ``nf``: NormalFloat, quantiles of N(0, 1) with an exact zero (2**(k-1) positive, 2**(k-1) - 1 negative values);
  at k = 4 the table is bitsandbytes' NF4 constant, bit for bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

from mini_llm.quant.checks import check_bits

CODEBOOKS = ("int", "float", "dynamic", "quantile", "nf")

# bitsandbytes' NF4 table (csrc and functional.get_4bit_type('nf4')), as float32.
NF4_BITSANDBYTES = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)

# Exponent bits of the default float type per k (E1M0, E1M1, E2M1, E2M2, E3M2, E3M3, E4M3).
DEFAULT_EXPONENT_BITS = {2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4}


@dataclass(frozen=True)
class Codebook:
    """A named k-bit data type: code c (0 .. 2**k - 1) stands for values[c]; values are sorted ascending."""

    name: str  # family and parameters, e.g. "nf4", "float4_e2m1", "int8", "quantile3"
    bits: int  # k: bits per code
    values: np.ndarray  # (2**k,) float32, sorted ascending

    def __post_init__(self) -> None:
        check_bits(self.bits)
        values = np.asarray(self.values, dtype=np.float32)
        if values.shape != (2**self.bits,):
            raise ValueError(f"values must have 2**bits = {2**self.bits} entries, got shape {values.shape}")
        if not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
            raise ValueError(f"values must be finite and sorted ascending, got {values.tolist()}")
        values.setflags(write=False)
        object.__setattr__(self, "values", values)

    def tensor(self) -> torch.Tensor:
        """The values as a float32 torch tensor (2**k,)."""
        return torch.from_numpy(self.values.copy())


def int_values(bits: int) -> np.ndarray:
    """Symmetric integer values (c - 2**(k-1)) / (2**(k-1) - 1) for c = 0 .. 2**k - 1, float64."""
    half = 2 ** (check_bits(bits) - 1)
    return (np.arange(2**bits, dtype=np.float64) - half) / (half - 1)


def float_values(bits: int, exponent_bits: int) -> np.ndarray:
    """Every bit pattern of a signed ExMy float (x = k-1-y), decoded and divided by the largest, sorted; float64."""
    check_bits(bits)
    if isinstance(exponent_bits, bool) or not isinstance(exponent_bits, int) or not 1 <= exponent_bits <= bits - 1:
        raise ValueError(f"exponent_bits must be an integer in 1..{bits - 1} for bits={bits}, got {exponent_bits!r}")
    mantissa_bits = bits - 1 - exponent_bits
    bias = 2 ** (exponent_bits - 1) - 1
    values = []
    for pattern in range(2**bits):
        sign = -1.0 if pattern >> (bits - 1) else 1.0
        exponent = (pattern >> mantissa_bits) & (2**exponent_bits - 1)
        mantissa = pattern & (2**mantissa_bits - 1)
        fraction = mantissa / 2**mantissa_bits
        if exponent == 0:  # subnormal: no implicit leading 1
            values.append(sign * fraction * 2.0 ** (1 - bias))
        else:
            values.append(sign * (1.0 + fraction) * 2.0 ** (exponent - bias))
    values = np.sort(np.array(values))
    return values / np.abs(values).max()


def dynamic_values(bits: int) -> np.ndarray:
    """The signed dynamic-exponent (dynamic tree) values of bitsandbytes' create_dynamic_map(True, k-1, k); float64."""
    check_bits(bits)
    max_exponent_bits = bits - 1
    data = [0.0, 1.0]
    for i in range(max_exponent_bits):
        boundaries = np.linspace(0.1, 1.0, 2**i + 1)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        scale = 10.0 ** (-(max_exponent_bits - 1) + i)
        data += (scale * means).tolist() + (-scale * means).tolist()
    return np.sort(np.array(data))


def normal_float_values(bits: int) -> np.ndarray:
    """NormalFloat: N(0,1) quantiles with an exact zero, divided by the largest (QLoRA's create_normal_map); float64."""
    check_bits(bits)
    n = 2**bits
    offset = 1.0 - 0.5 * (1.0 / (2 * (n - 1)) + 1.0 / (2 * n))  # 0.9677083 at k = 4
    inv_cdf = NormalDist().inv_cdf
    positive = [inv_cdf(p) for p in np.linspace(offset, 0.5, n // 2 + 1)[:-1]]
    negative = [-inv_cdf(p) for p in np.linspace(offset, 0.5, n // 2)[:-1]]
    values = np.sort(np.array(positive + negative + [0.0]))
    return values / values.max()


def quantile_values(data: np.ndarray | torch.Tensor, bits: int) -> np.ndarray:
    """Quantile quantization: code i is the midpoint of the i/2**k and (i+1)/2**k quantiles of data; float64.

    The values are divided by the largest magnitude so that they lie in [-1, 1] (data is usually absmax-scaled).
    """
    check_bits(bits)
    flat = data.detach().reshape(-1).double().cpu().numpy() if isinstance(data, torch.Tensor) else np.ravel(data)
    flat = np.asarray(flat, dtype=np.float64)
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise ValueError(f"data must be non-empty and finite to estimate quantiles, got {flat.size} values")
    edges = np.quantile(flat, np.linspace(0.0, 1.0, 2**bits + 1))  # (2**k + 1,) equal-probability bin edges
    values = (edges[:-1] + edges[1:]) / 2.0  # (2**k,) bin midpoints, ascending
    largest = np.abs(values).max()
    return values / largest if largest > 0 else values


def codebook(
    name: str,
    bits: int,
    *,
    exponent_bits: int | None = None,
    data: np.ndarray | torch.Tensor | None = None,
) -> Codebook:
    """The k-bit codebook `name` (int, float, dynamic, quantile, nf); quantile needs `data`."""
    bits = check_bits(bits)
    if name not in CODEBOOKS:
        raise ValueError(f"codebook must be one of {', '.join(CODEBOOKS)}, got {name!r}")
    if exponent_bits is not None and name != "float":
        raise ValueError(f"exponent_bits only applies to codebook 'float', got codebook {name!r}")
    if data is not None and name != "quantile":
        raise ValueError(f"data only applies to codebook 'quantile', got codebook {name!r}")
    if name == "int":
        return Codebook(f"int{bits}", bits, int_values(bits))
    if name == "float":
        e = DEFAULT_EXPONENT_BITS[bits] if exponent_bits is None else exponent_bits
        return Codebook(f"float{bits}_e{e}m{bits - 1 - e}", bits, float_values(bits, e))
    if name == "dynamic":
        return Codebook(f"dynamic{bits}", bits, dynamic_values(bits))
    if name == "nf":
        values = np.array(NF4_BITSANDBYTES) if bits == 4 else normal_float_values(bits)
        return Codebook(f"nf{bits}", bits, values)
    if data is None:
        raise ValueError("data is required for codebook 'quantile' (the tensor whose quantiles give the codes)")
    return Codebook(f"quantile{bits}", bits, quantile_values(data, bits))


_NAME = re.compile(r"(int|dynamic|nf|quantile)([2-8])|float([2-8])_e([1-7])m([0-6])")


def check_codebook_name(name: object, bits: int, code: torch.Tensor) -> str:
    """name as codebook() writes it for k = bits (e.g. nf4, int4, float4_e2m1, dynamic4, quantile4), and code the
    table that name stands for (any sorted table for quantile); a ValueError otherwise."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    allowed = f"int{bits}, float{bits}_e<E>m<M>, dynamic{bits}, nf{bits} or quantile{bits} (as codebook() names them)"
    if match is None or int(match[2] or match[3]) != bits:
        raise ValueError(f"codebook must be the name of a {bits}-bit codebook: {allowed}, got {name!r}")
    family = match[1] or "float"
    if family == "quantile":
        _check_quantile_table(name, bits, code)
        return name
    exponent_bits = int(match[4]) if family == "float" else None
    if exponent_bits is not None and not (exponent_bits <= bits - 1 and int(match[5]) == bits - 1 - exponent_bits):
        raise ValueError(f"codebook must be the name of a {bits}-bit codebook: {allowed}, got {name!r}")
    if not _same_table(code, codebook(family, bits, exponent_bits=exponent_bits)):
        raise ValueError(f"state.code is not the table of codebook {name!r} (a damaged or mislabelled state)")
    return name


def fixed_codebooks(bits: int) -> list[Codebook]:
    """Every data-independent codebook of k = bits: int, float of each exponent width, dynamic and nf."""
    floats = [codebook("float", bits, exponent_bits=e) for e in range(1, bits)]
    return [codebook("int", bits), *floats, codebook("dynamic", bits), codebook("nf", bits)]


def _same_table(code: object, book: Codebook) -> bool:
    """code is exactly book's table (same shape, bit for bit)."""
    expected = book.tensor()
    return isinstance(code, torch.Tensor) and code.shape == expected.shape and torch.equal(code.cpu(), expected)


def _check_quantile_table(name: str, bits: int, code: torch.Tensor) -> None:
    """A quantile table is scaled to max |value| = 1 (or all zero) and is not the table of a fixed codebook, whose
    name the state would then carry (a relabelled nf4 would load as quantile4 and count its table as stored)."""
    for book in fixed_codebooks(bits):
        if _same_table(code, book):
            raise ValueError(
                f"codebook {name!r} does not match state.code, which is the table of codebook {book.name!r} "
                "(a mislabelled state)"
            )
    largest = float(code.abs().max()) if isinstance(code, torch.Tensor) and code.numel() else None
    if largest not in (0.0, 1.0):
        raise ValueError(f"state.code of codebook {name!r} must be scaled to max |value| = 1, got {largest}")
