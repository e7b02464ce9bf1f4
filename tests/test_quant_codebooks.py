"""Codebooks against their generating formulas: NF4 from normal quantiles, FP4 from bit fields, dynamic, int."""

from statistics import NormalDist

import numpy as np
import pytest

from mini_llm.quant import CODEBOOKS, codebook
from mini_llm.quant.codebooks import NF4_BITSANDBYTES, normal_float_values


@pytest.mark.parametrize("name", ["int", "float", "dynamic", "nf"])
@pytest.mark.parametrize("bits", range(2, 9))
def test_every_codebook_is_sorted_with_2_to_the_k_values(name, bits):
    book = codebook(name, bits)
    assert book.values.shape == (2**bits,) and book.values.dtype == np.float32
    assert np.all(np.diff(book.values) >= 0)
    assert book.values.max() == pytest.approx(1.0)
    assert 0.0 in book.values  # every family represents zero exactly


def test_nf4_is_bitsandbytes_table_and_normal_quantiles():
    book = codebook("nf", 4)
    np.testing.assert_array_equal(book.values, np.array(NF4_BITSANDBYTES, dtype=np.float32))
    # QLoRA's construction: offset = 1 - (1/30 + 1/32)/2, 8 positive and 7 negative N(0,1) quantiles, and zero.
    offset = 1 - 0.5 * (1 / 30 + 1 / 32)
    assert offset == pytest.approx(0.9677083, abs=1e-7)
    q = NormalDist().inv_cdf
    pos = np.array([q(p) for p in np.linspace(offset, 0.5, 9)[:-1]])
    neg = -np.array([q(p) for p in np.linspace(offset, 0.5, 8)[:-1]])
    expected = np.sort(np.concatenate([pos, neg, [0.0]])) / pos.max()
    np.testing.assert_allclose(book.values, expected, atol=3e-7)
    np.testing.assert_allclose(normal_float_values(4), expected, atol=1e-12)


def test_nf4_matches_bitsandbytes_if_installed():
    functional = pytest.importorskip("bitsandbytes.functional")
    table = functional.get_4bit_type("nf4", device="cpu").numpy()
    np.testing.assert_array_equal(codebook("nf", 4).values, table)


def test_fp4_e2m1_from_bit_fields():
    # sign, 2 exponent bits (bias 1), 1 mantissa bit: 0, 0.5 (subnormal), 1, 1.5, 2, 3, 4, 6 and their negatives
    magnitudes = []
    for e in range(4):
        for m in range(2):
            magnitudes.append((m / 2) * 2.0 ** (1 - 1) if e == 0 else (1 + m / 2) * 2.0 ** (e - 1))
    assert sorted(magnitudes) == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    expected = np.sort(np.array([-v for v in magnitudes] + magnitudes)) / 6
    np.testing.assert_allclose(codebook("float", 4).values, expected, atol=1e-7)
    assert codebook("float", 4).name == "float4_e2m1"
    assert codebook("float", 8, exponent_bits=5).name == "float8_e5m2"


def test_int_is_symmetric_integer_grid():
    for bits in range(2, 9):
        half = 2 ** (bits - 1)
        expected = (np.arange(2**bits) - half) / (half - 1)
        np.testing.assert_allclose(codebook("int", bits).values, expected, rtol=1e-6)


@pytest.mark.parametrize("bits", [4, 8])
def test_dynamic_matches_bitsandbytes_dynamic_map(bits):
    functional = pytest.importorskip("bitsandbytes.functional")
    table = functional.create_dynamic_map(signed=True, max_exponent_bits=bits - 1, total_bits=bits).numpy()
    np.testing.assert_allclose(codebook("dynamic", bits).values, np.unique(table), atol=1e-6)  # unique: drops padding


def test_quantile_codebook_is_midpoints_of_equal_mass_bins():
    data = np.random.default_rng(0).standard_normal(20000)
    values = codebook("quantile", 3, data=data).values
    edges = np.quantile(data, np.arange(9) / 8)  # 8 bins holding 1/8 of the data each
    midpoints = (edges[:-1] + edges[1:]) / 2
    np.testing.assert_allclose(values, midpoints / np.abs(midpoints).max(), rtol=1e-6)
    inside = [np.mean((data >= lo) & (data <= hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    np.testing.assert_allclose(inside, 1 / 8, atol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(name="nf", bits=9), "bits must be an integer in 2..8"),
        (dict(name="nf", bits=1), "bits must be an integer in 2..8"),
        (dict(name="nf", bits=4.0), "bits must be an integer in 2..8"),
        (dict(name="posit", bits=4), "codebook must be one of int, float, dynamic, quantile, nf"),
        (dict(name="quantile", bits=4), "data is required"),
        (dict(name="float", bits=4, exponent_bits=0), "exponent_bits must be an integer in 1..3"),
        (dict(name="float", bits=4, exponent_bits=4), "exponent_bits must be an integer in 1..3"),
        (dict(name="nf", bits=4, exponent_bits=2), "exponent_bits only applies"),
    ],
)
def test_bad_codebook_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        codebook(**kwargs)


def test_codebook_names():
    assert CODEBOOKS == ("int", "float", "dynamic", "quantile", "nf")
