"""Blockwise quantize/dequantize, QuantState in safetensors and its rejection, packing, bits, bitsandbytes layout."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from mini_llm.atomic import DIGEST_KEY, tensors_digest
from mini_llm.kernels import reference
from mini_llm.quant import (
    QuantState,
    bits_per_param,
    codebook,
    dequantize,
    dequantize_reference,
    from_bitsandbytes,
    load_quantized,
    pack_codes,
    quantize,
    save_quantized,
    to_bitsandbytes,
    unpack_codes,
)


def weights(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 8), n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_pack_unpack_round_trip_every_k(bits, n, seed):
    codes = torch.from_numpy(np.random.default_rng(seed).integers(0, 2**bits, n, dtype=np.uint8))
    packed = pack_codes(codes, bits)
    assert packed.numel() == (n * bits + 7) // 8  # dense: 3-bit codes take 3 bits
    np.testing.assert_array_equal(packed.numpy(), reference.pack_reference(codes.numpy(), bits))
    torch.testing.assert_close(unpack_codes(packed, bits, n), codes)


def test_packing_layout_msb_first():
    codes = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0], dtype=torch.uint8)
    # 3 bits each: 001 010 011 100 101 110 111 000 -> 00101001 11001011 10111000
    assert pack_codes(codes, 3).tolist() == [0b00101001, 0b11001011, 0b10111000]
    assert pack_codes(torch.tensor([0xA, 0x3], dtype=torch.uint8), 4).tolist() == [0xA3]  # first in HIGH nibble


@pytest.mark.parametrize("name", ["int", "float", "dynamic", "quantile", "nf"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantize_matches_reference_and_error_shrinks_with_bits(name, bits):
    W = weights(37, 70)
    packed, state = quantize(W, bits, name, 64)
    codes, absmax, _ = reference.quantize_reference(W.numpy(), state.code.numpy(), 64)
    np.testing.assert_array_equal(unpack_codes(packed, bits, W.numel()).numpy(), codes)
    np.testing.assert_array_equal(state.absmax.numpy(), absmax)
    Wq = dequantize(packed, state)
    expected = reference.dequantize_reference(codes, state.code.numpy(), absmax, None, 64).reshape(W.shape)
    np.testing.assert_allclose(Wq.numpy(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dequantize_reference(packed, state), Wq)
    # nearest code: the error is at most half the widest gap of the table (or the distance from its ends to +-1)
    table = state.code.numpy().astype(np.float64)
    bound = max(0.5 * np.diff(table).max(), max(table[0], -1.0) + 1.0, 1.0 - table[-1])
    block_absmax = state.absmax.repeat_interleave(64)[: W.numel()].reshape(W.shape)
    assert bool(((Wq - W).abs() <= bound * block_absmax + 1e-6).all())


@pytest.mark.parametrize("blocksize", [32, 64, 256, 4096, None])
@pytest.mark.parametrize("centered", [False, True])
def test_block_sizes_and_centering(blocksize, centered):
    W = weights(24, 96) + 0.5  # an off-centre tensor: centering helps
    packed, state = quantize(W, 4, "nf", blocksize, centered=centered)
    n_blocks = 1 if blocksize is None else -(-W.numel() // blocksize)
    assert state.absmax.shape == (n_blocks,) and (state.offset is not None) == centered
    err = (dequantize(packed, state) - W).pow(2).mean()
    assert err < 0.05
    if centered:
        assert err < (dequantize(*quantize(W, 4, "nf", blocksize)) - W).pow(2).mean()


def test_smaller_blocks_give_smaller_error():
    W = weights(64, 512)
    errors = [(dequantize(*quantize(W, 4, "nf", b)) - W).pow(2).mean().item() for b in (32, 256, 4096, None)]
    assert errors == sorted(errors)


def test_dtype_is_kept():
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        packed, state = quantize(weights(8, 64).to(dtype))
        assert dequantize(packed, state).dtype == dtype


def test_quant_state_safetensors_round_trip(tmp_path):
    for centered, blocksize in [(False, 64), (True, None)]:
        W = weights(10, 33)
        packed, state = quantize(W, 3, "quantile", blocksize, centered=centered)
        path = tmp_path / f"w{centered}.safetensors"
        save_quantized(path, packed, state)
        packed2, state2 = load_quantized(path)
        torch.testing.assert_close(packed2, packed)
        assert state2.metadata() == state.metadata()
        torch.testing.assert_close(dequantize(packed2, state2), dequantize(packed, state))
        assert b"pickle" not in path.read_bytes()


def corrupt(tmp_path, tensors_edit=None, meta_edit=None, centered=False):
    packed, state = quantize(weights(8, 64), 4, "nf", 64, centered=centered)
    path = tmp_path / "w.safetensors"
    save_quantized(path, packed, state)
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    if tensors_edit:
        tensors_edit(tensors)
    if meta_edit:
        meta_edit(meta)
    if DIGEST_KEY in meta:  # a consistent file with wrong contents: the digest of what it now holds
        meta[DIGEST_KEY] = tensors_digest(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.mark.parametrize(
    ("tensors_edit", "meta_edit", "message"),
    [
        (lambda t: t.update(packed=t["packed"][:-1].clone()), None, "packed has 255 bytes"),
        (lambda t: t.update(absmax=t["absmax"][:-1].clone()), None, "state.absmax must be a floating-point tensor"),
        (lambda t: t.update(code=t["code"][:8].clone()), None, "state.code must be a floating-point tensor of shape"),
        (lambda t: t.update(code=t["code"].flip(0).contiguous()), None, "sorted ascending"),
        (lambda t: t["absmax"].__setitem__(0, float("nan")), None, "state.absmax must be finite"),
        (lambda t: t["absmax"].__setitem__(0, -1.0), None, "absmax must be >= 0"),
        (None, lambda m: m.update(bits="9"), "bits must be an integer in 2..8"),
        (None, lambda m: m.update(blocksize="48"), "blocksize must be a power of two"),
        (None, lambda m: m.update(shape="[8, 63]"), "packed has 256 bytes but"),
        (None, lambda m: m.update(dtype="int8"), "dtype must be one of"),
        (None, lambda m: m.update(format="other"), "metadata format"),
        (None, lambda m: m.pop("bits"), "malformed"),
    ],
)
def test_corrupted_state_is_rejected(tmp_path, tensors_edit, meta_edit, message):
    path = corrupt(tmp_path, tensors_edit, meta_edit)
    with pytest.raises(ValueError, match=message):
        load_quantized(path)


@pytest.mark.parametrize(
    ("centered", "tensors_edit", "meta_edit", "message"),
    [
        (True, lambda t: t.pop("offset"), None, "'centered' is 'true' but the file has no offset"),
        (False, lambda t: t.update(offset=torch.zeros(8)), None, "'centered' is 'false' but the file holds offset"),
        (True, lambda t: t.pop("offset"), lambda m: m.pop("centered"), "no 'centered' entry and the file no offset"),
        (False, None, lambda m: m.pop("centered"), "no 'centered' entry"),
        (False, None, lambda m: m.update(centered="yes"), "'centered' must be 'true' or 'false'"),
        (False, None, lambda m: m.update(shape="[8.5, 64]"), "'shape' must be a non-empty tuple of positive ints"),
        (False, None, lambda m: m.update(shape="[true, 512]"), "'shape' must be a non-empty tuple of positive ints"),
        (False, None, lambda m: m.update(shape="[[8], 64]"), "'shape' must be a non-empty tuple of positive ints"),
        (False, None, lambda m: m.update(shape='"8x64"'), "'shape' must be a non-empty tuple of positive ints"),
        (False, None, lambda m: m.update(shape="[" * 100000 + "]" * 100000), "'shape' must be a JSON list"),
        (False, None, lambda m: m.update(shape="[8, 64"), "'shape' must be a JSON list"),
        (False, None, lambda m: m.update(bits="4.0"), "'bits' must be a decimal integer"),
        (False, None, lambda m: m.update(blocksize="64.0"), "'blocksize' must be a decimal integer"),
        (False, None, lambda m: m.update(codebook="quantile3"), "codebook must be the name of a 4-bit codebook"),
        (False, None, lambda m: m.update(codebook="garbage"), "codebook must be the name of a 4-bit codebook"),
        (False, None, lambda m: m.update(codebook="nf3"), "codebook must be the name of a 4-bit codebook"),
        (False, None, lambda m: m.update(codebook="float4_e2m2"), "codebook must be the name of a 4-bit codebook"),
        (False, None, lambda m: m.update(codebook="int4"), "state.code is not the table of codebook 'int4'"),
        (False, lambda t: t.update(extra=torch.zeros(1)), None, "tensors must be packed, code, absmax, offset"),
        (False, lambda t: t.pop("code"), None, "no 'code' tensor"),
    ],
)
def test_tampered_state_metadata_is_rejected_naming_the_file(tmp_path, centered, tensors_edit, meta_edit, message):
    path = corrupt(tmp_path, tensors_edit, meta_edit, centered=centered)
    with pytest.raises(ValueError, match=message) as error:
        load_quantized(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


def test_older_files_without_the_centered_entry_load_when_they_hold_an_offset(tmp_path):
    path = corrupt(tmp_path, meta_edit=lambda m: m.pop("centered"), centered=True)
    packed, state = load_quantized(path)
    assert state.offset is not None and state.metadata()["centered"] == "true"


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "header only", "directory", "missing"])
def test_damaged_quantized_files_give_one_line_naming_the_file(tmp_path, damage):
    path = corrupt(tmp_path)
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    if damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "missing":
        path.unlink()
    else:
        damaged = {"truncated": data[: len(data) // 2], "random": np.random.default_rng(0).bytes(len(data)),
                   "empty": b"", "header only": data[:header_end]}
        path.write_bytes(damaged[damage])
    expected = FileNotFoundError if damage == "missing" else ValueError
    with pytest.raises(expected, match=str(path)) as error:
        load_quantized(path)
    assert "\n" not in str(error.value)


def test_save_quantized_refuses_a_state_it_could_not_load(tmp_path):
    packed, state = quantize(weights(8, 64))
    state.codebook = "mine"
    with pytest.raises(ValueError, match="codebook must be the name of a 4-bit codebook"):
        save_quantized(tmp_path / "w.safetensors", packed, state)
    assert not (tmp_path / "w.safetensors").exists()


def test_dequantize_rejects_mismatched_packed():
    packed, state = quantize(weights(8, 64))
    with pytest.raises(ValueError, match="packed has 255 bytes but the state"):
        dequantize(packed[:-1], state)
    with pytest.raises(ValueError, match="packed must be a uint8 tensor"):
        dequantize(packed.int(), state)


@pytest.mark.parametrize(
    ("W", "kwargs", "message"),
    [
        (weights(4, 64), dict(bits=9), "bits must be an integer in 2..8"),
        (weights(4, 64), dict(bits=1), "bits must be an integer in 2..8"),
        (weights(4, 64), dict(blocksize=48), r"blocksize must be a power of two in 32..4096"),
        (weights(4, 64), dict(blocksize=16), r"blocksize must be a power of two in 32..4096"),
        (weights(4, 64), dict(blocksize=0), r"blocksize must be a power of two"),
        (weights(4, 64), dict(blocksize=-64), r"blocksize must be a power of two"),
        (weights(4, 64), dict(blocksize=8192), r"blocksize must be a power of two"),
        (weights(4, 64), dict(codebook="posit"), "codebook must be one of"),
        (torch.arange(64).reshape(4, 16), {}, "W must be a floating-point tensor"),
        (weights(64, 4).t(), {}, "W must be contiguous"),
        (torch.tensor([1.0, float("nan"), 2.0]), {}, "W must be finite, got 1 NaN or Inf"),
        (torch.tensor([1.0, float("inf")]), {}, "W must be finite"),
        (torch.zeros(0, 4), {}, "W must not be empty"),
        (np.ones(4, dtype=np.float32), {}, "W must be a torch.Tensor"),
        (weights(4, 64), dict(centered="yes"), "centered must be True or False"),
        (weights(4, 64), dict(codebook=codebook("nf", 3)), "codebook has 3 bits but bits=4"),
        (torch.full((64, 64), 3.4e38), dict(centered=True), "the float32 absmax of 64 block.s. overflows"),
        (torch.full((4, 64), 1e39, dtype=torch.float64), {}, r"W must lie in the float32 range .* got \|x\| = 1e\+39"),
        (torch.full((4, 64), -1e39, dtype=torch.float64), dict(centered=True), "W must lie in the float32 range"),
    ],
)
def test_bad_quantize_arguments(W, kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize(W, **kwargs)


def test_bits_per_param_closed_forms():
    W = weights(64, 256)
    for bits in range(2, 9):
        for blocksize in (32, 64, 4096):
            assert bits_per_param(quantize(W, bits, "int", blocksize)[1]) == bits + 32 / blocksize
    assert bits_per_param(quantize(W, 4, "nf", 64)[1]) == 4.5
    assert bits_per_param(quantize(W, 4, "nf", 64, centered=True)[1]) == 4 + 64 / 64
    assert bits_per_param(quantize(W, 4, "nf", None)[1]) == 4 + 32 / W.numel()
    assert bits_per_param(quantize(W, 3, "quantile", 64)[1]) == 3 + 32 / 64 + 8 * 32 / W.numel()
    odd = weights(5, 7)  # 35 values of 3 bits = 105 bits, stored in 14 bytes; one block
    assert bits_per_param(quantize(odd, 3, "nf", 64)[1]) == (14 * 8 + 32) / 35


def test_bitsandbytes_layout_and_values():
    functional = pytest.importorskip("bitsandbytes.functional")
    odd = weights(48, 96, seed=4)  # rows not a multiple of 64: blocks span rows; the bytes still agree
    odd_bnb, odd_state = functional.quantize_4bit(odd, blocksize=64, quant_type="nf4")
    assert torch.equal(quantize(odd, 4, "nf", 64)[0], odd_bnb.reshape(-1))
    torch.testing.assert_close(quantize(odd, 4, "nf", 64)[1].absmax, odd_state.absmax)
    # (bitsandbytes 0.50's CPU dequantize_4bit misreads such 2-D shapes, so values are compared on whole-block rows)
    W = weights(48, 128, seed=3)
    packed, state = quantize(W, 4, "nf", 64)
    bnb_packed, bnb_state = functional.quantize_4bit(W, blocksize=64, quant_type="nf4")
    ours_packed, ours_absmax = to_bitsandbytes(packed, state)
    torch.testing.assert_close(ours_absmax, bnb_state.absmax)
    agree = (ours_packed.reshape(-1) == bnb_packed.reshape(-1)).float().mean().item()
    assert agree > 0.999  # identical bytes up to float rounding at an exact tie between two codes
    # bitsandbytes reads our bytes, and we read theirs, to the same numbers
    bnb_state.absmax = ours_absmax.clone()
    torch.testing.assert_close(functional.dequantize_4bit(ours_packed, bnb_state), dequantize(packed, state))
    their_packed, their_state = from_bitsandbytes(bnb_packed, bnb_state.absmax, W.shape, 64)
    torch.testing.assert_close(dequantize(their_packed, their_state), functional.dequantize_4bit(bnb_packed, bnb_state))


def test_bitsandbytes_layout_documented_form():
    # independent of bitsandbytes: flattened row-major, first element in the HIGH nibble, absmax per 64
    W = weights(2, 64)
    packed, state = quantize(W, 4, "nf", 64)
    first_byte = int(packed[0])
    table = state.code
    assert torch.isclose(table[first_byte >> 4] * state.absmax[0], dequantize(packed, state)[0, 0])
    assert torch.isclose(table[first_byte & 15] * state.absmax[0], dequantize(packed, state)[0, 1])
    torch.testing.assert_close(state.absmax, W.reshape(2, 64).abs().amax(dim=1))
    with pytest.raises(ValueError, match="to_bitsandbytes needs a 4-bit"):
        to_bitsandbytes(*quantize(W, 3, "nf", 64))
    with pytest.raises(ValueError, match="quant_type must be one of nf4"):
        from_bitsandbytes(packed, state.absmax, (2, 64), quant_type="fp8")


def test_quant_state_is_a_plain_dataclass():
    packed, state = quantize(weights(4, 64))
    assert isinstance(state, QuantState) and state.n_blocks == 4 and state.packed_nbytes == 128
