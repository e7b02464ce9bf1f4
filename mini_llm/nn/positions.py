"""Position information without a learned table: rotary embeddings (RoPE) and ALiBi's linear attention biases.

- RoPE (Su et al., "RoFormer", 2021/2024): each pair of query/key dimensions (i, i + D/2) is rotated by the angle
  pos * theta_i, theta_i = base^(-2i/D), so q·k depends on the positions only through their difference. The pairing
  (first half with second half, ``rotate_half``) is LLaMA's and transformers'. Two ways to run a model past the length
  it was trained on, applied at inference: position interpolation (``"linear"``: positions divided by the factor;
  Chen et al., 2023) and NTK-aware scaling (``"ntk"``: base multiplied by factor^(D / (D - 2)), so the lowest
  frequency is interpolated while the highest stay as trained).
- ALiBi (Press, Smith & Lewis, "Train Short, Test Long", ICLR 2022): no position input at all; head h adds
  -m_h * (i - j) to the score of query i and key j, with the geometric slopes m_h of ``alibi_slopes``.
"""

from __future__ import annotations

import math

import torch

from mini_llm.helpers import check_choice, check_int, check_number

ROPE_SCALINGS = ("linear", "ntk")


def check_rope(head_dim: int, base: float, scaling: str | None, factor: float) -> tuple[int, float, float]:
    """(head_dim, base, factor) checked (nothing is allocated); ValueError naming the setting otherwise."""
    head_dim = check_int("head_dim", head_dim, 2)
    if head_dim % 2:
        raise ValueError(f"rotary embeddings rotate pairs of dimensions: head_dim must be even, got {head_dim}")
    base = check_number("rope_base", base, 1.0, math.inf, low_open=True, high_open=True, allowed="a finite number > 1")
    factor = check_number("rope_factor", factor, 1.0, math.inf, high_open=True, allowed="a finite number >= 1")
    if scaling is not None:
        check_choice("rope_scaling", scaling, ROPE_SCALINGS)
    return head_dim, base, factor


def rope_frequencies(
    head_dim: int, base: float = 10000.0, scaling: str | None = None, factor: float = 1.0
) -> torch.Tensor:
    """theta_i = base^(-2i/D) for i < D/2, (D/2,) float32, with the inference-time scaling applied."""
    head_dim, base, factor = check_rope(head_dim, base, scaling, factor)
    if scaling == "ntk":
        base = base * factor ** (head_dim / (head_dim - 2))
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim  # (D/2,)
    theta = base**-exponents  # (D/2,)
    if scaling == "linear":
        theta = theta / factor  # the same as dividing the positions by the factor
    return theta.float()


def rope_cos_sin(positions: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of positions (T,) times theta (D/2,), each (T, D) with the D/2 angles repeated."""
    angles = positions.float()[:, None] * theta.to(positions.device)[None, :]  # (T, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, D)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x (B, H, T, D) by the angles of cos, sin (T, D)."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)  # (B, H, T, D)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's head slopes (H,): 2^(-8h/n) for h = 1..n when n is a power of two; otherwise the slopes of the
    closest smaller power of two followed by every other slope of the next power of two (the paper's code)."""
    n_head = check_int("n_head", n_head, 1)

    def power_of_two(n: int) -> list[float]:
        return [2 ** (-8 * h / n) for h in range(1, n + 1)]

    closest = 2 ** math.floor(math.log2(n_head))
    slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
    """The additive bias (H, T, S): -slope_h * (i - j) for query position i and key position j."""
    distance = query_positions[:, None] - key_positions[None, :]  # (T, S)
    return -slopes.to(distance.device)[:, None, None] * distance.float()[None]  # (H, T, S)
