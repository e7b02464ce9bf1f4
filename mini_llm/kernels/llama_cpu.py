"""One decode step of a Llama-family decoder with k-bit linear layers, compiled whole by Numba for the CPU.

In eager PyTorch a decode step of SmolLM2-135M is ~900 small calls (7 GEMVs, 2 norms, rotary, attention per layer),
each paying Python and dispatch costs of microseconds, which together outweigh the k-bit GEMVs themselves. Here the
step is one Numba function: per layer an RMSNorm, one GEMV for q, k and v stacked, rotary embeddings, the new key
and value written into a preallocated cache, grouped-query attention over the cache, one GEMV for o, an RMSNorm,
one GEMV for gate and up stacked, SiLU(gate) * up, one GEMV for down. The GEMVs are the k-bit kernels of
mini_llm.kernels.cpu (``row_kernel``: the AVX-512 or AVX2 kernel where it applies, the portable one otherwise),
called from inside the compiled step. The arithmetic follows ``mini_llm.nn.llama`` in float32.

Arrays (L layers, C width, F hidden width, H query heads, H_kv key/value heads of D dims, S cache positions):
stacked packed weights and block scales (L, bytes) and (L, blocks) per stacked matrix; ln1, ln2 (L, C) the two
RMSNorm weights; theta (D/2,) the rotary frequencies; k_cache, v_cache (L, H_kv, S, D).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def rms_norm(x, weight, eps):  # pragma: no cover - compiled
    """x / sqrt(mean(x^2) + eps) * weight for x (C,), in float32 like nn.llama.RMSNorm."""
    mean_square = np.float32(np.sum(x * x) / x.size)
    return weight * (x * np.float32(1.0 / np.sqrt(mean_square + eps)))


@njit(cache=True)
def rotate(x, n_heads, pos, theta):  # pragma: no cover - compiled
    """Rotary embedding in place for x (n_heads * D,) at position pos, halves (i, i + D/2) paired (rotate_half)."""
    half = theta.size
    D = 2 * half
    for i in range(half):
        angle = np.float32(pos) * theta[i]
        c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        for h in range(n_heads):
            a, b = x[h * D + i], x[h * D + half + i]
            x[h * D + i] = a * c - b * s
            x[h * D + half + i] = b * c + a * s


@njit(cache=True)
def cached_attention(q, k_cache, v_cache, n_head, length):  # pragma: no cover - compiled
    """softmax(q k^T / sqrt(D)) v for one query per head q (H * D,) over the first length cache positions of
    k_cache, v_cache (H_kv, S, D); query head h reads key/value head h // (H / H_kv). Returns (H * D,)."""
    n_kv, _, D = k_cache.shape
    groups = n_head // n_kv
    scale = np.float32(1.0 / np.sqrt(D))
    y = np.zeros(n_head * D, dtype=np.float32)
    scores = np.empty(length, dtype=np.float32)
    for h in range(n_head):
        g = h // groups
        qh = q[h * D:(h + 1) * D]
        top = -np.inf
        for s in range(length):
            scores[s] = np.sum(qh * k_cache[g, s]) * scale
            top = max(top, scores[s])
        total = np.float32(0.0)
        for s in range(length):
            scores[s] = np.exp(scores[s] - top)
            total += scores[s]
        yh = y[h * D:(h + 1) * D]
        for s in range(length):
            yh += (scores[s] / total) * v_cache[g, s]
    return y


@njit(cache=True)
def silu_product(gate_up, n_inner):  # pragma: no cover - compiled
    """silu(gate) * up for gate_up (2F,) = gate (F,) then up (F,)."""
    gate, up = gate_up[:n_inner], gate_up[n_inner:]
    return gate / (np.float32(1.0) + np.exp(-gate)) * up


_STEPS: dict[tuple[int, int], object] = {}


def decode_step(matvec_width, matvec_inner):
    """The step for these two row kernels, compiled on its first call (a few seconds) and kept for the process."""
    key = (id(matvec_width), id(matvec_inner))  # row_kernel keeps its kernels alive, so ids are not reused
    if key not in _STEPS:
        _STEPS[key] = _build_decode_step(matvec_width, matvec_inner)
    return _STEPS[key]


def _build_decode_step(matvec_width, matvec_inner):
    """The compiled step(x, pos, n_head, n_kv_head, n_inner, eps, ln1, ln2, theta, qkv, qkv_scales, o, o_scales,
    gate_up, gate_up_scales, down, down_scales, k_cache, v_cache) -> x (C,) after the last block (before the final
    norm).

    matvec_width and matvec_inner are ``cpu.row_kernel`` functions run(packed, absmax, x (1, K), out (1, N)) for rows
    of C and of F codes. x (C,) is the embedded token at position pos; the step writes its keys and values into
    k_cache[:, :, pos] and v_cache[:, :, pos] and attends over positions 0..pos.
    """

    @njit
    def step(x, pos, n_head, n_kv_head, n_inner, eps, ln1, ln2, theta, qkv, qkv_scales, o, o_scales, gate_up,
             gate_up_scales, down, down_scales, k_cache, v_cache):  # pragma: no cover - compiled
        C = x.size
        D = C // n_head
        kv_width = n_kv_head * D
        x = x.copy()
        qkv_out = np.empty((1, C + 2 * kv_width), dtype=np.float32)
        o_out = np.empty((1, C), dtype=np.float32)
        gate_up_out = np.empty((1, 2 * n_inner), dtype=np.float32)
        for layer in range(ln1.shape[0]):
            h = rms_norm(x, ln1[layer], eps).reshape(1, C)
            matvec_width(qkv[layer], qkv_scales[layer], h, qkv_out)
            q = qkv_out[0, :C].copy()
            k = qkv_out[0, C:C + kv_width].copy()
            rotate(q, n_head, pos, theta)
            rotate(k, n_kv_head, pos, theta)
            for g in range(n_kv_head):
                k_cache[layer, g, pos] = k[g * D:(g + 1) * D]
                v_cache[layer, g, pos] = qkv_out[0, C + kv_width + g * D:C + kv_width + (g + 1) * D]
            y = cached_attention(q, k_cache[layer], v_cache[layer], n_head, pos + 1).reshape(1, C)
            matvec_width(o[layer], o_scales[layer], y, o_out)
            x += o_out[0]
            h = rms_norm(x, ln2[layer], eps).reshape(1, C)
            matvec_width(gate_up[layer], gate_up_scales[layer], h, gate_up_out)
            a = silu_product(gate_up_out[0], n_inner).reshape(1, n_inner)
            matvec_inner(down[layer], down_scales[layer], a, o_out)
            x += o_out[0]
        return x

    return step
