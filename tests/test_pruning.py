"""Pruning masks worked out by hand, and the bits of a pruned matrix in each storage format."""

import pytest
import torch

from mini_llm.quant.pruning import magnitude_mask, pruned_bits, semi_structured_mask, wanda_mask

W = torch.tensor([[0.1, -2.0, 0.3, 4.0], [-0.5, 0.05, 1.0, -0.2]])  # (out 2, in 4)


def test_magnitude_mask_by_hand():
    keep = magnitude_mask(W, 0.5)  # drop the 4 smallest |W| of 8: 0.05, 0.1, 0.2, 0.3
    assert keep.tolist() == [[False, True, False, True], [True, False, True, False]]
    assert magnitude_mask(W, 0.0).all() and int(magnitude_mask(W, 0.9).sum()) == 1  # round(7.2) = 7 dropped


def test_wanda_weighs_by_the_input_norm():
    X = torch.tensor([[10.0, 0.0, 0.0, 0.1], [0.0, 0.1, 1.0, 0.0]])  # (n 2, in 4): ||X_j|| = 10, 0.1, 1, 0.1
    keep = wanda_mask(W, X, 0.5)  # per row, scores |W| ||X||: row 0 = 1, 0.2, 0.3, 0.4; row 1 = 5, 0.005, 1, 0.02
    assert keep.tolist() == [[True, False, False, True], [True, False, True, False]]
    assert (keep.sum(dim=1) == 2).all()  # the same number dropped in every row, unlike magnitude pruning


def test_two_four_by_hand_and_bits():
    keep = semi_structured_mask(W)  # 2:4 on |W|: each row is one group of 4
    assert keep.tolist() == [[False, True, False, True], [True, False, True, False]]
    big = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    mask = semi_structured_mask(big)
    assert (mask.reshape(6, 4, 4).sum(-1) == 2).all()
    assert pruned_bits(mask, 16, "2:4") == 6 * 4 * 2 * (16 + 2)  # 2 values + 2-bit positions per group of 4
    assert pruned_bits(mask, 16, "bitmask") == 48 * 16 + 96
    assert pruned_bits(mask, 16, "csr") == 48 * (16 + 32) + 32 * 7
    # bits per weight: 2:4 at 16-bit values costs 9 bits, a 50% bitmask 9 bits, CSR 24+ bits
    assert pruned_bits(mask, 16, "2:4") / mask.numel() == 9.0


def test_bad_input():
    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\), got 1.0"):
        magnitude_mask(W, 1.0)
    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\), got -0.1"):
        wanda_mask(W, torch.ones(3, 4), -0.1)
    with pytest.raises(ValueError, match=r"in_features is divisible by m = 4, got shape \(2, 6\)"):
        semi_structured_mask(torch.ones(2, 6))
    with pytest.raises(ValueError, match=r"X must be calibration inputs of shape \(n, in_features = 4\)"):
        wanda_mask(W, torch.ones(3, 5), 0.5)
    with pytest.raises(ValueError, match="storage must be one of"):
        pruned_bits(magnitude_mask(W, 0.5), 16, "coo")
    with pytest.raises(ValueError, match="at most 2 kept values in every group of 4"):
        pruned_bits(magnitude_mask(torch.ones(2, 4), 0.0), 16, "2:4")
    with pytest.raises(ValueError, match="W must be finite"):
        magnitude_mask(torch.tensor([[float("nan"), 1.0]]), 0.5)
