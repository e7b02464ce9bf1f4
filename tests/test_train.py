"""Optimizers against torch.optim, the schedule's closed form, clipping, and exact resume from checkpoints."""

import math
import re

import pytest
import torch
from safetensors.torch import save_file

from mini_llm.train import (
    SGD,
    Adam,
    TokenBatches,
    Trainer,
    TrainerConfig,
    WarmupCosineSchedule,
    clip_grad_norm,
    load_model_weights,
    lr_at,
    random_batch,
    read_checkpoint,
    save_checkpoint,
)

# ---------------------------------------------------------------------------------------------------------------
# Optimizers: the same model, the same batches, 100 steps, parameters compared after every step.


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two groups, as a trainer builds them: decay on matrices, none on biases."""
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    biases = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": matrices, "weight_decay": weight_decay}, {"params": biases, "weight_decay": 0.0}]


def max_differences(make_ours, make_reference, steps: int = 100, lr_lambda=None) -> list[float]:
    """Max |θ_ours - θ_reference| after each of `steps` updates on identical models and batches."""
    ours_model, reference_model = small_model(), small_model()
    ours, reference = make_ours(ours_model), make_reference(reference_model)
    schedulers = []
    if lr_lambda is not None:
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) for opt in (ours, reference)]
    data = torch.Generator().manual_seed(1)
    differences = []
    for _ in range(steps):
        x = torch.randn(16, 4, generator=data, dtype=torch.float64)  # (B, 4)
        y = torch.randint(3, (16,), generator=data)  # (B,)
        for model, optimizer in ((ours_model, ours), (reference_model, reference)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
        differences.append(
            max(
                (a - b).abs().max().item()
                for a, b in zip(ours_model.parameters(), reference_model.parameters(), strict=True)
            )
        )
    return differences


@pytest.mark.parametrize(
    "momentum, weight_decay, nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 1e-2, False), (0.9, 1e-2, True)]
)
def test_sgd_matches_torch(momentum, weight_decay, nesterov):
    kwargs = {"lr": 0.1, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}
    differences = max_differences(
        lambda m: SGD(m.parameters(), **kwargs), lambda m: torch.optim.SGD(m.parameters(), **kwargs)
    )
    assert max(differences) <= 1e-6


def test_sgd_matches_torch_with_groups_and_a_scheduler():
    differences = max_differences(
        lambda m: SGD(param_groups(m, 0.05), lr=0.1, momentum=0.9),
        lambda m: torch.optim.SGD(param_groups(m, 0.05), lr=0.1, momentum=0.9),
        lr_lambda=lambda step: 0.97**step,
    )
    assert max(differences) <= 1e-6


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_matches_torch(weight_decay):
    kwargs = {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": weight_decay}
    differences = max_differences(
        lambda m: Adam(m.parameters(), **kwargs), lambda m: torch.optim.Adam(m.parameters(), **kwargs)
    )
    assert max(differences) <= 1e-6


def test_adamw_matches_torch_adamw_with_groups_and_a_scheduler():
    kwargs = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6}
    differences = max_differences(
        lambda m: Adam(param_groups(m, 0.1), decoupled_weight_decay=True, **kwargs),
        lambda m: torch.optim.AdamW(param_groups(m, 0.1), **kwargs),
        lr_lambda=lambda step: min(1.0, (step + 1) / 10),
    )
    assert max(differences) <= 1e-6


def test_adam_without_bias_correction_departs_from_torch():
    # The source's Adam (no m̂, v̂) is a different algorithm: the comparison above would catch it at the first step.
    differences = max_differences(
        lambda m: Adam(m.parameters(), lr=0.01, bias_correction=False),
        lambda m: torch.optim.Adam(m.parameters(), lr=0.01),
    )
    assert differences[0] > 1e-3


@pytest.mark.parametrize("bias_correction", [True, False])
def test_adam_first_step_closed_form(bias_correction):
    # t = 1: m_1 = (1-β1) g, v_1 = (1-β2) g². With bias correction m̂/√v̂ = g/|g|, so Δθ = -lr sign(g) whatever |g|;
    # without it Δθ = -lr (1-β1)/√(1-β2) sign(g) ≈ -3.16 lr sign(g) (eps = 1e-12 makes ε negligible here).
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    grad = torch.tensor([1e-3, -5.0, 100.0, -0.2], dtype=torch.float64)
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    optimizer = Adam([theta], lr=lr, betas=(beta1, beta2), eps=1e-12, bias_correction=bias_correction)
    theta.grad = grad.clone()
    optimizer.step()
    factor = 1.0 if bias_correction else (1 - beta1) / math.sqrt(1 - beta2)
    torch.testing.assert_close(theta.detach(), -lr * factor * grad.sign(), rtol=1e-6, atol=0)
    if not bias_correction:
        assert factor == pytest.approx(3.1623, abs=1e-4)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda p: SGD(p, lr=-0.1), "lr"),
        (lambda p: SGD(p, lr=0.1, momentum=1.0), "momentum"),
        (lambda p: SGD(p, lr=0.1, weight_decay=-1), "weight_decay"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
        (lambda p: Adam(p, lr=float("nan")), "lr"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), "betas[0]"),
        (lambda p: Adam(p, betas=(0.9, -0.1)), "betas[1]"),
        (lambda p: Adam(p, betas=(0.9,)), "betas"),
        (lambda p: Adam(p, eps=0.0), "eps"),
        (lambda p: Adam(p, weight_decay=-0.1), "weight_decay"),
    ],
)
def test_optimizer_arguments_are_checked(make, name):
    with pytest.raises(ValueError, match="^" + re.escape(name) + "[ =]"):
        make([torch.zeros(2, requires_grad=True)])


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate schedule and gradient clipping.


def test_schedule_closed_form():
    max_lr, min_lr, warmup, decay = 1e-3, 1e-4, 10, 110
    assert lr_at(0, max_lr, warmup, decay, min_lr) == pytest.approx(max_lr / warmup)
    assert lr_at(4, max_lr, warmup, decay, min_lr) == pytest.approx(max_lr * 5 / warmup)
    assert lr_at(warmup - 1, max_lr, warmup, decay, min_lr) == pytest.approx(max_lr)  # end of warm-up
    assert lr_at(warmup, max_lr, warmup, decay, min_lr) == pytest.approx(max_lr)  # cos(0) = 1
    assert lr_at(35, max_lr, warmup, decay, min_lr) == pytest.approx(min_lr + (max_lr - min_lr) * (1 + 0.5**0.5) / 2)
    assert lr_at(60, max_lr, warmup, decay, min_lr) == pytest.approx((max_lr + min_lr) / 2)  # middle: cos(π/2) = 0
    assert lr_at(decay, max_lr, warmup, decay, min_lr) == pytest.approx(min_lr)  # end
    assert lr_at(decay + 50, max_lr, warmup, decay, min_lr) == min_lr
    assert lr_at(0, max_lr, 0, decay, min_lr) == pytest.approx(max_lr)  # no warm-up
    lrs = [lr_at(s, max_lr, warmup, decay, min_lr) for s in range(warmup, decay + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_schedule_object_sets_every_group():
    schedule = WarmupCosineSchedule(max_lr=0.1, warmup_steps=4, decay_steps=20, min_lr=0.01)
    optimizer = SGD(param_groups(small_model(), 0.1), lr=1.0)
    assert schedule.apply(optimizer, 1) == pytest.approx(0.05)
    assert [g["lr"] for g in optimizer.param_groups] == [schedule(1)] * 2
    with pytest.raises(ValueError, match="decay_steps"):
        WarmupCosineSchedule(max_lr=0.1, warmup_steps=4, decay_steps=3)
    with pytest.raises(ValueError, match="min_lr"):
        WarmupCosineSchedule(max_lr=0.1, warmup_steps=4, decay_steps=10, min_lr=0.2)
    with pytest.raises(ValueError, match="step"):
        schedule(-1)


def test_clipping_scales_to_the_max_norm():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0], [12.0, 0.0]])]  # global norm sqrt(9+16+144) = 13
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    reference = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for p, q, g in zip(params, reference, grads, strict=True):
        p.grad, q.grad = g.clone(), g.clone()
    assert clip_grad_norm(params, 6.5) == pytest.approx(13.0)
    after = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))
    assert after == pytest.approx(6.5, rel=1e-6)
    torch.nn.utils.clip_grad_norm_(reference, 6.5)
    for p, q in zip(params, reference, strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    # below the limit nothing changes
    assert clip_grad_norm(params, 100.0) == pytest.approx(6.5, rel=1e-6)
    assert math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params)) == pytest.approx(after)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(params, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Batches, the trainer, checkpoints.

VOCAB = 12


def markov_tokens(n: int, seed: int) -> torch.Tensor:
    """A chain that moves t -> t + 1 (mod V) with probability 0.9, elsewhere uniformly: entropy ≈ 0.53 nats."""
    g = torch.Generator().manual_seed(seed)
    tokens = [0]
    for jump, other in zip(
        torch.rand(n - 1, generator=g).tolist(), torch.randint(VOCAB, (n - 1,), generator=g), strict=True
    ):
        tokens.append((tokens[-1] + 1) % VOCAB if jump < 0.9 else int(other))
    return torch.tensor(tokens, dtype=torch.long)


class BigramLM(torch.nn.Module):
    """Embedding -> dropout -> linear: logits (B, T, V) that depend on the current token only."""

    def __init__(self, seed: int = 0, vocab: int = VOCAB, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(vocab, dim)
        self.dropout = torch.nn.Dropout(0.1)  # draws from the global RNG: a resume must restore it
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))  # (B, T, V)


TRAIN = TokenBatches(markov_tokens(4000, seed=1), block_size=16)
EVAL = TokenBatches(markov_tokens(1000, seed=2), block_size=16)


def config(**changes) -> TrainerConfig:
    base = {"max_steps": 40, "batch_size": 8, "lr": 0.02, "warmup_steps": 2, "min_lr": 0.002, "weight_decay": 0.01}
    return TrainerConfig(**(base | {"eval_interval": 10, "eval_batches": 4, "progress": False} | changes))


def test_random_batch_is_shifted_windows():
    tokens = torch.arange(100)
    x, y = random_batch(tokens, block_size=7, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 7)
    assert torch.equal(y, x + 1)  # on 0, 1, 2, ... the next token is the token plus one
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(y.max()) <= 99
    again, _ = random_batch(tokens, 7, 5, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    with pytest.raises(ValueError, match="block_size"):
        TokenBatches(tokens, block_size=100)
    with pytest.raises(ValueError, match="tokens"):
        TokenBatches(torch.arange(10.0), block_size=3)


def test_trainer_reduces_the_loss_and_reports_perplexity():
    trainer = Trainer(BigramLM(), config(max_steps=120, eval_interval=40), TRAIN, EVAL)
    before = trainer.evaluate()
    history = trainer.train()
    after = trainer.evaluate()
    assert before["loss"] == pytest.approx(math.log(VOCAB), abs=0.5)
    assert after["loss"] < 0.8 < before["loss"] - 1.0  # the chain's entropy is ≈ 0.53 nats
    assert after["perplexity"] == pytest.approx(math.exp(after["loss"]))
    assert [r["step"] for r in history] == list(range(1, 121))
    assert [r["lr"] for r in history] == [trainer.schedule(s) for s in range(120)]
    evaluated = [r for r in history if r["eval_loss"] is not None]
    assert [r["step"] for r in evaluated] == [40, 80, 120]
    assert all(r["eval_perplexity"] == pytest.approx(math.exp(r["eval_loss"])) for r in evaluated)
    assert evaluated[-1]["eval_loss"] == after["loss"]  # evaluation always sees the same batches


def test_trainer_clips_gradients():
    trainer = Trainer(BigramLM(), config(max_steps=5, grad_clip=1e-3, eval_interval=0), TRAIN)
    trainer.train()
    assert all(r["grad_norm"] > 1e-3 for r in trainer.history)
    grads = [p.grad for p in trainer.model.parameters()]
    assert math.sqrt(sum(float(g.pow(2).sum()) for g in grads)) == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_resume_continues_exactly(tmp_path, optimizer):
    path = tmp_path / "run.safetensors"
    settings = config(optimizer=optimizer, lr=0.02 if optimizer != "sgd" else 0.3)
    straight = Trainer(BigramLM(seed=0), settings, TRAIN, EVAL)
    straight.train(until=17)
    straight.save_checkpoint(path)
    straight.train()  # to 40

    resumed = Trainer.resume(path, BigramLM(seed=123), TRAIN, EVAL)  # other initial weights: all come from the file
    assert resumed.step == 17 and resumed.config == settings
    resumed.train()
    for (name, a), b in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.history == straight.history  # identical train losses, learning rates, eval losses
    for a, b in zip(straight.optimizer.state.values(), resumed.optimizer.state.values(), strict=True):
        for key, value in a.items():
            assert torch.equal(value, b[key]) if isinstance(value, torch.Tensor) else value == b[key]


def test_trainer_writes_checkpoints_while_training(tmp_path):
    path = tmp_path / "auto" / "ckpt.safetensors"
    trainer = Trainer(BigramLM(), config(max_steps=12, checkpoint_path=str(path), checkpoint_interval=5), TRAIN)
    trainer.train(until=7)
    assert read_checkpoint(path).extra["trainer"]["step"] == 7  # saved at step 5, then at the end of train()
    resumed = Trainer.resume(path, BigramLM(), TRAIN, max_steps=12)
    resumed.train()
    trainer.train()
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(), resumed.model.parameters(), strict=True))
    model = load_model_weights(BigramLM(seed=5), path)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(), model.parameters(), strict=True))


def test_checkpoint_keeps_tied_weights_and_uses_no_pickle(tmp_path):
    model = torch.nn.Sequential(torch.nn.Embedding(5, 5), torch.nn.Linear(5, 5, bias=False))
    model[1].weight = model[0].weight  # tied, as in GPT's embedding and output head
    optimizer = Adam(model.parameters())
    model(torch.arange(5)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "tied.safetensors", model, optimizer, extra={"note": "tied"})
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle
    checkpoint = read_checkpoint(path)
    assert torch.equal(checkpoint.model_state["0.weight"], model[0].weight)
    assert checkpoint.optimizer_state["state"][0]["step"] == 1
    assert checkpoint.extra == {"note": "tied"}


def corrupt_checkpoints(tmp_path, good):
    """(path, message fragment) pairs, each a different way a checkpoint can be wrong."""
    data = good.read_bytes()
    cases = []
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all" * 4)
    cases.append((tmp_path / "junk.safetensors", "not a readable safetensors file"))
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) - 64])
    cases.append((tmp_path / "truncated.safetensors", "not a readable safetensors file"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    cases.append((tmp_path / "foreign.safetensors", "not a mini_llm checkpoint"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "badjson.safetensors"), metadata={"mini_llm": "{oops"})
    cases.append((tmp_path / "badjson.safetensors", "not valid JSON"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "version.safetensors"), metadata={"mini_llm": '{"format": "v0"}'})
    cases.append((tmp_path / "version.safetensors", "format must be"))
    return cases


def test_corrupt_checkpoints_are_rejected(tmp_path):
    good = tmp_path / "good.safetensors"
    trainer = Trainer(BigramLM(), config(max_steps=3), TRAIN)
    trainer.train()
    trainer.save_checkpoint(good)
    for path, message in corrupt_checkpoints(tmp_path, good):
        with pytest.raises(ValueError, match=message):
            Trainer(BigramLM(), config(max_steps=3), TRAIN).load_checkpoint(path)
        with pytest.raises(ValueError, match=message):
            load_model_weights(BigramLM(), path)
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not written by Trainer"):  # a checkpoint, but not a trainer's
        optimizer = SGD(BigramLM().parameters(), lr=0.1)
        save_checkpoint(tmp_path / "bare.safetensors", BigramLM(), optimizer)
        Trainer(BigramLM(), config(), TRAIN).load_checkpoint(tmp_path / "bare.safetensors")


def test_mismatching_checkpoints_are_rejected(tmp_path):
    path = tmp_path / "run.safetensors"
    trainer = Trainer(BigramLM(), config(max_steps=3), TRAIN)
    trainer.train()
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match=r"embed.weight: shape \(12, 16\) in the checkpoint, \(12, 8\) in the model"):
        Trainer(BigramLM(dim=8), config(max_steps=3), TRAIN).load_checkpoint(path)

    class Bigger(BigramLM):
        def __init__(self) -> None:
            super().__init__()
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match=r"missing keys \['extra.bias', 'extra.weight'\]"):
        Trainer(Bigger(), config(max_steps=3), TRAIN).load_checkpoint(path)
    with pytest.raises(ValueError, match="dtype torch.float32 in the checkpoint, torch.float64"):
        load_model_weights(BigramLM().double(), path)
    with pytest.raises(ValueError, match="lr: 0.02 in the checkpoint, 0.05 here"):
        Trainer(BigramLM(), config(max_steps=3, lr=0.05), TRAIN).load_checkpoint(path)
    with pytest.raises(ValueError, match="optimizer: 'adamw' in the checkpoint, 'sgd' here"):
        Trainer(BigramLM(), config(max_steps=3, optimizer="sgd"), TRAIN).load_checkpoint(path)
    Trainer(BigramLM(), config(max_steps=3, eval_interval=1, progress=True), TRAIN).load_checkpoint(path)  # harmless


def test_trainer_arguments_are_checked():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        config(optimizer="lion")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        config(batch_size=0)
    with pytest.raises(ValueError, match="warmup_steps must be <= max_steps = 40"):
        config(warmup_steps=50, max_steps=40)
    with pytest.raises(ValueError, match="warmup_steps must be <= decay_steps = 30"):
        config(warmup_steps=31, decay_steps=30)
    with pytest.raises(ValueError, match="grad_clip"):
        config(grad_clip=-1.0)
    with pytest.raises(ValueError, match="until"):
        Trainer(BigramLM(), config(), TRAIN).train(until=-1)
    with pytest.raises(ValueError, match="eval_batch"):
        Trainer(BigramLM(), config(), TRAIN).evaluate()
    with pytest.raises(TypeError, match="loss_fn"):  # a model that returns (B, V) logits needs a loss_fn
        Trainer(torch.nn.Linear(16, VOCAB), config(), lambda b, g: (torch.randn(b, 16), torch.zeros(b))).train_step()
    custom = Trainer(
        torch.nn.Linear(3, 1),
        config(max_steps=2, eval_interval=0),
        lambda b, g: (torch.randn(b, 3, generator=g), torch.randn(b, 1, generator=g)),
        loss_fn=lambda model, x, y: torch.nn.functional.mse_loss(model(x), y),
    )
    assert len(custom.train()) == 2


def test_a_run_depends_on_nothing_outside_it():
    # Dropout draws from torch's global generator: the trainer swaps its own state in, so other code using that
    # generator between steps (another trainer, a notebook cell) changes nothing, and the caller's state is kept.
    alone = Trainer(BigramLM(), config(max_steps=10), TRAIN, EVAL)
    alone.train()
    first, second = Trainer(BigramLM(), config(max_steps=10), TRAIN, EVAL), Trainer(BigramLM(), config(), TRAIN)
    torch.manual_seed(99)
    outside = torch.get_rng_state()
    for until in range(1, 11):
        first.train(until=until)
        second.train(until=until)
    assert torch.equal(torch.get_rng_state(), outside)
    assert all(torch.equal(a, b) for a, b in zip(alone.model.parameters(), first.model.parameters(), strict=True))
    assert first.history == alone.history


def test_next_token_loss_accepts_mini_llm_gpt_outputs():
    from mini_llm.nn import GPT, GPTConfig
    from mini_llm.train.trainer import next_token_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    x, y = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    assert torch.allclose(next_token_loss(model, x, y), model(x, targets=y).loss)


def flip_data_bytes(path) -> None:
    """Overwrite bytes in the tensor data of a safetensors file with 0xFF (NaN in float32), header intact."""
    data = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[header_end : header_end + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def test_non_finite_weights_in_a_checkpoint_are_rejected(tmp_path):
    path = tmp_path / "run.safetensors"
    trainer = Trainer(BigramLM(), config(max_steps=3), TRAIN)
    trainer.train()
    trainer.save_checkpoint(path)
    flip_data_bytes(path)
    with pytest.raises(ValueError, match=r"run.safetensors is damaged: its tensors do not match the SHA-256"):
        Trainer(BigramLM(), config(max_steps=3), TRAIN).load_checkpoint(path)
    drop_digest(path)  # a file written before the digest: the NaN check still catches the damage
    with pytest.raises(ValueError, match=r"run.safetensors.*: tensor '.*' holds 16 NaN/Inf values .* damaged"):
        Trainer(BigramLM(), config(max_steps=3), TRAIN).load_checkpoint(path)
    with pytest.raises(ValueError, match="NaN/Inf"):
        load_model_weights(BigramLM(), path)


def drop_digest(path) -> None:
    """Rewrite a safetensors file without the digest entry in its metadata, tensors unchanged."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from mini_llm.atomic import DIGEST_KEY

    with safe_open(str(path), framework="pt") as file:
        metadata = {k: v for k, v in (file.metadata() or {}).items() if k != DIGEST_KEY}
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    save_file(tensors, str(path), metadata=metadata)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    path = tmp_path / "run.safetensors"
    trainer = Trainer(BigramLM(), config(max_steps=6, checkpoint_path=str(path), checkpoint_interval=2), TRAIN)
    trainer.train(until=2)
    saved = path.read_bytes()
    with torch.no_grad():
        trainer.model.embed.weight[0, 0] = float("nan")  # as if an update had blown up
    weights_before = trainer.model.embed.weight.clone()
    with pytest.raises(ValueError, match="the training loss became nan at step 3; training stopped"):
        trainer.train()
    assert trainer.step == 2 and len(trainer.history) == 2
    assert torch.equal(trainer.model.embed.weight.nan_to_num(), weights_before.nan_to_num())  # no update applied
    assert path.read_bytes() == saved
