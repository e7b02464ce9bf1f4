"""The kernel registry: every registered implementation against the float64 reference, dispatch by device, checks
before any kernel, packed outputs unchanged by the move to the registry, and quant's import graph without a cycle."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mini_llm import kernels
from mini_llm.kernels import cpu, reference, registry
from mini_llm.quant import codebook, quantize

ROOT = Path(__file__).resolve().parents[1]
# (bits, codebook, shape, blocksize, centered): blocks inside rows, straddling rows, ragged K, one whole-tensor block
CASES = [
    (4, "nf", (6, 64), 32, False),
    (3, "int", (5, 40), 32, True),
    (8, "int", (7, 13), 64, False),
    (2, "nf", (3, 21), None, True),
    (6, "float", (9, 72), 64, True),
]


def runnable(device: str) -> torch.device | None:
    """The torch device an entry registered for `device` runs on in this process (None: not here)."""
    if device in (registry.DEFAULT, "cpu"):
        return torch.device("cpu")
    if device == "cuda" and torch.cuda.is_available():
        return torch.device("cuda")
    return None


def entries() -> list:
    """(op, device, implementation) of every registered entry: a new backend is tested without a new test."""
    params = []
    for op in registry.OPS:
        for device, impl in registry.registered(op).items():
            mark = () if runnable(device) else pytest.mark.skip(reason=f"no {device} device here")
            params.append(pytest.param(op, device, impl, id=f"{op}-{device}", marks=mark))
    return params


def check_against_float64(op: str, impl, device: torch.device) -> None:
    """impl (the registry's signature for op) against the float64 numpy reference on every case of CASES."""
    for bits, name, shape, blocksize, centered in CASES:
        rng = np.random.default_rng(bits)
        W = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        numel = W.numel()
        block = numel if blocksize is None else blocksize
        table = codebook(name, bits).values
        code = torch.from_numpy(table.copy())
        codes, absmax, offset = reference.quantize_reference(W.numpy(), table, block, centered)
        if op == "quantize":  # bit for bit: codes, absmax and offset
            packed, got_absmax, got_offset = impl(W.to(device), code.to(device), bits, blocksize, centered, "auto")
            assert packed.device.type == device.type and packed.dtype == torch.uint8
            np.testing.assert_array_equal(reference.unpack_reference(packed.cpu().numpy(), bits, numel), codes)
            np.testing.assert_array_equal(got_absmax.cpu().numpy(), absmax)
            assert (got_offset is None) == (not centered)
            if centered:
                np.testing.assert_array_equal(got_offset.cpu().numpy(), offset)
            continue
        packed = torch.from_numpy(reference.pack_reference(codes, bits)).to(device)
        scales = (code, torch.from_numpy(absmax), None if offset is None else torch.from_numpy(offset))
        args = (packed, bits, shape, *scales, blocksize)
        values = reference.dequantize_reference(codes, table, absmax, offset, block)  # (numel,) float64
        if op == "dequantize":
            got = impl(*args, torch.float32, "auto")
            assert got.shape == shape and got.dtype == torch.float32 and got.device.type == device.type
            np.testing.assert_allclose(got.cpu().numpy().ravel(), values, rtol=1e-6, atol=1e-6)
            continue
        for batch in (None, 1, 3):
            x = torch.from_numpy(rng.standard_normal(shape[1] if batch is None else (batch, shape[1])))
            got = impl(*args, x.float().to(device), "auto")
            expected = x.numpy() @ values.reshape(shape).T  # (N,) or (B, N) float64
            assert got.shape == expected.shape and got.dtype == torch.float32
            np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("op", "device", "impl"), entries())
def test_every_registered_implementation_matches_the_float64_reference(op, device, impl):
    check_against_float64(op, impl, runnable(device))


def test_registry_holds_the_four_operations_with_a_default_and_cpu_and_cuda_overrides():
    assert list(registry.OPS) == ["quantize", "dequantize", "gemv", "matmul"]
    for op in registry.OPS:
        table = registry.registered(op)
        assert set(table) == {registry.DEFAULT, "cpu", "cuda"}
        assert table[registry.DEFAULT] is getattr(reference, op) and table["cpu"] is getattr(cpu, op)
        assert table["cuda"].__name__ == f"triton_{op}"  # imports mini_llm.kernels.cuda on its first call
    with pytest.raises(KeyError, match="the registered operations are quantize, dequantize, gemv, matmul"):
        registry.lookup("gemm", "cpu")


