"""Chapter 8's own pieces: the zoo points of the compute-optimal fit, and the loss by domain with <unk> targets."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mini_llm.nn import GPT, GPTConfig
from mini_llm.scaling.chinchilla import CHINCHILLA, LossSurface
from mini_llm.trends.compute_optimal import ZooPoint, isoflop_rows, schedule_gaps, select_points
from mini_llm.trends.domains import domain_loss

SURFACE = LossSurface(**CHINCHILLA)


def point(model, n, tokens, preset_set="main", finished=False, loss=None, seed=0):
    """A zoo point on the Chinchilla surface unless a loss is given."""
    value = float(SURFACE.predict(n, tokens)) if loss is None else loss
    return ZooPoint(model, preset_set, seed, {"non-embedding": n, "total": 10 * n}, tokens, value, finished)


def test_select_points_and_schedule_gaps():
    points = [point("1x32", 1e4, 749_568, loss=5.8), point("1x32", 1e4, 5_996_544, finished=True),
              point("1x32", 1e4, 753_664, "eighth", finished=True, loss=6.3),
              point("1x64", 5e4, 753_664, "eighth", finished=True, loss=6.0)]  # no main checkpoint of 1x64
    assert select_points(points, "checkpoints") == points[:2]
    assert select_points(points, "finished") == points[1:]
    gaps = schedule_gaps(points)
    assert len(gaps) == 1 and gaps[0]["model"] == "1x32" and gaps[0]["gap"] == pytest.approx(5.8 - 6.3)
    assert schedule_gaps(points, tolerance=0.001) == []  # 753,664 / 749,568 - 1 = 0.5%
    with pytest.raises(ValueError, match="point_set"):
        select_points(points, "all")


def test_isoflop_rows_pick_the_lowest_loss_on_each_budget():
    sizes = {"s": 1e4, "m": 3e4, "l": 1e5, "xl": 3e5}
    tokens = [1e6, 2e6, 4e6, 8e6]
    points = [point(name, n, d, finished=d == tokens[-1]) for name, n in sizes.items() for d in tokens]
    rows = [r for r in isoflop_rows(points, budgets=5) if r["count"] == "non-embedding"]
    assert len(rows) == 5
    for row in rows:
        reach = {name: n for name, n in sizes.items() if 1e6 <= row["flops"] / (6 * n) * (1 + 1e-9)
                 and row["flops"] / (6 * n) <= 8e6 * (1 + 1e-9)}
        assert row["models"] == len(reach)
        # the best model is the one whose interpolated loss is lowest; on this smooth surface, check by prediction
        predicted = {name: float(SURFACE.predict(n, row["flops"] / (6 * n))) for name, n in reach.items()}
        assert abs(predicted[row["best_model"]] - min(predicted.values())) < 0.01
        assert row["best_tokens_per_param"] == pytest.approx(row["flops"] / 6 / row["best_params"] ** 2)


def test_domain_loss_masks_unk_targets_against_float64():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.0)).eval()
    x = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1))  # (W, T)
    y = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(2))  # (W, T)
    y[0, :3] = 0  # <unk> targets
    measured = domain_loss(model, x, y, unk_id=0, batch_size=2)
    with torch.no_grad():
        nats = F.cross_entropy(model(x).logits.double().flatten(0, 1), y.flatten(), reduction="none").numpy()
    known = y.flatten().numpy() != 0
    assert measured["loss"] == pytest.approx(nats.mean(), rel=1e-5)
    assert measured["loss_known"] == pytest.approx(nats[known].mean(), rel=1e-5)
    assert measured["unk_share"] == pytest.approx(1 - known.mean())
    assert math.isfinite(measured["loss"]) and np.sum(~known) >= 3
