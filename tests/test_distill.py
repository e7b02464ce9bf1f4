"""The distillation loss against a float64 closed form, its limits, and a student trained with it."""

import numpy as np
import pytest
import torch

from mini_llm.nn import GPT, GPTConfig
from mini_llm.train import TokenBatches, Trainer, TrainerConfig
from mini_llm.train.distill import Distillation, distillation_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def log_softmax64(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize(("temperature", "alpha"), [(1.0, 0.5), (2.0, 0.3), (4.0, 1.0), (0.5, 0.0)])
def test_matches_the_closed_form(temperature, alpha):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 7, generator=g), 2 * torch.randn(3, 5, 7, generator=g)  # (B, T, V)
    y = torch.randint(7, (3, 5), generator=g)
    y[0, :2] = -100  # ignored positions leave both terms
    keep = (y != -100).numpy().reshape(-1)
    s64, t64, y64 = s.double().numpy().reshape(-1, 7)[keep], t.double().numpy().reshape(-1, 7)[keep], y.numpy()
    hard = -np.mean(log_softmax64(s64)[np.arange(keep.sum()), y64.reshape(-1)[keep]])
    p_t, log_p_t, log_p_s = np.exp(log_softmax64(t64 / temperature)), log_softmax64(t64 / temperature), \
        log_softmax64(s64 / temperature)
    kl = np.mean(np.sum(p_t * (log_p_t - log_p_s), axis=-1))  # KL(teacher || student) per position, averaged
    expected = (1 - alpha) * hard + alpha * temperature**2 * kl
    assert distillation_loss(s, t, y, temperature, alpha).item() == pytest.approx(expected, rel=1e-5)


def test_limits():
    s = torch.randn(4, 9, generator=torch.Generator().manual_seed(1))
    y = torch.randint(9, (4,), generator=torch.Generator().manual_seed(2))
    assert distillation_loss(s, s, y, 3.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)  # a student equal to teacher
    assert distillation_loss(s, s + 5, y, 3.0, 0.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(s, y).item())  # alpha = 0: plain cross-entropy


def test_a_student_learns_from_the_teacher():
    torch.manual_seed(0)
    teacher = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16))
    tokens = torch.randint(16, (13,), generator=torch.Generator().manual_seed(3)).repeat(40)  # a learnable sequence
    config = TrainerConfig(max_steps=60, batch_size=8, lr=1e-2, warmup_steps=5, min_lr=1e-3, eval_interval=0,
                           progress=False)
    Trainer(teacher, config, TokenBatches(tokens, 8)).train()
    teacher.zero_grad(set_to_none=True)
    before = {name: t.clone() for name, t in teacher.state_dict().items()}
    torch.manual_seed(1)
    student = GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=1, n_embd=8))
    loss_fn = Distillation(teacher, temperature=2.0, alpha=0.5)
    history = Trainer(student, config, TokenBatches(tokens, 8), loss_fn=loss_fn).train()
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert all(p.grad is None for p in teacher.parameters())  # the teacher is only read
    assert all(torch.equal(before[name], t) for name, t in teacher.state_dict().items())


def test_bad_input():
    s, y = torch.zeros(2, 5), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0"):
        distillation_loss(s, s, y, temperature=0)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\], got 1.5"):
        Distillation(torch.nn.Identity(), alpha=1.5)
    with pytest.raises(ValueError, match=r"share one vocabulary: logits of shape \(2, 6\) \(teacher\) and \(2, 5\)"):
        distillation_loss(s, torch.zeros(2, 6), y)
