"""Basic layers with explicit forward and backward: Linear, Embedding, LayerNorm, ReLU, GELU, Softmax, CrossEntropyLoss.

Every layer works in float64 unless given another ``dtype``, and is initialised from ``np.random.default_rng(seed)``
(``seed`` may also be a ``np.random.Generator``, which is then used as is, so that nested modules share one stream).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from mini_llm.helpers import check_int

from . import functional as F
from .module import Module, check_last_dim, check_token_ids, require_cache


def check_positive_int(name: str, value: int) -> None:
    """ValueError "{name} must be a positive integer, got ..." unless value is an integer >= 1."""
    check_int(name, value, 1, allowed="a positive integer")


class Linear(Module):
    """y = x W + b, with ``weight`` W of shape (in_features, out_features) -- the TRANSPOSE of torch.nn.Linear's.

    The layout follows the formula y = xW + b (and GPT-2's Conv1D); to load into torch use ``weight.T``.
    Initialisation as torch's: W and b uniform in [-1/sqrt(in_features), 1/sqrt(in_features)], unless ``init_std``
    is given, in which case W ~ N(0, init_std^2) and b = 0 (GPT-2's scheme).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init_std: float | None = None,
                 seed: int | np.random.Generator = 0, dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        rng = np.random.default_rng(seed)
        self.in_features, self.out_features = in_features, out_features
        if init_std is None:
            bound = 1.0 / np.sqrt(in_features)
            weight = rng.uniform(-bound, bound, size=(in_features, out_features))
            bias_init = rng.uniform(-bound, bound, size=out_features)
        else:
            weight = rng.normal(0.0, init_std, size=(in_features, out_features))
            bias_init = np.zeros(out_features)
        self.add_parameter("weight", weight.astype(dtype))  # (in, out)
        if bias:
            self.add_parameter("bias", bias_init.astype(dtype))  # (out,)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(..., in_features) -> (..., out_features)."""
        x = np.asarray(x)
        check_last_dim("x", x, self.in_features)
        self._x = x
        y = x @ self.params["weight"]  # (..., out)
        if "bias" in self.params:
            y = y + self.params["bias"]
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dW += x^T dy, db += sum(dy), dx = dy W^T."""
        x = require_cache(self._x, self)
        x2d = x.reshape(-1, self.in_features)  # (N, in)
        dy2d = dy.reshape(-1, self.out_features)  # (N, out)
        self.grads["weight"] += x2d.T @ dy2d  # (in, out)
        if "bias" in self.params:
            self.grads["bias"] += dy2d.sum(axis=0)  # (out,)
        return dy @ self.params["weight"].T  # (..., in)


class Embedding(Module):
    """A lookup table: ids of any shape (...) -> rows of ``weight`` (num_embeddings, embedding_dim), shape (..., C).

    Initialised N(0, 1) as torch's, or N(0, init_std^2). ``backward`` returns None: ids have no gradient.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float = 1.0,
                 seed: int | np.random.Generator = 0, dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        check_positive_int("num_embeddings", num_embeddings)
        check_positive_int("embedding_dim", embedding_dim)
        rng = np.random.default_rng(seed)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.add_parameter("weight", rng.normal(0.0, init_std, size=(num_embeddings, embedding_dim)).astype(dtype))
        self._ids: np.ndarray | None = None

    def forward(self, ids: ArrayLike) -> np.ndarray:
        """(...) integer ids -> (..., embedding_dim)."""
        ids = np.asarray(ids)
        check_token_ids("ids", ids, self.num_embeddings)
        self._ids = ids
        return self.params["weight"][ids]  # (..., C)

    def backward(self, dy: np.ndarray) -> None:
        """Scatter-add dy into the rows that were looked up (a row used twice gets both gradients)."""
        ids = require_cache(self._ids, self)
        np.add.at(self.grads["weight"], ids.reshape(-1), dy.reshape(-1, self.embedding_dim))
        return None


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance, as torch.nn.LayerNorm)."""

    def __init__(self, normalized_dim: int, eps: float = 1e-5, dtype: DTypeLike = np.float64) -> None:
        super().__init__()
        check_positive_int("normalized_dim", normalized_dim)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.normalized_dim, self.eps = normalized_dim, eps
        self.add_parameter("weight", np.ones(normalized_dim, dtype=dtype))  # (C,)
        self.add_parameter("bias", np.zeros(normalized_dim, dtype=dtype))  # (C,)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(..., C) -> (..., C)."""
        x = np.asarray(x)
        check_last_dim("x", x, self.normalized_dim)
        mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (..., 1)
        rstd = 1.0 / np.sqrt(var + self.eps)  # (..., 1)
        x_hat = (x - mean) * rstd  # (..., C)
        self._cache = (x_hat, rstd)
        return x_hat * self.params["weight"] + self.params["bias"]

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) with g = dy * weight."""
        x_hat, rstd = require_cache(self._cache, self)
        lead = tuple(range(dy.ndim - 1))
        self.grads["weight"] += (dy * x_hat).sum(axis=lead)  # (C,)
        self.grads["bias"] += dy.sum(axis=lead)  # (C,)
        g = dy * self.params["weight"]  # (..., C)
        return rstd * (g - g.mean(axis=-1, keepdims=True) - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))


class ReLU(Module):
    """max(x, 0), elementwise."""

    def __init__(self) -> None:
        super().__init__()
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape -> same shape."""
        self._x = np.asarray(x)
        return F.relu(self._x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy where x > 0, else 0."""
        return F.relu_backward(dy, require_cache(self._x, self))


class GELU(Module):
    """GELU, elementwise. ``approximate="tanh"`` (default) is GPT-2's gelu_new; ``"none"`` is the exact x Phi(x).

    The names are torch.nn.functional.gelu's; "none" uses ``functional.erf``, accurate to about 1e-15.
    """

    def __init__(self, approximate: str = "tanh") -> None:
        super().__init__()
        if approximate not in F.GELU_APPROXIMATIONS:
            raise ValueError(f"approximate must be one of {F.GELU_APPROXIMATIONS}, got {approximate!r}")
        self.approximate = approximate
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape -> same shape."""
        self._x = np.asarray(x)
        return F.gelu(self._x, self.approximate)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """dy * gelu'(x)."""
        return F.gelu_backward(dy, require_cache(self._x, self), self.approximate)


class Softmax(Module):
    """softmax along ``axis`` (default the last)."""

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = axis
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Any shape -> same shape, non-negative and summing to 1 along ``axis``."""
        self._y = F.softmax(np.asarray(x), self.axis)
        return self._y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        """y * (dy - sum(dy * y))."""
        return F.softmax_backward(dy, require_cache(self._y, self), self.axis)


class CrossEntropyLoss(Module):
    """Mean cross-entropy of logits (..., V) against integer targets (...), skipping ``ignore_index`` (as torch)."""

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, logits: np.ndarray, targets: ArrayLike) -> float:
        """(..., V), (...) -> scalar loss."""
        logits, targets = np.asarray(logits), np.asarray(targets)
        loss = F.cross_entropy(logits, targets, self.ignore_index)
        self._cache = (logits, targets)
        return loss

    def backward(self, dloss: float | np.ndarray = 1.0) -> np.ndarray:
        """Gradient with respect to the logits, scaled by the upstream ``dloss``."""
        logits, targets = require_cache(self._cache, self)
        return F.cross_entropy_backward(logits, targets, self.ignore_index) * dloss