def test_dispatch_by_device():
    for op in registry.OPS:
        assert registry.lookup(op, "cpu") is getattr(cpu, op)
        assert registry.lookup(op, torch.device("meta")) is getattr(reference, op)  # no kernel there: the default
        assert registry.lookup(op, "cuda") is registry.registered(op)["cuda"]
        assert registry.lookup(op, "cpu", backend="reference") is getattr(reference, op)


def test_a_device_without_an_entry_or_default_is_named_with_the_registered_ones(monkeypatch):
    monkeypatch.delitem(registry.IMPLEMENTATIONS["gemv"], registry.DEFAULT)
    with pytest.raises(NotImplementedError, match=r"for device 'meta'; registered: cpu, cuda"):
        registry.lookup("gemv", torch.device("meta"))
    packed, state = quantize(torch.randn(4, 64))
    with pytest.raises(NotImplementedError, match=r"'gemv' for device 'meta'; registered: cpu, cuda"):
        kernels.gemv(packed.to("meta"), state, torch.randn(64, device="meta"))


def test_meta_tensors_run_the_pure_torch_default():
    packed, state = quantize(torch.randn(4, 64))
    y = kernels.gemv(packed.to("meta"), state, torch.randn(64, device="meta"))
    assert y.device.type == "meta" and y.shape == (4,)
    W = kernels.dequantize(packed.to("meta"), state)
    assert W.device.type == "meta" and W.shape == (4, 64)


def test_mixed_devices_are_refused_naming_both():
    packed, state = quantize(torch.randn(4, 64))
    with pytest.raises(NotImplementedError, match=r"packed and x must be on one device for k-bit 'gemv', got \['cpu', "
                                                  r"'meta'\]"):
        kernels.gemv(packed, state, torch.randn(64, device="meta"))


def test_cpu_tensors_run_numba_and_backend_reference_runs_the_default(monkeypatch):
    packed, state = quantize(torch.randn(4, 64))
    calls = []
    for op in ("gemv", "matmul", "dequantize"):
        for device in ("cpu", registry.DEFAULT):
            impl = registry.registered(op)[device]
            monkeypatch.setitem(registry.IMPLEMENTATIONS[op], device,
                                lambda *a, op=op, device=device, impl=impl: calls.append((op, device)) or impl(*a))
    kernels.gemv(packed, state, torch.randn(64))
    kernels.gemv(packed, state, torch.randn(1, 64))
    kernels.gemv(packed, state, torch.randn(3, 64))
    kernels.dequantize(packed, state)
    kernels.gemv(packed, state, torch.randn(3, 64), backend="reference")
    kernels.dequantize(packed, state, backend="reference")
    assert calls == [("gemv", "cpu"), ("gemv", "cpu"), ("matmul", "cpu"), ("dequantize", "cpu"),
                     ("matmul", registry.DEFAULT), ("dequantize", registry.DEFAULT)]


def test_arguments_are_checked_before_any_implementation_runs(monkeypatch):
    def never(*args):
        raise AssertionError("an implementation ran on invalid arguments")

    packed, state = quantize(torch.randn(4, 64))
    for op in registry.OPS:
        for device in registry.registered(op):
            monkeypatch.setitem(registry.IMPLEMENTATIONS[op], device, never)
    layout = (packed, state.bits, state.shape, state.code, state.absmax, state.offset, state.blocksize)
    with pytest.raises(ValueError, match=r"packed has 127 bytes but the state \(256 values of 4 bits\) needs 128"):
        registry.call("gemv", packed[1:], *layout[1:], torch.randn(64))
    with pytest.raises(ValueError, match=r"x must have shape \(64,\) or \(B, 64\)"):
        registry.call("matmul", *layout, torch.randn(2, 63))
    with pytest.raises(ValueError, match="dtype must be float16, bfloat16, float32 or float64"):
        registry.call("dequantize", *layout, torch.int8)
    with pytest.raises(ValueError, match=r"code must be a floating-point tensor of shape \(16,\)"):
        registry.call("quantize", torch.randn(64), state.code[:8], 4, 64, False)
    with pytest.raises(ValueError, match="blocksize must be a power of two"):
        registry.call("quantize", torch.randn(64), state.code, 4, 48, False)
    with pytest.raises(ValueError, match="A must be a non-empty"):
        registry.call("quantize", torch.zeros(0), state.code, 4, 64, False)


