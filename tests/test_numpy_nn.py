"""mini_llm.numpy_nn: every backward against finite differences, and every layer against torch, in float64."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_llm.numpy_nn import (
    GELU,
    Block,
    CrossEntropyLoss,
    Embedding,
    FeedForward,
    LayerNorm,
    Linear,
    MultiHeadSelfAttention,
    ReLU,
    Softmax,
    TinyGPT,
    TinyGPTConfig,
    cross_entropy,
    erf,
    gradient_check,
    gradient_errors,
    softmax,
)

GRADCHECK_TOL = 1e-6  # finite differences against backward
TORCH_TOL = 1e-8  # numpy against torch autograd, same weights
SMALL_GPT = TinyGPTConfig(vocab_size=7, block_size=6, n_layer=2, n_head=2, n_embd=8, ffn_hidden=12, init_std=0.5)


def rel(a, b) -> float:
    """||a - b|| / max(||a||, ||b||), written here independently of the package."""
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def randomize(module, seed=0):
    """Give every parameter random values (LayerNorm weights away from 1, biases away from 0)."""
    rng = np.random.default_rng(seed)
    for _, value in module.parameters():
        value[...] = rng.normal(0.0, 0.5, size=value.shape)
    return module


def leaves(module) -> dict:
    """The module's parameters as float64 torch leaves that collect gradients, by dotted name."""
    return {name: torch.tensor(value, dtype=torch.float64, requires_grad=True) for name, value in module.parameters()}


def leaf(array) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def assert_same_grads(module, params: dict) -> None:
    grads = dict(module.gradients())
    assert grads.keys() == params.keys()
    for name, tensor in params.items():
        assert rel(grads[name], tensor.grad) < TORCH_TOL, name


# ----------------------------------------------------------------------------------------------------------- cases
def away_from_zero(rng, shape):
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)


def gradcheck_cases():
    rng = np.random.default_rng(0)
    return {
        "linear": (Linear(3, 4), [rng.standard_normal((2, 2, 3))]),
        "linear-no-bias": (Linear(3, 2, bias=False), [rng.standard_normal((5, 3))]),
        "embedding": (Embedding(5, 3), [np.array([[0, 2, 2], [4, 0, 1]])]),
        "layernorm": (randomize(LayerNorm(4)), [rng.standard_normal((2, 3, 4))]),
        "relu": (ReLU(), [away_from_zero(rng, (3, 4))]),
        "gelu-tanh": (GELU("tanh"), [rng.standard_normal((3, 4)) * 2]),
        "gelu-erf": (GELU("none"), [rng.standard_normal((3, 4)) * 2]),
        "softmax": (Softmax(), [rng.standard_normal((2, 3, 5))]),
        "softmax-axis0": (Softmax(axis=0), [rng.standard_normal((4, 3))]),
        "cross-entropy": (CrossEntropyLoss(), [rng.standard_normal((2, 3, 5)), np.array([[1, 4, -100], [0, 2, 2]])]),
        "attention-causal": (randomize(MultiHeadSelfAttention(8, 2, causal=True)), [rng.standard_normal((2, 4, 8))]),
        "attention-bidirectional": (randomize(MultiHeadSelfAttention(8, 2, causal=False)),
                                    [rng.standard_normal((2, 4, 8))]),
        "ffn": (randomize(FeedForward(4, 6)), [rng.standard_normal((2, 3, 4))]),
        "block": (randomize(Block(8, 2, hidden=12)), [rng.standard_normal((2, 4, 8))]),
        "tiny-gpt": (randomize(TinyGPT(SMALL_GPT)), [rng.integers(0, 7, size=(2, 5))]),
    }


@pytest.mark.parametrize("case", list(gradcheck_cases()))
def test_backward_matches_finite_differences(case):
    module, inputs = gradcheck_cases()[case]
    errors = gradient_errors(module, *inputs)
    expected = {name for name, _ in module.parameters()}
    if np.issubdtype(inputs[0].dtype, np.floating):
        expected.add("input")
    assert set(errors) == expected  # every parameter and the input were checked
    assert max(errors.values()) < GRADCHECK_TOL, errors
    assert gradient_check(module, *inputs) == max(errors.values())


