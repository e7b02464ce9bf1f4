"""Triton k-bit kernels without a GPU: the interpreter against the reference, and compile-only lowering to sm_90/sm_80.

Triton fixes interpreter or compiler when triton.language is first imported (its own @jit functions such as tl.zeros
are built then), so one process cannot do both. This run compiles; test_interpreted_suite starts a child pytest of
this file with TRITON_INTERPRET=1 set from the start, which runs the test_interpreted_* tests on CPU tensors. The
compile-only tests catch what the interpreter misses (tl.dot needs K >= 16, shared memory, layouts, ptxas).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from mini_llm import kernels
from mini_llm.kernels import reference, registry
from mini_llm.quant import QuantizedLinear, quantize, quantize_model

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench_kbit_gemv_gpu.py"
HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
needs_triton = pytest.mark.skipif(
    not HAS_TRITON, reason="triton is not installed (pip install 'mini-llm[gpu]', or the test extra on Linux)"
)
in_interpreter = pytest.mark.skipif(
    not INTERPRETING, reason="runs in the TRITON_INTERPRET=1 child process that test_interpreted_suite starts"
)
all_bits = pytest.mark.parametrize("bits", range(2, 9))


def interpreted(test):
    """Mark a test to run only with triton installed, in the child process of test_interpreted_suite."""
    return needs_triton(in_interpreter(test))


compiled = pytest.mark.skipif(INTERPRETING, reason="needs the compiler: this process runs the Triton interpreter")
SHARED_MEMORY = {90: 232448, 80: 166912}  # bytes of shared memory one block may use (opt-in maximum)


@needs_triton
@compiled
def test_interpreted_suite():
    """The test_interpreted_* tests in a child pytest with TRITON_INTERPRET=1 (it never reaches this process)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    command = [sys.executable, "-m", "pytest", str(Path(__file__)), "-q", "-k", "test_interpreted_ and not suite"]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], run.stdout[-2000:]


@pytest.fixture
def interp() -> ModuleType:
    """mini_llm.kernels.cuda with interpreted kernels (this process imported triton with TRITON_INTERPRET=1)."""
    from mini_llm.kernels import cuda

    return cuda


@pytest.fixture
def compiled_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """The regular mini_llm.kernels.cuda (JIT functions that triton.compile lowers), compiled afresh into tmp_path."""
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # no cache hit may hide a compile error
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    from mini_llm.kernels import cuda

    return cuda


def fields(state) -> tuple:
    """The layout arguments of the registry's ops: (bits, shape, code, absmax, offset, blocksize)."""
    return state.bits, state.shape, state.code, state.absmax, state.offset, state.blocksize


def case(bits: int, shape: tuple[int, int], blocksize: int | None, centered: bool = False, seed: int = 0):
    """A quantized random matrix: (packed, state, float32 dequantized reference (N, K))."""
    torch.manual_seed(seed)
    W = torch.randn(*shape)
    packed, state = quantize(W, bits, "nf" if bits < 8 else "int", blocksize, centered=centered)
    ref = reference.dequantize_torch(packed, bits, shape, state.code, state.absmax, state.offset,
                                     state.effective_blocksize)
    return packed, state, ref


# (shape, blocksize, centered): K % 8 == 0 with blocks inside rows; blocks straddling rows; ragged K (the per-code
# path); one block for the whole tensor; several K tiles of the GEMV (K > 256); several dequantize programs (> 1024).
SHAPES = [
    ((6, 64), 32, False),
    ((5, 40), 32, True),
    ((7, 13), 32, False),
    ((3, 21), None, True),
    ((9, 264), 64, False),
    ((33, 40), 64, False),
]