def test_backend_names_are_checked_by_the_device_entry():
    packed, state = quantize(torch.randn(4, 64))
    with pytest.raises(ValueError, match="backend must be one of auto, simd, portable, int8, reference, got 'triton'"):
        kernels.gemv(packed, state, torch.randn(64), backend="triton")
    with pytest.raises(ValueError, match="backend for the Numba quantize and dequantize must be auto or reference"):
        kernels.dequantize(packed, state, backend="portable")
    with pytest.raises(ValueError, match="backend for the pure-torch reference must be one of auto, reference"):
        reference.gemv(packed, state.bits, state.shape, state.code, state.absmax, None, 64, torch.randn(64), "simd")


# sha256 (first 16 hex digits) of packed, absmax, offset and code of quant.quantize on a fixed float64 (37, 100)
# matrix, computed with the code before the registry (quant wired straight to the Numba kernels); bits 2..8 x
# (codebook, blocksize, centered) in the order of SETTINGS, joined by spaces and hashed again.
SETTINGS = [("nf", 64, False), ("int", 32, True), ("float", None, False), ("quantile", 128, True),
            ("dynamic", 4096, False)]
PACKED_BEFORE = "d1be3cba0edf588291dd318973d034775b6b12f70ad7be72fde29bfe61d76b6c"
NF4_FIRST_BYTES = [74, 204, 229, 165, 20, 131, 108, 170]


def state_digest(packed: torch.Tensor, state) -> str:
    h = hashlib.sha256()
    for t in (packed, state.absmax, state.offset, state.code):
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def test_packed_outputs_are_bit_identical_to_before_the_registry():
    W = torch.from_numpy(np.random.default_rng(16).standard_normal((37, 100)))  # float64, odd sizes
    digests = []
    for bits in range(2, 9):
        for book, blocksize, centered in SETTINGS:
            packed, state = quantize(W, bits, book, blocksize, centered=centered)
            digests.append(state_digest(packed, state))
            if (bits, book) == (4, "nf"):
                assert packed[:8].tolist() == NF4_FIRST_BYTES
                assert state.absmax[:3].tolist() == [2.264504909515381, 2.5217154026031494, 2.2689993381500244]
    assert hashlib.sha256(" ".join(digests).encode()).hexdigest() == PACKED_BEFORE


def test_quant_imports_no_backend_and_has_no_cycle():
    """mini_llm.quant reaches kernels through the registry's entry points only (never cpu, cpu_simd or cuda), and its
    modules import each other at module level without a cycle (no import hidden inside a function)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "mini_llm" / "quant").glob("*.py")):
        tree = ast.parse(path.read_text())
        name = f"mini_llm.quant.{path.stem}"
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mini_llm"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                assert not any(t.startswith(("mini_llm.kernels.cpu", "mini_llm.kernels.cuda")) for t in targets), name
                assert node.col_offset == 0, f"{name} imports {node.module} inside a function"
                graph[name] |= {t for t in targets if t.startswith("mini_llm.quant.") and t.count(".") == 2}
    graph.pop("mini_llm.quant.__init__")
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for target in graph.get(module, ()):
            visit(target, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_cuda_entry_without_triton_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "triton", None)  # import triton raises ImportError
    monkeypatch.delitem(sys.modules, "mini_llm.kernels.cuda", raising=False)
    packed, state = quantize(torch.randn(4, 64))
    with pytest.raises(ImportError, match=r"need Triton: pip install 'mini-llm\[gpu\]'.*backend='reference'"):
        registry.registered("dequantize")["cuda"](packed, 4, (4, 64), state.code, state.absmax, None, 64,
                                                  torch.float32, "auto")