def test_gradient_check_catches_a_wrong_backward():
    class ForgetsBias(Linear):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["bias"][...] = 0
            return dx

    class WrongInputGrad(Linear):
        def backward(self, dy):
            return 1.01 * super().backward(dy)

    x = np.random.default_rng(0).standard_normal((4, 3))
    assert gradient_errors(ForgetsBias(3, 2), x)["bias"] == pytest.approx(1.0)
    assert gradient_errors(WrongInputGrad(3, 2), x)["input"] > 1e-3


# ----------------------------------------------------------------------------------------------- against torch
def upstream_for(y, seed=1):
    return np.random.default_rng(seed).standard_normal(np.shape(y))


def assert_matches_torch(layer, x, torch_fn) -> None:
    """layer.forward(x) and layer.backward(u) against torch_fn on a float64 leaf copy of x (torch_fn's own
    parameters then hold their gradients)."""
    xt = leaf(x)
    y = layer.forward(x)
    u = upstream_for(y)
    out = torch_fn(xt)
    (out * torch.from_numpy(u)).sum().backward()
    assert rel(y, out) < TORCH_TOL
    assert rel(layer.backward(u), xt.grad) < TORCH_TOL


def test_linear_matches_torch():
    rng = np.random.default_rng(0)
    layer = Linear(3, 4, seed=1)
    x = rng.standard_normal((2, 5, 3))
    ref = torch.nn.Linear(3, 4, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.params["weight"].T))  # torch stores (out, in)
        ref.bias.copy_(torch.from_numpy(layer.params["bias"]))
    assert_matches_torch(layer, x, ref)
    assert rel(layer.grads["weight"], ref.weight.grad.T) < TORCH_TOL
    assert rel(layer.grads["bias"], ref.bias.grad) < TORCH_TOL


def test_embedding_matches_torch():
    layer = Embedding(6, 4, seed=2)
    ids = np.array([[0, 5, 5, 2], [3, 0, 1, 5]])
    ref = torch.nn.Embedding(6, 4, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.params["weight"]))
    y = layer.forward(ids)
    u = upstream_for(y)
    out = ref(torch.from_numpy(ids))
    (out * torch.from_numpy(u)).sum().backward()
    assert rel(y, out) < TORCH_TOL
    assert layer.backward(u) is None
    assert rel(layer.grads["weight"], ref.weight.grad) < TORCH_TOL


def test_layernorm_matches_torch():
    layer = randomize(LayerNorm(5))
    x = np.random.default_rng(0).standard_normal((2, 3, 5)) * 3 + 1
    ref = torch.nn.LayerNorm(5, eps=1e-5, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.params["weight"]))
        ref.bias.copy_(torch.from_numpy(layer.params["bias"]))
    assert_matches_torch(layer, x, ref)
    assert rel(layer.grads["weight"], ref.weight.grad) < TORCH_TOL
    assert rel(layer.grads["bias"], ref.bias.grad) < TORCH_TOL


@pytest.mark.parametrize(
    ("layer", "torch_fn"),
    [
        (ReLU(), torch.relu),
        (GELU("tanh"), lambda t: TF.gelu(t, approximate="tanh")),
        (GELU("none"), lambda t: TF.gelu(t, approximate="none")),
        (Softmax(), lambda t: torch.softmax(t, dim=-1)),
        (Softmax(axis=1), lambda t: torch.softmax(t, dim=1)),
    ],
    ids=["relu", "gelu-tanh", "gelu-erf", "softmax", "softmax-axis1"],
)
def test_parameter_free_layers_match_torch(layer, torch_fn):
    assert_matches_torch(layer, np.random.default_rng(0).standard_normal((3, 4, 5)) * 3, torch_fn)


@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_matches_torch(ignore):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 4, 6)) * 3
    targets = rng.integers(0, 6, size=(2, 4))
    if ignore:
        targets[0, 1] = targets[1, 3] = -100
    loss_fn = CrossEntropyLoss()
    loss = loss_fn.forward(logits, targets)
    lt = leaf(logits)
    ref = TF.cross_entropy(lt.reshape(-1, 6), torch.from_numpy(targets).reshape(-1), ignore_index=-100)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=TORCH_TOL)
    assert loss == cross_entropy(logits, targets)
    assert rel(loss_fn.backward(), lt.grad) < TORCH_TOL
    assert rel(loss_fn.backward(0.5), 0.5 * lt.grad) < TORCH_TOL