@interpreted
@all_bits
def test_interpreted_dequantize_matches_reference(interp, bits):
    for shape, blocksize, centered in SHAPES:
        packed, state, ref = case(bits, shape, blocksize, centered)
        values = interp.dequantize(packed, *fields(state), torch.float32)
        torch.testing.assert_close(values, ref, rtol=1e-6, atol=1e-7)
    state.dtype = torch.bfloat16
    out = interp.dequantize(packed, *fields(state), torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == shape
    # One bfloat16 step: the interpreter truncates float32 -> bfloat16 where the GPU rounds to nearest even.
    torch.testing.assert_close(out.float(), ref, rtol=2**-7, atol=0)


def gemv_expected(packed, state, x):
    """float64 y = W @ x from the numpy reference."""
    return reference.gemv_reference(
        packed.numpy(), state.bits, state.shape, state.code.numpy(), state.absmax.numpy(),
        None if state.offset is None else state.offset.numpy(), state.effective_blocksize, x.double().numpy(),
    )


@interpreted
@all_bits
def test_interpreted_batch1_gemv_matches_reference(interp, bits):
    for shape, blocksize, centered in SHAPES:
        packed, state, _ = case(bits, shape, blocksize, centered)
        x = torch.randn(shape[1])
        y = interp.gemv(packed, *fields(state), x)  # (N,)
        assert y.shape == (shape[0],) and y.dtype == torch.float32
        np.testing.assert_allclose(y.numpy(), gemv_expected(packed, state, x), rtol=1e-5, atol=1e-5)
    xb = x.bfloat16()  # 16-bit activations are cast to float32 right after loading
    np.testing.assert_allclose(interp.gemv(packed, *fields(state), xb).numpy(),
                               gemv_expected(packed, state, xb.float()),
                               rtol=1e-5, atol=1e-5)


@interpreted
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_interpreted_small_batch_matches_reference(interp, bits):
    for i, (shape, blocksize, centered) in enumerate(SHAPES[:3] + SHAPES[4:5]):
        packed, state, _ = case(bits, shape, blocksize, centered)
        x = torch.randn(17 if i == 0 else 3, shape[1])  # two BLOCK_M = 16 tiles of input rows, then one
        expected = gemv_expected(packed, state, x)  # (B, N)
        np.testing.assert_allclose(interp.matmul(packed, *fields(state), x).numpy(), expected, rtol=1e-5, atol=1e-5)
    rows = interp.gemv(packed, *fields(state), x)  # the batch-1 kernel, one program row per b
    np.testing.assert_allclose(rows.numpy(), expected, rtol=1e-5, atol=1e-5)
    # 16-bit activations make tl.dot run in that type (the dequantized tile rounded to it). Here float16: the
    # interpreter of triton 3.9 multiplies bfloat16 operands of tl.dot as their raw uint16 bits (bfloat16 is
    # checked by the compile-only tests instead).
    xh = x.half()
    got = interp.matmul(packed, *fields(state), xh).numpy()
    atol = 3e-3 * np.abs(expected).max()
    np.testing.assert_allclose(got, gemv_expected(packed, state, xh.float()), rtol=0, atol=atol)


@pytest.fixture
def triton_dispatch(interp, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The registry sends CPU tensors to the interpreted Triton kernels, as it sends CUDA tensors to the compiled."""
    for op in registry.OPS:
        monkeypatch.setitem(registry.IMPLEMENTATIONS[op], "cpu", getattr(interp, op))
    return interp


@interpreted
def test_interpreted_dispatch_sends_cuda_tensors_to_triton(triton_dispatch):
    packed, state, ref = case(4, (6, 64), 64)
    x = torch.randn(64)
    np.testing.assert_allclose(kernels.gemv(packed, state, x).numpy(), gemv_expected(packed, state, x), rtol=1e-5)
    xs = torch.randn(3, 64)
    np.testing.assert_allclose(kernels.gemv(packed, state, xs).numpy(), gemv_expected(packed, state, xs), rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(kernels.dequantize(packed, state), ref)
    with pytest.raises(ValueError, match="backend for CUDA tensors must be one of auto, triton"):
        kernels.gemv(packed, state, x, backend="simd")


@interpreted
@all_bits
def test_interpreted_quantize_is_bit_exact(interp, bits):
    """Triton codes, absmax and offset equal the pure-torch reference's and the Numba kernels' bit for bit."""
    from mini_llm.kernels import cpu
    from mini_llm.quant import codebook

    rng = np.random.default_rng(bits)
    for n, blocksize, centered in [(3700, 64, False), (1000, 32, True), (2777, None, True), (5000, 4096, False),
                                   (13, 32, True)]:
        A = torch.from_numpy(rng.standard_normal(n).astype(np.float32)) * 3
        for name in ("nf", "int"):
            code = codebook(name, bits).tensor()
            got = interp.quantize(A, code, bits, blocksize, centered, "auto")
            for expected in (reference.quantize(A, code, bits, blocksize, centered), cpu.quantize(A, code, bits,
                                                                                                 blocksize, centered)):
                assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
                assert (got[2] is None) == (not centered) and (got[2] is None or torch.equal(got[2], expected[2]))


@interpreted
def test_interpreted_quant_quantize_takes_the_triton_path(interp, monkeypatch):
    """mini_llm.quant.quantize runs the registry's entry for the tensor's device (here the interpreted Triton one)."""
    W = torch.randn(24, 40, dtype=torch.float64)
    settings = [(64, False), (32, True), (None, False)]
    numba = [quantize(W, 4, "nf", blocksize, centered=centered) for blocksize, centered in settings]
    calls = []
    monkeypatch.setitem(registry.IMPLEMENTATIONS["quantize"], "cpu",
                        lambda *args: calls.append(args[2]) or interp.quantize(*args))
    for (blocksize, centered), (numba_packed, numba_state) in zip(settings, numba, strict=True):
        packed, state = quantize(W, 4, "nf", blocksize, centered=centered)
        assert torch.equal(packed, numba_packed) and torch.equal(state.absmax, numba_state.absmax)
        assert (state.offset is None) == (not centered)
    assert calls == [4, 4, 4]


@interpreted
def test_interpreted_registry_entries_match_the_float64_reference(interp):
    """The registry-wide checks of tests/test_kernel_registry.py on the "cuda" entries (interpreted, CPU tensors)."""
    import test_kernel_registry as t

    for op in registry.OPS:
        t.check_against_float64(op, getattr(interp, op), torch.device("cpu"))


def tiny_model(kind: str) -> tuple[torch.nn.Module, int]:
    """A tiny random GPT or Llama (vocabulary 40) and its number of k-bit linear layers per block."""
    from mini_llm.nn import GPT, GPTConfig
    from mini_llm.nn.llama import Llama, LlamaConfig

    if kind == "gpt":  # qkv, attention out, MLP in, MLP out
        return GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=32)), 4
    # q, k, v, o, gate, up, down; RMSNorm and rotary embeddings stay plain torch
    config = LlamaConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_kv_head=1, n_embd=32, n_inner=64)
    return Llama(config), 7


@interpreted
@pytest.mark.parametrize("kind", ["gpt", "llama"])
def test_interpreted_quantized_model_generates_through_triton(triton_dispatch, monkeypatch, kind):
    from mini_llm.generation import generate

    calls = []

    def counted(op):
        def run(*args):
            calls.append((op, args[7].shape))
            return getattr(triton_dispatch, op)(*args)

        return run

    for op in ("gemv", "matmul"):
        monkeypatch.setitem(registry.IMPLEMENTATIONS[op], "cpu", counted(op))
    torch.manual_seed(0)
    model, per_block = tiny_model(kind)
    model.eval()
    quantize_model(model, 4, "nf", 32)  # the LM head stays
    idx = torch.randint(0, 40, (1, 5))
    with torch.no_grad():
        ours = generate(model, idx, 3, greedy=True)
        for module in model.modules():  # the same weights through the pure-torch path
            if isinstance(module, QuantizedLinear):
                module.backend = "reference"
        pure = generate(model, idx, 3, greedy=True)
    assert ours.shape == (1, 8) and torch.equal(ours, pure)
    # Every k-bit layer: the 5-token prompt through tl.dot, then each new token (KV cache) at batch 1.
    assert [(op, tuple(shape)[0]) for op, shape in calls] == [("matmul", 5)] * per_block + [("gemv", 1)] * per_block * 2


# Compile-only: the signature triton.compile needs (argument name -> type) and the constexprs of each kernel.
POINTERS = {"packed_ptr": "*u8", "code_ptr": "*fp32", "absmax_ptr": "*fp32", "offset_ptr": "*fp32"}


def compile_for(module: ModuleType, name: str, arch: int, scalars: dict[str, str], constexprs: dict,
                pointers: dict[str, str] = POINTERS, **options):
    """triton.compile one kernel for sm_<arch> without a GPU; returns the CompiledKernel (asm has 'cubin')."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(module, name)
    signature = {**pointers, **scalars, **{k: "constexpr" for k in constexprs}}
    assert set(signature) == set(fn.arg_names), sorted(set(fn.arg_names) ^ set(signature))
    # The launcher marks 16-divisible pointers and sizes; the compiler then vectorises loads: check that lowering too.
    attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in signature if signature[a] != "constexpr"}
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": 4, **options}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    assert compiled.asm["cubin"] and compiled.metadata.shared <= SHARED_MEMORY[arch]
    return compiled


def flags(bits: int, aligned: bool, one_block: bool = False, offset: bool = False) -> dict:
    """Constexprs shared by the GEMV and small-batch kernels."""
    return {"K_BITS": bits, "BLOCKSIZE": 1 if one_block else 64, "ONE_BLOCK": one_block,
            "ROW_BLOCKS": aligned and not one_block, "HAS_OFFSET": offset, "ALIGNED": aligned}


K8_TILE = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 8}
GEMV_SCALARS = {"x_ptr": "*bf16", "y_ptr": "*fp32", "N": "i32", "K": "i32", "n_bytes": "i32",
                "blocks_per_row": "i32", "stride_x": "i32", "stride_y": "i32"}


