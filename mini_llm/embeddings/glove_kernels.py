"""GloVe's objective (Pennington et al. 2014) in numpy, and one AdaGrad epoch over the nonzero counts in Numba.

J = Σ_{X_ij > 0} f(X_ij) (w_i·w̃_j + b_i + b̃_j - log X_ij)^2 with f(x) = min(1, (x / x_max)^alpha).
The gradients of one term, with e = w_i·w̃_j + b_i + b̃_j - log X_ij, are
∂/∂w_i = 2 f e w̃_j, ∂/∂w̃_j = 2 f e w_i, ∂/∂b_i = ∂/∂b̃_j = 2 f e.
AdaGrad keeps per parameter the sum G of squared gradients, starting at 1 as in GloVe's glove.c, and steps
θ -= eta g / sqrt(G) after adding g^2 to G.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from mini_llm.embeddings.sgns import FASTMATH


def glove_weight(x: np.ndarray, x_max: float, alpha: float) -> np.ndarray:
    """GloVe's weighting f(x) = min(1, (x / x_max)^alpha)."""
    return np.minimum(1.0, (np.asarray(x, dtype=np.float64) / x_max) ** alpha)


def glove_loss(
    w: np.ndarray, w_ctx: np.ndarray, b: np.ndarray, b_ctx: np.ndarray,
    rows: np.ndarray, cols: np.ndarray, x: np.ndarray, x_max: float, alpha: float,
) -> float:  # fmt: skip
    """The weighted least-squares objective J over the given nonzero entries (numpy reference, float64)."""
    w, w_ctx = np.asarray(w, dtype=np.float64), np.asarray(w_ctx, dtype=np.float64)
    error = np.einsum("nd,nd->n", w[rows], w_ctx[cols]) + b[rows] + b_ctx[cols] - np.log(x)  # (nnz,)
    return float(np.sum(glove_weight(x, x_max, alpha) * error**2))


def glove_gradients(
    w: np.ndarray, w_ctx: np.ndarray, b: np.ndarray, b_ctx: np.ndarray,
    rows: np.ndarray, cols: np.ndarray, x: np.ndarray, x_max: float, alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """∂J/∂w, ∂J/∂w̃, ∂J/∂b, ∂J/∂b̃ (numpy reference, float64), shaped like the parameters."""
    w, w_ctx = np.asarray(w, dtype=np.float64), np.asarray(w_ctx, dtype=np.float64)
    error = np.einsum("nd,nd->n", w[rows], w_ctx[cols]) + b[rows] + b_ctx[cols] - np.log(x)  # (nnz,)
    g = 2.0 * glove_weight(x, x_max, alpha) * error  # (nnz,)
    grad_w, grad_w_ctx = np.zeros_like(w), np.zeros_like(w_ctx)
    grad_b, grad_b_ctx = np.zeros(len(b)), np.zeros(len(b_ctx))
    np.add.at(grad_w, rows, g[:, None] * w_ctx[cols])
    np.add.at(grad_w_ctx, cols, g[:, None] * w[rows])
    np.add.at(grad_b, rows, g)
    np.add.at(grad_b_ctx, cols, g)
    return grad_w, grad_w_ctx, grad_b, grad_b_ctx


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def glove_adagrad_epoch(
    w: np.ndarray, w_ctx: np.ndarray, b: np.ndarray, b_ctx: np.ndarray,
    g2_w: np.ndarray, g2_w_ctx: np.ndarray, g2_b: np.ndarray, g2_b_ctx: np.ndarray,
    rows: np.ndarray, cols: np.ndarray, log_x: np.ndarray, f_x: np.ndarray,
    learning_rate: float, n_chunks: int,
) -> float:  # fmt: skip
    """One AdaGrad pass over the entries in their stored order, hogwild over n_chunks contiguous slices.

    Each entry's gradient uses the parameters as they are before its own step. Returns J summed over the epoch
    (each term measured just before its step).
    """
    n_entries = rows.shape[0]
    size = w.shape[1]
    eta = np.float32(learning_rate)
    losses = np.zeros(n_chunks, dtype=np.float64)
    for chunk in prange(n_chunks):
        loss = 0.0
        for e in range(chunk * n_entries // n_chunks, (chunk + 1) * n_entries // n_chunks):
            i, j = rows[e], cols[e]
            wi, wj = w[i], w_ctx[j]  # (D,), (D,)
            gi2, gj2 = g2_w[i], g2_w_ctx[j]  # (D,), (D,)
            dot = np.float32(0.0)
            for d in range(size):
                dot += wi[d] * wj[d]
            error = dot + b[i] + b_ctx[j] - log_x[e]
            loss += f_x[e] * error * error
            g = np.float32(2.0) * f_x[e] * error
            for d in range(size):
                grad_i = g * wj[d]
                grad_j = g * wi[d]
                gi2[d] += grad_i * grad_i
                gj2[d] += grad_j * grad_j
                wi[d] -= eta * grad_i / np.sqrt(gi2[d])
                wj[d] -= eta * grad_j / np.sqrt(gj2[d])
            g2_b[i] += g * g
            g2_b_ctx[j] += g * g
            b[i] -= eta * g / np.sqrt(g2_b[i])
            b_ctx[j] -= eta * g / np.sqrt(g2_b_ctx[j])
        losses[chunk] = loss
    return losses.sum()
