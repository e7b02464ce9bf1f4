"""SGD with momentum and Adam, the update rules written out (chapter 3.5).

Both subclass ``torch.optim.Optimizer`` (through ``_ExplicitOptimizer``, whose ``step`` runs the closure and
calls ``update`` on every parameter with a gradient) only for its bookkeeping (parameter groups, ``state_dict``,
``load_state_dict``, ``zero_grad``); every update is computed explicitly in ``update`` below and checked
against ``torch.optim`` in ``tests/test_train.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from mini_llm.helpers import check_number

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class _ExplicitOptimizer(torch.optim.Optimizer):
    """The step both optimizers share: run the closure, then ``update`` every parameter that has a gradient."""

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Apply the update rule to parameter p (p.grad is set) of the parameter group group."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """Apply one update to every parameter that has a gradient; return the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, group)
        return loss


class SGD(_ExplicitOptimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    With g_t = dL/dθ + λ θ (λ = weight_decay) and μ = momentum:
        v_1 = g_1,  v_t = μ v_{t-1} + g_t       (the velocity, "momentum_buffer")
        θ_t = θ_{t-1} - lr v_t                  (Nesterov: θ_t = θ_{t-1} - lr (g_t + μ v_t))
    This is PyTorch's form; with a constant lr it equals the textbook v_t = μ v_{t-1} - lr g_t, θ_t = θ_{t-1} + v_t.
    """

    def __init__(
        self, params: Params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False
    ) -> None:
        check_number("lr", lr, 0.0, math.inf, high_open=True)
        check_number("momentum", momentum, 0.0, 1.0, high_open=True)
        check_number("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        if nesterov and momentum == 0:
            raise ValueError(f"nesterov=True needs momentum in (0, 1), got momentum={momentum!r}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
        super().__init__(params, defaults)

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """θ ← θ - lr v_t for one parameter p with a gradient."""
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        g = p.grad  # same shape as p
        if wd != 0:
            g = g + wd * p  # g_t = dL/dθ + λ θ
        if mu != 0:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.clone()  # v_1 = g_1
            else:
                state["momentum_buffer"].mul_(mu).add_(g)  # v_t = μ v_{t-1} + g_t
            v = state["momentum_buffer"]
            g = g + mu * v if group["nesterov"] else v
        p.sub_(lr * g)  # θ_t = θ_{t-1} - lr v_t


class Adam(_ExplicitOptimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; AdamW with ``decoupled_weight_decay=True``.

    With g_t the gradient at step t = 1, 2, ...:
        m_t = β1 m_{t-1} + (1 - β1) g_t          (first moment, "exp_avg"; m_0 = 0)
        v_t = β2 v_{t-1} + (1 - β2) g_t²         (second moment, "exp_avg_sq"; v_0 = 0)
        m̂_t = m_t / (1 - β1^t),  v̂_t = v_t / (1 - β2^t)     (bias correction)
        θ_t = θ_{t-1} - lr m̂_t / (√v̂_t + ε)
    ``bias_correction=False`` uses m_t and v_t directly, as the source's formula does: the first steps are then
    (1 - β1) / √(1 - β2) ≈ 3.16 times too large for the defaults.
    Weight decay λ: Adam adds λ θ to g_t (L2); AdamW (Loshchilov & Hutter, 2019) instead shrinks
    θ ← θ (1 - lr λ) before the update.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        bias_correction: bool = True,
    ) -> None:
        check_number("lr", lr, 0.0, math.inf, high_open=True)
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_number("betas[0]", betas[0], 0.0, 1.0, high_open=True)
        check_number("betas[1]", betas[1], 0.0, 1.0, high_open=True)
        check_number("eps", eps, 0.0, math.inf, low_open=True, high_open=True)
        check_number("weight_decay", weight_decay, 0.0, math.inf, high_open=True)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decoupled_weight_decay": decoupled_weight_decay,
            "bias_correction": bias_correction,
        }
        super().__init__(params, defaults)

    def update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """θ ← θ - lr m̂_t / (√v̂_t + ε) for one parameter p with a gradient."""
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        g = p.grad  # same shape as p
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # m_0 = 0
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)  # v_0 = 0
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * wd)  # AdamW: θ ← θ (1 - lr λ)
            else:
                g = g + wd * p  # Adam + L2: g_t = dL/dθ + λ θ
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)  # m_t = β1 m_{t-1} + (1 - β1) g_t
        v.mul_(beta2).add_((1 - beta2) * g * g)  # v_t = β2 v_{t-1} + (1 - β2) g_t²
        if group["bias_correction"]:
            m_hat = m / (1 - beta1**t)  # m̂_t = m_t / (1 - β1^t)
            v_hat = v / (1 - beta2**t)  # v̂_t = v_t / (1 - β2^t)
        else:
            m_hat, v_hat = m, v  # the source's formula: no bias correction
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))  # θ_t = θ_{t-1} - lr m̂_t / (√v̂_t + ε)