@needs_triton
@compiled
@pytest.mark.parametrize("arch", [90, 80])
def test_kernels_compile_for_gpu(compiled_module, arch):
    cuda = compiled_module
    for bits, one_block, offset, out in [(3, False, False, "*bf16"), (6, True, True, "*fp32")]:  # uint32, uint64
        compile_for(cuda, "dequantize_kernel", arch,
                    {"out_ptr": out, "n": "i32", "n_bytes": "i32"},
                    {"K_BITS": bits, "BLOCKSIZE": 1 if one_block else 64, "ONE_BLOCK": one_block,
                     "HAS_OFFSET": offset, "BLOCK": cuda.DEQUANT_BLOCK})
    for bits, aligned, offset in [(4, True, False), (3, False, True), (8, True, True)]:
        compile_for(cuda, "gemv_kernel", arch, GEMV_SCALARS,
                    {**flags(bits, aligned, offset=offset), **cuda.GEMV_DEFAULT})
    for bits, aligned, dtype in [(4, True, "bf16"), (3, False, "fp32"), (8, True, "fp16")]:
        dot_dtype = {"bf16": cuda.tl.bfloat16, "fp32": cuda.tl.float32, "fp16": cuda.tl.float16}[dtype]
        compile_for(cuda, "gemm_kernel", arch, {**GEMV_SCALARS, "x_ptr": f"*{dtype}", "M": "i32"},
                    {**flags(bits, aligned), "DOT_DTYPE": dot_dtype, **cuda.DOT_DEFAULT})