def torch_linear(x, p, prefix):
    return x @ p[prefix + "weight"] + p[prefix + "bias"]  # the package's (in, out) layout


def torch_attention(x, p, prefix, n_head, causal):
    B, T, C = x.shape
    q, k, v = torch_linear(x, p, prefix + "qkv.").split(C, dim=-1)  # each (B, T, C)
    q, k, v = (t.reshape(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
    heads = TF.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, D)
    return torch_linear(heads.transpose(1, 2).reshape(B, T, C), p, prefix + "proj.")


def torch_ffn(x, p, prefix, approximate="tanh"):
    return torch_linear(TF.gelu(torch_linear(x, p, prefix + "fc."), approximate=approximate), p, prefix + "proj.")


def torch_layer_norm(x, p, prefix):
    return TF.layer_norm(x, x.shape[-1:], p[prefix + "weight"], p[prefix + "bias"], eps=1e-5)


def torch_block(x, p, prefix, n_head, causal=True):
    x = x + torch_attention(torch_layer_norm(x, p, prefix + "ln1."), p, prefix + "attn.", n_head, causal)
    return x + torch_ffn(torch_layer_norm(x, p, prefix + "ln2."), p, prefix + "ffn.")


def torch_gpt(ids, p, config):
    T = ids.shape[1]
    x = TF.embedding(ids, p["token_embedding.weight"]) + p["position_embedding.weight"][:T]  # (B, T, C)
    for i in range(config.n_layer):
        x = torch_block(x, p, f"blocks.{i}.", config.n_head)
    return torch_linear(torch_layer_norm(x, p, "ln_f."), p, "lm_head.")  # (B, T, V)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_attention_matches_torch(causal):
    layer = randomize(MultiHeadSelfAttention(8, 2, causal=causal))
    x = np.random.default_rng(0).standard_normal((2, 5, 8))
    params, xt = leaves(layer), leaf(x)
    y = layer.forward(x)
    u = upstream_for(y)
    out = torch_attention(xt, params, "", 2, causal)
    (out * torch.from_numpy(u)).sum().backward()
    assert rel(y, out) < TORCH_TOL
    assert rel(layer.backward(u), xt.grad) < TORCH_TOL
    assert_same_grads(layer, params)


def test_ffn_and_block_match_torch():
    x = np.random.default_rng(0).standard_normal((2, 5, 8))
    for layer, reference in [
        (randomize(FeedForward(8, 12, "none")), lambda t, p: torch_ffn(t, p, "", "none")),
        (randomize(Block(8, 2, hidden=12)), lambda t, p: torch_block(t, p, "", 2)),
        (randomize(Block(8, 4, causal=False)), lambda t, p: torch_block(t, p, "", 4, causal=False)),
    ]:
        params, xt = leaves(layer), leaf(x)
        y = layer.forward(x)
        u = upstream_for(y)
        out = reference(xt, params)
        (out * torch.from_numpy(u)).sum().backward()
        assert rel(y, out) < TORCH_TOL
        assert rel(layer.backward(u), xt.grad) < TORCH_TOL
        assert_same_grads(layer, params)


def test_tiny_gpt_matches_torch():
    model = randomize(TinyGPT(SMALL_GPT))
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 7, size=(3, 6)), rng.integers(0, 7, size=(3, 6))
    params = leaves(model)
    logits = model.forward(ids)
    ref_logits = torch_gpt(torch.from_numpy(ids), params, SMALL_GPT)
    assert logits.shape == (3, 6, 7)
    assert rel(logits, ref_logits) < TORCH_TOL
    loss = model.loss(ids, targets)
    model.backward_loss()
    ref_loss = TF.cross_entropy(ref_logits.reshape(-1, 7), torch.from_numpy(targets).reshape(-1))
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=TORCH_TOL)
    assert_same_grads(model, params)


