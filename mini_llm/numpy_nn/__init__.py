"""Pure-numpy layers with an explicit forward AND backward, a tiny GPT built from them, and a gradient check.

May import: helpers (and numpy). Never torch models, train, tasks, evaluation, scaling or cli.
"""

from .attention import MultiHeadSelfAttention
from .functional import (
    cross_entropy,
    cross_entropy_backward,
    erf,
    gelu,
    gelu_backward,
    log_softmax,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
)
from .gradcheck import gradient_check, gradient_errors, numerical_gradient, relative_error
from .layers import GELU, CrossEntropyLoss, Embedding, LayerNorm, Linear, ReLU, Softmax
from .module import Module
from .transformer import Block, FeedForward, TinyGPT, TinyGPTConfig

__all__ = [
    "GELU",
    "Block",
    "CrossEntropyLoss",
    "Embedding",
    "FeedForward",
    "LayerNorm",
    "Linear",
    "Module",
    "MultiHeadSelfAttention",
    "ReLU",
    "Softmax",
    "TinyGPT",
    "TinyGPTConfig",
    "cross_entropy",
    "cross_entropy_backward",
    "erf",
    "gelu",
    "gelu_backward",
    "gradient_check",
    "gradient_errors",
    "log_softmax",
    "numerical_gradient",
    "relative_error",
    "relu",
    "relu_backward",
    "softmax",
    "softmax_backward",
]