QUANT_POINTERS = {"x_ptr": "*fp32", "absmax_ptr": "*fp32", "offset_ptr": "*fp32"}


@needs_triton
@compiled
@pytest.mark.parametrize("arch", [90, 80])
def test_quantize_kernels_compile_for_gpu(compiled_module, arch):
    cuda = compiled_module
    for bits in (3, 4, 8):  # 8: the top code fills the sign bit of the int64 group word
        compile_for(cuda, "quantize_kernel", arch,
                    {"mids_ptr": "*fp32", "packed_ptr": "*u8", "n": "i64", "n_bytes": "i64", "blocksize": "i64",
                     "n_mids": "i32"},
                    {"K_BITS": bits, "BLOCK": cuda.QUANT_BLOCK}, pointers=QUANT_POINTERS)
    for centered in (False, True):
        compile_for(cuda, "block_scales_kernel", arch, {"n": "i32", "blocksize": "i32"},
                    {"CENTERED": centered, "CHUNK": cuda.SCALE_CHUNK}, pointers=QUANT_POINTERS)


@needs_triton
@compiled
def test_every_autotune_config_compiles_for_sm90(compiled_module):
    cuda = compiled_module
    for config in cuda.GEMV_CONFIGS:
        compile_for(cuda, "gemv_kernel", 90, GEMV_SCALARS, {**flags(4, True), **config.kwargs},
                    num_warps=config.num_warps)
    for config in cuda.DOT_CONFIGS:
        compile_for(cuda, "gemm_kernel", 90, {**GEMV_SCALARS, "M": "i32"},
                    {**flags(4, True), "DOT_DTYPE": cuda.tl.bfloat16, **config.kwargs},
                    num_warps=config.num_warps, num_stages=config.num_stages)


@interpreted
def test_interpreted_dot_runs_a_k8_tile(interp):
    """The interpreter multiplies float16 tiles with K = 8 in tl.dot; the GPU compiler refuses them (next test)."""
    packed, state, _ = case(4, (20, 64), 64)
    x = torch.randn(3, 64).half()
    y = torch.empty(3, 20)
    interp.gemm_kernel[(2, 1)](packed, state.code, state.absmax, state.absmax, x, y, 3, 20, 64, packed.numel(), 1,
                               64, 20, **flags(4, True), DOT_DTYPE=interp.tl.float16, **K8_TILE)
    expected = gemv_expected(packed, state, x.float())
    np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=3e-3 * np.abs(expected).max())


@needs_triton
@compiled
def test_compiler_rejects_the_k8_dot_tile(compiled_module):
    import triton

    with pytest.raises(triton.CompilationError, match="K >= 16"):  # 16-bit MMA needs K >= 16 (tf32 takes 8)
        compile_for(compiled_module, "gemm_kernel", 80, {**GEMV_SCALARS, "x_ptr": "*fp16", "M": "i32"},
                    {**flags(4, True), "DOT_DTYPE": compiled_module.tl.float16, **K8_TILE})


@compiled
def test_gpu_benchmark_exits_cleanly_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TRITON_INTERPRET", None)
    run = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "no CUDA device" in run.stdout and "nothing was measured" in run.stdout