# ------------------------------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("t", [1, 3])
def test_causal_attention_ignores_the_future(t):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 8))
    changed = x.copy()
    changed[:, t:] = rng.standard_normal((2, 5 - t, 8))
    causal, bidirectional = MultiHeadSelfAttention(8, 2, causal=True), MultiHeadSelfAttention(8, 2, causal=False)
    y, y_changed = causal.forward(x), causal.forward(changed)
    np.testing.assert_allclose(y[:, :t], y_changed[:, :t], rtol=0, atol=1e-13)
    assert np.abs(y[:, t:] - y_changed[:, t:]).min() > 1e-6  # the changed positions do see the change
    assert np.abs(bidirectional.forward(x)[:, :t] - bidirectional.forward(changed)[:, :t]).min() > 1e-6
    weights = causal.attention_weights  # (B, H, T, T)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=0, atol=1e-14)
    assert not np.triu(weights, k=1).any()
    dy = np.zeros_like(y)
    dy[:, :t] = rng.standard_normal((2, t, 8))  # a loss on the first t outputs only
    dx = causal.backward(dy)
    assert not dx[:, t:].any() and dx[:, :t].any()  # ... has no gradient on the future inputs


def test_tiny_gpt_is_causal():
    model = TinyGPT(SMALL_GPT)
    ids = np.array([[1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 2, 2]])
    for t in range(6):
        changed = ids.copy()
        changed[:, t] = (changed[:, t] + 1) % 7
        logits, logits_changed = model.forward(ids), model.forward(changed)
        np.testing.assert_allclose(logits[:, :t], logits_changed[:, :t], rtol=0, atol=1e-13)
        assert np.abs(logits[:, t] - logits_changed[:, t]).max() > 1e-6


# ------------------------------------------------------------------------------------------------ behaviour, API
def test_backward_accumulates_and_zero_grad_resets():
    layer = randomize(Block(8, 2))
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    dy = np.ones_like(x)
    layer.forward(x)
    layer.backward(dy)
    once = {name: grad.copy() for name, grad in layer.gradients()}
    layer.backward(dy)
    for name, grad in layer.gradients():
        np.testing.assert_allclose(grad, 2 * once[name], rtol=1e-12, atol=0)
    layer.zero_grad()
    assert not any(grad.any() for _, grad in layer.gradients())


def test_parameter_names_and_state_dict_round_trip():
    model = TinyGPT(SMALL_GPT, seed=3)
    names = [name for name, _ in model.parameters()]
    assert names[:2] == ["token_embedding.weight", "position_embedding.weight"]
    assert "blocks.0.attn.qkv.weight" in names and "blocks.1.ffn.proj.bias" in names
    assert names[-3:] == ["ln_f.bias", "lm_head.weight", "lm_head.bias"]
    assert [name for name, _ in model.gradients()] == names
    assert dict(model.parameters())["blocks.0.attn.qkv.weight"].shape == (8, 24)  # (in, out)
    c = SMALL_GPT
    per_block = 2 * 2 * c.n_embd + c.n_embd * 3 * c.n_embd + 3 * c.n_embd + c.n_embd**2 + c.n_embd \
        + 2 * c.n_embd * c.ffn_hidden + c.ffn_hidden + c.n_embd
    expected = (c.vocab_size + c.block_size) * c.n_embd + c.n_layer * per_block + 2 * c.n_embd \
        + c.n_embd * c.vocab_size + c.vocab_size
    assert model.num_parameters() == expected
    other = TinyGPT(SMALL_GPT, seed=4)
    ids = np.array([[1, 2, 3]])
    assert not np.allclose(other.forward(ids), model.forward(ids))
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(other.forward(ids), model.forward(ids))
    np.testing.assert_array_equal(TinyGPT(SMALL_GPT, seed=3).forward(ids), model.forward(ids))  # seeded


def test_float32_and_initial_loss():
    config = TinyGPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, init_std=0.02)
    model = TinyGPT(config, dtype=np.float32)
    ids = np.random.default_rng(0).integers(0, 11, size=(2, 8))
    logits = model.forward(ids)
    assert logits.dtype == np.float32 and all(v.dtype == np.float32 for _, v in model.parameters())
    assert model.loss(ids, ids) == pytest.approx(math.log(11), rel=0.02)  # near-uniform predictions at init


