"""Pruning masks for a linear layer's weight (out, in), and the bits a pruned matrix takes when stored honestly.

- ``magnitude_mask``  unstructured: drop the smallest |W| of the whole matrix (Han et al., 2015).
- ``wanda_mask``      per output row: drop the smallest |W_ij| * ||X_j||_2, the weight times the norm of its input
                      over calibration tokens (Sun et al., "A Simple and Effective Pruning Approach for Large Language
                      Models", ICLR 2024).
- ``semi_structured_mask``  n:m, e.g. 2:4: in every group of m consecutive inputs of a row keep the n largest scores
                      (the pattern NVIDIA's sparse tensor cores run; Mishra et al., 2021).
A mask is a bool tensor of W's shape, True where the weight is kept. ``pruned_bits`` counts the values kept plus the
index overhead of the storage format: "bitmask" (1 bit per position), "csr" (a 32-bit column index per kept value and
a 32-bit row pointer per row + 1) or "2:4" (2 bits of position metadata per kept value).
"""

from __future__ import annotations

import torch

from mini_llm.helpers import check_choice, check_int, check_number
from mini_llm.quant.checks import check_weight

SPARSE_FORMATS = ("bitmask", "csr", "2:4")


def _check_sparsity(sparsity: object) -> float:
    """sparsity as a float in [0, 1): the share of weights to drop."""
    return check_number("sparsity", sparsity, 0.0, 1.0, high_open=True, allowed="a number in [0, 1)")


def _drop_lowest(scores: torch.Tensor, n_drop: int) -> torch.Tensor:
    """Mask of scores (rows, k): per row, False at the n_drop lowest scores (ties: the lower index first)."""
    mask = torch.ones_like(scores, dtype=torch.bool)
    if n_drop:
        order = torch.argsort(scores, dim=-1, stable=True)[..., :n_drop]  # (rows, n_drop)
        mask.scatter_(-1, order, False)
    return mask


def magnitude_mask(W: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep all but the round(sparsity * numel) smallest |W| of the whole matrix."""
    W = check_weight(W)
    n_drop = round(_check_sparsity(sparsity) * W.numel())
    return _drop_lowest(W.abs().reshape(1, -1), n_drop).reshape(W.shape)


def _input_norms(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """||X_j||_2 over the calibration tokens for each input j: X (n, in) -> (in,)."""
    X = check_weight(X, "X")
    if X.dim() != 2 or X.size(1) != W.size(-1):
        raise ValueError(f"X must be calibration inputs of shape (n, in_features = {W.size(-1)}), got "
                         f"{tuple(X.shape)}")
    return X.double().norm(dim=0)  # (in,)


def wanda_mask(W: torch.Tensor, X: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Per output row, drop the round(sparsity * in) weights with the smallest |W_ij| * ||X_j||_2."""
    W = check_weight(W)
    scores = W.abs().double() * _input_norms(W, X)  # (out, in)
    return _drop_lowest(scores, round(_check_sparsity(sparsity) * W.size(-1)))


def semi_structured_mask(W: torch.Tensor, n: int = 2, m: int = 4, X: torch.Tensor | None = None) -> torch.Tensor:
    """n:m sparsity: in every group of m consecutive inputs of each row keep the n largest |W| (|W| ||X|| with X)."""
    W = check_weight(W)
    m = check_int("m", m, 1)
    n = check_int("n", n, 1, m - 1 if m > 1 else 1)
    if W.dim() != 2 or W.size(1) % m:
        raise ValueError(f"{n}:{m} sparsity needs a 2-D weight whose in_features is divisible by m = {m}, got shape "
                         f"{tuple(W.shape)}")
    scores = W.abs().double() if X is None else W.abs().double() * _input_norms(W, X)  # (out, in)
    groups = scores.reshape(W.size(0), -1, m)  # (out, in / m, m)
    return _drop_lowest(groups.reshape(-1, m), m - n).reshape(W.shape)


def pruned_bits(mask: torch.Tensor, value_bits: int, storage: str = "bitmask") -> int:
    """Exact bits of a pruned matrix: kept values at value_bits each plus the storage format's index overhead."""
    check_choice("storage", storage, SPARSE_FORMATS)
    value_bits = check_int("value_bits", value_bits, 1, 32)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        raise ValueError(f"mask must be a 2-D bool tensor (True = kept), got {getattr(mask, 'dtype', type(mask))}")
    kept = int(mask.sum())
    if storage == "bitmask":
        return kept * value_bits + mask.numel()
    if storage == "csr":
        return kept * (value_bits + 32) + 32 * (mask.size(0) + 1)
    per_group = mask.reshape(mask.size(0), -1, 4).sum(dim=-1) if mask.size(1) % 4 == 0 else None
    if per_group is None or bool((per_group > 2).any()):
        raise ValueError("storage '2:4' needs a mask with at most 2 kept values in every group of 4 inputs")
    return 2 * mask.size(0) * (mask.size(1) // 4) * (value_bits + 2)  # 2 slots per group, stored even if zero
