"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

The student learns from the data and from a teacher's softened distribution over the same vocabulary:

    loss = (1 - alpha) * CE(student logits, targets) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

T > 0 is the temperature (T > 1 shows the student the teacher's small probabilities); the factor T^2 keeps the
gradient of the soft term on the scale of the hard term as T changes (Hinton et al., section 2). Both terms are means
over the B*T positions. ``Distillation(teacher)`` is a Trainer ``loss_fn``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mini_llm.helpers import check_number


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """The loss above for logits (..., V) of student and teacher and targets (...,) (-100 = ignore)."""
    temperature = check_number("temperature", temperature, 0.0, math.inf, low_open=True, high_open=True,
                               allowed="a finite number > 0")
    alpha = check_number("alpha", alpha, 0.0, 1.0, allowed="a number in [0, 1]")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"the teacher and the student must share one vocabulary: logits of shape {tuple(teacher_logits.shape)} "
            f"(teacher) and {tuple(student_logits.shape)} (student)"
        )
    vocab = student_logits.size(-1)
    student, teacher = student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab)  # (N, V)
    flat_targets = targets.reshape(-1)  # (N,)
    hard = F.cross_entropy(student, flat_targets, ignore_index=-100)
    keep = flat_targets != -100  # (N,): the soft term uses the same positions
    log_p_student = F.log_softmax(student[keep] / temperature, dim=-1)  # (N', V)
    log_p_teacher = F.log_softmax(teacher[keep] / temperature, dim=-1)  # (N', V)
    soft = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")  # KL(teacher || student)
    return (1 - alpha) * hard + alpha * temperature**2 * soft


class Distillation:
    """A Trainer ``loss_fn``: the distillation loss of ``model(x)`` against ``teacher(x)`` (no gradient) and y."""

    def __init__(self, teacher: torch.nn.Module, temperature: float = 2.0, alpha: float = 0.5) -> None:
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), temperature, alpha)
        self.teacher = teacher.eval()
        self.temperature, self.alpha = temperature, alpha

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss of the student ``model`` on a batch x (B, T), y (B, T)."""
        with torch.no_grad():
            teacher_logits = getattr(out := self.teacher(x), "logits", out)  # (B, T, V)
        student_logits = getattr(out := model(x), "logits", out)  # (B, T, V)
        return distillation_loss(student_logits, teacher_logits, y, self.temperature, self.alpha)
