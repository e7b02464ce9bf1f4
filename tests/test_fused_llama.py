"""The compiled decode step of a k-bit Llama equals the model's own forward pass (mini_llm.tasks.fused_llama)."""

import numpy as np
import pytest
import torch

from mini_llm.kernels import cpu, cpu_int8, cpu_simd
from mini_llm.nn.llama import Llama, LlamaConfig
from mini_llm.quant import QuantizedLinear, dequantize_reference, quantize, quantize_model
from mini_llm.tasks.fused_llama import FusedLlamaDecoder, fusion_problem

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama(bits=4, codebook="nf", blocksize=64, block_size=160, seed=0, **quant) -> Llama:
    """A random 2-layer GQA Llama (width 128, hidden 256) with every linear layer (the LM head too) in k bits."""
    torch.manual_seed(seed)
    model = Llama(LlamaConfig(vocab_size=97, block_size=block_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=128,
                              n_inner=256)).eval()
    for block in model.model.layers:  # norms away from 1, so a wrong norm weight shows
        for norm in (block.input_layernorm, block.post_attention_layernorm):
            norm.weight.data.uniform_(0.5, 1.5)
    return quantize_model(model, bits, codebook, blocksize, skip=(), **quant)


def decoded_logits(decoder: FusedLlamaDecoder, ids: list[int], prompt: int) -> torch.Tensor:
    """Logits (len(ids) - prompt + 1, V): the prompt in one call, then one id per call."""
    rows = [decoder.forward(ids[:prompt])] + [decoder.forward([i]) for i in ids[prompt:]]
    return torch.stack(rows)


@pytest.mark.parametrize("bits, codebook, blocksize, backend", [
    (4, "nf", 64, "auto"), (3, "nf", 128, "auto"), (8, "int", 32, "auto"), (4, "nf", 64, "portable"),
])
def test_steps_equal_the_models_forward(bits, codebook, blocksize, backend):
    model = tiny_llama(bits, codebook, blocksize)
    ids = torch.randint(0, 97, (24,), generator=torch.Generator().manual_seed(1)).tolist()
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0]  # (T, V), no cache
    got = decoded_logits(FusedLlamaDecoder(model, backend=backend), ids, prompt=5)
    scale = reference.abs().max()
    assert float((got - reference[4:]).abs().max() / scale) < 1e-5
    with torch.no_grad():  # the model still computes the same after its buffers became views of the stacked arrays
        assert torch.equal(model(torch.tensor([ids])).logits[0], reference)


@pytest.mark.skipif(not cpu_int8.HAS_INT8_DOT, reason="the int8-activation kernel needs AVX-512 VNNI or AVX2")
def test_int8_activation_steps_equal_the_int8_forward():
    model = tiny_llama(backend="int8")  # every layer's forward on int8 activations too
    ids = torch.randint(0, 97, (20,), generator=torch.Generator().manual_seed(7)).tolist()
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0]  # (T, V)
    got = decoded_logits(FusedLlamaDecoder(model, backend="int8"), ids, prompt=4)
    assert float((got - reference[3:]).abs().max() / reference.abs().max()) < 1e-5


def test_truncate_then_continue_and_the_cache_grows():
    model = tiny_llama()
    decoder = FusedLlamaDecoder(model)
    ids = torch.randint(0, 97, (150,), generator=torch.Generator().manual_seed(2)).tolist()
    decoder.forward(ids[:3])
    for i in ids[3:40]:
        decoder.forward([i])
    decoder.truncate(20)  # drop the last 20 positions, then read other ids there
    assert decoder.length == 20
    other = ids[100:150]
    last = [decoder.forward(other[:2])] + [decoder.forward([i]) for i in other[2:]]  # 20 + 50 = 70 > 64 positions
    assert decoder.k_cache.shape[2] >= 70
    with torch.no_grad():
        reference = model(torch.tensor([ids[:20] + other])).logits[0, 21:]  # (49, V)
    assert float((torch.stack(last) - reference).abs().max() / reference.abs().max()) < 1e-5