def test_a_few_sgd_steps_fit_a_sequence():
    model = TinyGPT(TinyGPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=16, init_std=0.1))
    ids = np.array([[0, 1, 2, 3, 4, 0, 1, 2]])
    first = model.loss(ids[:, :-1], ids[:, 1:])
    for _ in range(60):
        model.zero_grad()
        model.loss(ids[:, :-1], ids[:, 1:])
        model.backward_loss()
        for (_, value), (_, grad) in zip(model.parameters(), model.gradients(), strict=True):
            value -= 0.1 * grad
    assert model.loss(ids[:, :-1], ids[:, 1:]) < 0.1 * first


def test_softmax_is_stable_for_large_inputs():
    y = softmax(np.array([[1000.0, 1000.0, -1000.0], [-np.inf, 0.0, 0.0]]))
    np.testing.assert_allclose(y, [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]], rtol=0, atol=1e-15)


def test_erf_matches_math_erf_on_a_grid():
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1e-300, -1e-12, 2.9999999999, 3.0, 40.0, np.inf, -np.inf]])
    expected = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - expected) / np.maximum(np.abs(expected), 1e-300)) < 5e-15


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False))
def test_erf_property(x):
    assert float(erf(x)) == pytest.approx(math.erf(x), rel=5e-15, abs=1e-300)


# --------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MultiHeadSelfAttention(10, 3), r"n_embd must be .* divisible by n_head=3, got 10"),
        (lambda: MultiHeadSelfAttention(8, 0), r"n_head must be a positive integer, got 0"),
        (lambda: MultiHeadSelfAttention(8, 2).forward(np.zeros((5, 8))), r"x must have shape \(B, T, 8\), got .*\(5,"),
        (lambda: Linear(3, 4).forward(np.zeros((2, 5))), r"x must have shape \(\.\.\., 3\), got shape \(2, 5\)"),
        (lambda: Linear(0, 4), r"in_features must be a positive integer, got 0"),
        (lambda: LayerNorm(4).forward(np.zeros((2, 3))), r"x must have shape \(\.\.\., 4\)"),
        (lambda: Embedding(5, 3).forward(np.array([1, 5])), r"ids must lie in \[0, 5\), got 5"),
        (lambda: Embedding(5, 3).forward(np.array([-1, 2])), r"ids must lie in \[0, 5\), got -1"),
        (lambda: Embedding(5, 3).forward(np.array([1.0])), r"ids must be an integer array, got dtype float64"),
        (lambda: GELU("fast"), r"approximate must be one of \('tanh', 'none'\), got 'fast'"),
        (lambda: TinyGPT(SMALL_GPT).forward(np.zeros((1, 7), dtype=int)), r"1 <= T <= block_size=6, got T=7"),
        (lambda: TinyGPT(SMALL_GPT).forward(np.zeros(4, dtype=int)), r"ids must have shape \(B, T\), got shape \(4,\)"),
        (lambda: TinyGPT(SMALL_GPT).forward(np.full((1, 3), 7)), r"ids must lie in \[0, 7\), got 7"),
        (lambda: TinyGPT(TinyGPTConfig(n_layer=0)), r"config.n_layer must be a positive integer, got 0"),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0, 3])), r"targets must lie in \[0, 3\).* got 3"),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([0])), r"targets must have shape \(2,\).*got \(1,\)"),
        (lambda: cross_entropy(np.zeros((2, 3)), np.array([-100, -100])), r"at least one entry other than"),
        (lambda: Linear(3, 2).load_state_dict({"weight": np.zeros((3, 2))}), r"missing \['bias'\]"),
        (lambda: Linear(3, 2).load_state_dict({"weight": np.zeros((2, 3)), "bias": np.zeros(2)}),
         r"state\['weight'\] must have shape \(3, 2\), got \(2, 3\)"),
        (lambda: gradient_check(Linear(3, 2, dtype=np.float32), np.zeros((1, 3))), r"must be float64"),
    ],
)
def test_bad_input_raises_a_helpful_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match="Linear.backward was called before forward"):
        Linear(3, 2).backward(np.zeros((1, 2)))
