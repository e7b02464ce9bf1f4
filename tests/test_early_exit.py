"""Early exit (chapter 9, question 4): heads, exit choice, perplexity and FLOPs against float64 references."""

import csv
import math

import pytest
import torch
from torch.nn import functional as F

from mini_llm.data import CharData, CharTokenizer
from mini_llm.nn import GPT, GPTConfig
from mini_llm.scaling import early_exit
from mini_llm.scaling.early_exit import ExitHeads, block_outputs, exit_logits, exit_rows, train_exit_heads


def tiny_gpt(n_layer: int = 3, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=n_layer, n_head=2, n_embd=16)).eval()


def windows(seed: int = 1, count: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, 11, (count, 9), generator=torch.Generator().manual_seed(seed))
    return tokens[:, :-1], tokens[:, 1:]


@torch.no_grad()
def reference_exit_log_probs(model: GPT, heads: ExitHeads, x: torch.Tensor) -> list[torch.Tensor]:
    """float64 log-probabilities after every block, written out from the model's own modules."""
    states, logits = block_outputs(model, x)
    weight = model.lm_head.weight.double()  # (V, C)
    out = []
    for norm, state in zip(heads.norms, states[:-1], strict=True):
        normed = F.layer_norm(state.double(), (state.size(-1),), norm.weight.double(), norm.bias.double(), norm.eps)
        out.append(torch.log_softmax(normed @ weight.T, dim=-1))
    return [*out, torch.log_softmax(logits.double(), dim=-1)]


def test_the_last_block_output_gives_the_model_logits():
    model = tiny_gpt()
    x, _ = windows()
    states, logits = block_outputs(model, x)
    assert len(states) == 3 and states[-1].shape == (5, 8, 16)
    torch.testing.assert_close(model.lm_head(model.transformer.ln_f(states[-1])), logits)


def test_exit_logits_match_the_float64_reference_and_heads_start_as_ln_f():
    model = tiny_gpt()
    heads = ExitHeads(model)
    x, _ = windows()
    for norm in heads.norms:
        torch.testing.assert_close(norm.weight, model.transformer.ln_f.weight)
    got = [torch.log_softmax(lg.double(), -1) for lg in exit_logits(model, heads, x)]
    for a, b in zip(got, reference_exit_log_probs(model, heads, x), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_rows_choose_the_first_confident_exit_and_count_flops_by_hand():
    model = tiny_gpt()
    heads = ExitHeads(model)
    x, y = windows()
    log_probs = reference_exit_log_probs(model, heads, x)
    confidence = torch.stack([lp.max(-1).values.exp() for lp in log_probs[:-1]])  # (2, W, T)
    threshold = float(confidence.median())
    rows = {row["threshold"]: row for row in exit_rows(model, heads, x, y, (0.0, threshold, math.inf))}
    # by hand: each position's first exit whose confidence reaches the threshold, else the last block
    nll, blocks = [], []
    for w in range(5):
        for t in range(8):
            layer = next((i for i in range(2) if confidence[i, w, t] >= threshold), 2)
            nll.append(-float(log_probs[layer][w, t, y[w, t]]))
            blocks.append(layer + 1)
    mean_blocks = sum(blocks) / len(blocks)
    assert rows[threshold]["perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-9)
    assert rows[threshold]["mean_blocks"] == pytest.approx(mean_blocks)
    per_block, per_head = 2 * (16 * 48 + 16 * 16 + 16 * 64 + 64 * 16), 2 * 11 * 16  # qkv, proj, fc, fc-proj; head
    expected = (mean_blocks * per_block + mean_blocks * per_head) / (3 * per_block + per_head)
    assert rows[threshold]["flops_ratio"] == pytest.approx(expected)
    assert rows[threshold]["exit_1_share"] == pytest.approx(blocks.count(1) / 40)
    # threshold 0: every position leaves after block 1; inf: the model itself, at its own cost
    first = -log_probs[0].gather(-1, y[..., None]).mean()
    assert rows[0.0]["perplexity"] == pytest.approx(math.exp(float(first)), rel=1e-9) and rows[0.0]["mean_blocks"] == 1
    own = F.cross_entropy(model(x).logits.detach().double().flatten(0, 1), y.flatten())
    assert rows[math.inf]["perplexity"] == pytest.approx(math.exp(float(own)), rel=1e-9)
    assert (rows[math.inf]["mean_blocks"], rows[math.inf]["flops_ratio"]) == (3, 1)


def test_training_lowers_the_exit_loss_and_leaves_the_model_alone():
    model = tiny_gpt(n_layer=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = torch.arange(400) % 7  # a periodic text: the next token is predictable from the current one
    heads, losses = train_exit_heads(model, tokens, steps=60, batch_size=8, lr=3e-2)
    assert sum(losses[-10:]) < 0.95 * sum(losses[:10]), losses  # only the heads' LayerNorms learn: a modest gain
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ExitHeads(tiny_gpt(n_layer=1)), "at least 2 layers"),
    (lambda: list(exit_rows(tiny_gpt(), ExitHeads(tiny_gpt()), *windows(), thresholds=(-0.1,))), "threshold"),
    (lambda: train_exit_heads(tiny_gpt(), torch.arange(50) % 11, steps=0), "steps"),
])
def test_bad_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_run_early_exit_writes_one_row_per_threshold(tmp_path, monkeypatch):
    ids = torch.randint(0, 11, (3000,), generator=torch.Generator().manual_seed(0))
    data = CharData(CharTokenizer("abcdefghij"), ids[:2000], ids[2000:])  # 10 characters + <unk> = 11 ids
    monkeypatch.setattr(early_exit, "zoo_model", lambda size, preset_set, cache_dir=None: tiny_gpt())
    monkeypatch.setattr(early_exit, "prepare_data", lambda: data)
    out = tmp_path / "new" / "faq_early_exit.csv"
    rows = early_exit.run_early_exit(out, target="tiny", steps=3, log=lambda message: None)
    with out.open() as file:
        written = list(csv.DictReader(file))
    assert [float(r["threshold"]) for r in written] == list(early_exit.THRESHOLDS) == [r["threshold"] for r in rows]
    assert list(written[0]) == ["model", "head_steps", "threshold", "perplexity", "mean_blocks", "flops_ratio",
                                "exit_1_share", "exit_2_share"]
    assert float(written[-1]["flops_ratio"]) == 1.0 and float(written[0]["mean_blocks"]) == 1.0