def test_shares_the_weights_with_the_model():
    model = tiny_llama()
    decoder = FusedLlamaDecoder(model)
    packed, scales = decoder.weights["gate_up"]
    up = model.model.layers[1].mlp.up_proj
    start = packed.ctypes.data
    assert start <= up.packed.data_ptr() < start + packed.nbytes  # a view, not a copy
    assert np.array_equal(packed[1, -up.packed.numel():], up.packed.numpy())
    assert np.array_equal(scales[1, -up.absmax.numel():], up.absmax.numpy())


def test_row_kernel_equals_the_dequantized_matrix():
    W = torch.randn(96, 256, generator=torch.Generator().manual_seed(3))
    x = np.random.default_rng(4).standard_normal((1, 256)).astype(np.float32)
    for bits, codebook, backend in ((4, "nf", "auto"), (3, "nf", "auto"), (6, "int", "portable")):
        packed, state = quantize(W, bits, codebook, 64)
        run, repeat = cpu.row_kernel(bits, state.code.numpy(), 256, 64, backend)
        out = np.empty((1, 96), dtype=np.float32)
        run(packed.numpy().reshape(-1), np.repeat(state.absmax.numpy(), repeat), x, out)
        reference = x.astype(np.float64) @ dequantize_reference(packed, state).double().numpy().T  # (1, 96)
        assert np.abs(out - reference).max() < 1e-4 * np.abs(reference).max()
    with pytest.raises(ValueError, match="blocksize must divide the row length 256"):
        cpu.row_kernel(4, state.code.numpy(), 256, 96)
    with pytest.raises(ValueError, match="backend must be one of auto, simd, portable"):
        cpu.row_kernel(4, state.code.numpy(), 256, 64, "cuda")


@pytest.mark.skipif(not cpu_simd.HAS_AVX512, reason="the SIMD kernel needs AVX-512")
def test_group3_kernel_takes_one_scale_per_64_codes():
    assert cpu.row_kernel(3, quantize(torch.randn(4, 256), 3, "nf", 128)[1].code.numpy(), 256, 128)[1] == (
        2 if cpu_simd.HAS_VBMI else 1)


def test_models_it_cannot_run_are_refused_with_the_reason():
    torch.manual_seed(0)
    plain = Llama(LlamaConfig(vocab_size=97, block_size=32, n_layer=1, n_head=4, n_kv_head=2, n_embd=128,
                              n_inner=256))
    assert "must be a QuantizedLinear" in fusion_problem(plain)
    with pytest.raises(ValueError, match="model.layers.0.self_attn.q_proj must be a QuantizedLinear"):
        FusedLlamaDecoder(plain)
    assert "centred" in fusion_problem(tiny_llama(centered=True))
    assert "blocksize (None) must divide" in fusion_problem(tiny_llama(blocksize=None))
    mixed = tiny_llama()
    layer = mixed.model.layers[1].mlp.down_proj
    mixed.model.layers[1].mlp.down_proj = QuantizedLinear.from_linear(
        torch.nn.Linear(256, 128, bias=False), bits=3, codebook="nf", blocksize=64)
    assert "model.layers.1.mlp.down_proj must have the bits" in fusion_problem(mixed)
    mixed.model.layers[1].mlp.down_proj = layer
    assert fusion_problem(mixed) is None
    assert fusion_problem(torch.nn.Linear(2, 2)) == "model must be a mini_llm.nn.Llama"


def test_bad_ids_and_lengths():
    decoder = FusedLlamaDecoder(tiny_llama(block_size=8))
    with pytest.raises(ValueError, match="at least one token id"):
        decoder.forward([])
    with pytest.raises(ValueError, match=r"token ids must lie in 0..96, got 0..97"):
        decoder.forward([0, 97])
    with pytest.raises(ValueError, match="n must be >= 0"):
        decoder.truncate(-1)
    decoder.forward(list(range(8)))
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        decoder.forward([1])
    assert decoder.length == 8
