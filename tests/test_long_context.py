"""The long-context evaluations of chapter 9 against a float64 computation written out position by position, their
costs counted by hand, bad arguments, and a RoPE preset through a run directory."""

import copy
import math

import pytest
import torch

from mini_llm.nn import GPT, GPTConfig
from mini_llm.scaling import long_context
from mini_llm.scaling.long_context import (
    chunked_perplexity,
    rope_scaled,
    sliding_perplexity,
    sliding_spans,
    window_perplexity,
)
from mini_llm.tasks.charlm import CharGPTPreset, load_char_gpt, read_run_config, train_char_gpt
from mini_llm.train import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = 20


def tiny_gpt(position: str, seed: int = 0, **changes) -> GPT:
    """A random 1-layer GPT over 20 ids with context 32."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=1, n_head=2, n_embd=16, position=position, **changes)
    return GPT(config).eval()


def random_ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def reference_perplexity(model: GPT, ids: torch.Tensor, starts: dict[int, int]) -> float:
    """exp of the mean of -log p(ids[p + 1] | ids[starts[p] : p + 1]) in float64, one forward pass per position."""
    model64 = copy.deepcopy(model).double()
    total = 0.0
    with torch.no_grad():
        for p, start in starts.items():
            logits = model64(ids[None, start : p + 1]).logits[0, -1]  # (V,) float64
            total -= torch.log_softmax(logits, dim=-1)[ids[p + 1]].item()
    return math.exp(total / len(starts))


@pytest.mark.parametrize("position", ["learned", "rope", "alibi"])
def test_window_perplexity_matches_float64_reference(position):
    model, ids = tiny_gpt(position), random_ids(200)
    length = 16 if position == "learned" else 40  # RoPE and ALiBi run past block_size 32
    result = window_perplexity(model, ids, length, 3)
    starts = {p: p // length * length for p in range(3 * length)}  # windows from the start, every position scored
    assert result.perplexity == pytest.approx(reference_perplexity(model, ids, starts), rel=1e-5)
    assert result.scored_tokens == result.tokens_processed == 3 * length


@pytest.mark.parametrize("position", ["learned", "rope", "alibi"])
def test_chunked_and_sliding_match_float64_reference(position):
    model, ids = tiny_gpt(position), random_ids(101)  # 100 inputs
    chunked = chunked_perplexity(model, ids, 24)
    starts = {p: p // 24 * 24 for p in range(100)}  # a chunk sees nothing of the one before
    assert chunked.perplexity == pytest.approx(reference_perplexity(model, ids, starts), rel=1e-5)
    window, stride = 32, 12
    sliding = sliding_perplexity(model, ids, window, stride)
    # position p >= window is scored by the window k = (p - window) // stride + 1, which begins at k * stride
    starts = {p: 0 if p < window else ((p - window) // stride + 1) * stride for p in range(100)}
    assert sliding.perplexity == pytest.approx(reference_perplexity(model, ids, starts), rel=1e-5)
    assert sliding.perplexity != pytest.approx(chunked.perplexity, rel=1e-4)  # the context does change the numbers


def test_sliding_with_stride_equal_to_window_is_chunked_exactly():
    model, ids = tiny_gpt("rope"), random_ids(150)
    for size in (7, 16, 32):
        assert sliding_perplexity(model, ids, size, size) == chunked_perplexity(model, ids, size)


def test_tokens_processed_counted_by_hand():
    model, ids = tiny_gpt("alibi"), random_ids(101)  # 100 inputs
    # windows begin at 0, 16, ..., 80; the first five hold 32 tokens, the last [80, 100) only 20
    assert sliding_spans(100, 32, 16) == [(0, 32, 0), (16, 48, 32), (32, 64, 48), (48, 80, 64), (64, 96, 80),
                                          (80, 100, 96)]
    sliding = sliding_perplexity(model, ids, 32, 16)
    assert (sliding.tokens_processed, sliding.scored_tokens) == (5 * 32 + 20, 100)
    chunked = chunked_perplexity(model, ids, 32)  # 32 + 32 + 32 + 4
    assert (chunked.tokens_processed, chunked.scored_tokens) == (100, 100)
    assert sliding_perplexity(model, ids, 32, 1).tokens_processed == 32 + 68 * 32  # one window per new token
    assert window_perplexity(model, ids, 16, 6).tokens_processed == 96


def test_evaluation_batches_stay_bounded(monkeypatch):
    model, ids = tiny_gpt("rope"), random_ids(300)
    whole = window_perplexity(model, ids, 20, 12)
    monkeypatch.setattr(long_context, "BATCH_TOKENS", 40)  # two windows per forward pass instead of twelve
    seen = []
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda idx, *a, **k: seen.append(tuple(idx.shape)) or original(idx, *a, **k))
    batched = window_perplexity(model, ids, 20, 12)
    assert seen == [(2, 20)] * 6
    assert batched.perplexity == pytest.approx(whole.perplexity, rel=1e-6)


def test_rope_scaled_keeps_the_weights_and_changes_only_the_scaling():
    model, ids = tiny_gpt("rope"), random_ids(100)
    scaled = rope_scaled(model, "ntk", 4.0)
    assert (scaled.config.rope_scaling, scaled.config.rope_factor) == ("ntk", 4.0)
    assert model.config.rope_scaling is None  # the original is untouched
    pairs = zip(model.state_dict().values(), scaled.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert rope_scaled(model, None, 1.0)(ids[None]).logits.equal(model(ids[None]).logits)
    assert not rope_scaled(model, "linear", 2.0)(ids[None]).logits.equal(model(ids[None]).logits)
    with pytest.raises(ValueError, match="model must use RoPE"):
        rope_scaled(tiny_gpt("alibi"), "ntk", 2.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, ids: window_perplexity(m, ids, 32, 4), r"ids must hold at least .* = 129 tokens.*got 100"),
        (lambda m, ids: window_perplexity(m, ids, 0, 1), "length must be an integer >= 1, got 0"),
        (lambda m, ids: window_perplexity(m, ids, 8, 0), "n_windows must be an integer >= 1, got 0"),
        (lambda m, ids: window_perplexity(m, ids, 33, 1), "length must be <= block_size = 32"),
        (lambda m, ids: chunked_perplexity(m, ids, 64), "chunk must be <= block_size = 32"),
        (lambda m, ids: sliding_perplexity(m, ids, 48, 8), "window must be <= block_size = 32"),
        (lambda m, ids: sliding_perplexity(m, ids, 16, 0), r"stride must be an integer in \[1, window = 16\], got 0"),
        (lambda m, ids: sliding_perplexity(m, ids, 16, 17), r"stride must be an integer in \[1, window = 16\], got 17"),
        (lambda m, ids: chunked_perplexity(m, ids[:1], 8), "ids must hold at least 2 tokens"),
        (lambda m, ids: chunked_perplexity(m, ids.float(), 8), "ids must be a 1-D integer tensor"),
        (lambda m, ids: chunked_perplexity(m, ids[None], 8), r"ids must be a 1-D integer tensor .*\(1, 100\)"),
    ],
)
def test_bad_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_gpt("learned"), random_ids(100))


def test_rope_and_alibi_models_run_past_block_size():
    ids = random_ids(200)
    for position in ("rope", "alibi"):
        assert window_perplexity(tiny_gpt(position), ids, 64, 2).scored_tokens == 128


def test_existing_presets_still_build_learned_models():
    preset = long_context.long_context_preset("learned", 10)
    assert preset.gpt_config(100).position == "learned"
    assert CharGPTPreset(description="", n_layer=1, n_head=1, n_embd=8, block_size=8,
                         trainer=TrainerConfig()).gpt_config(10).position == "learned"


def test_a_rope_preset_round_trips_through_its_run_directory(tmp_path):
    preset = CharGPTPreset(
        description="for tests", n_layer=1, n_head=2, n_embd=16, block_size=16, position="rope", name="micro-rope",
        trainer=TrainerConfig(max_steps=3, batch_size=2, lr=3e-3, warmup_steps=1, eval_interval=3, eval_batches=1),
    )
    model, _, _ = train_char_gpt(preset, tmp_path / "run", progress=False)
    assert read_run_config(tmp_path / "run")["model"]["position"] == "rope"
    loaded, _ = load_char_gpt(tmp_path / "run")
    assert loaded.config == model.config and loaded.config.position == "rope"
    assert "wpe" not in dict(loaded.transformer.named_children())  # no learned position table
    ids = torch.arange(40)[None] % model.config.vocab_size  # (1, 40): longer than block_size 16
    assert torch.allclose(loaded(ids).logits, model(ids).logits)
    assert long_context.run_status(tmp_path / "run", "rope", 3, 0) == "other"  # not a long-context recipe


def test_run_status_reuses_only_a_finished_run_of_the_same_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(long_context, "TRAIN_LENGTH", 8)
    monkeypatch.setattr(long_context, "CharGPTPreset", lambda **kw: CharGPTPreset(**kw | {"n_embd": 16}))
    run = long_context.run_dir("alibi", 3, tmp_path)
    assert run == tmp_path / "long_context" / "alibi-seed3"
    assert long_context.run_status(run, "alibi", 2, 3) == "missing"
    train_char_gpt(long_context.long_context_preset("alibi", 2), run, seed=3, progress=False, until=1)
    assert long_context.run_status(run, "alibi", 2, 3) == "partial"
    model = long_context.train_position("alibi", 2, 3, tmp_path, log=lambda line: None)  # resumes to step 2
    assert model.config.position == "alibi" and long_context.run_status(run, "alibi", 2, 3) == "done"
    assert long_context.run_status(run, "alibi", 4, 3) == "other"  # another number of steps: trained anew
    assert long_context.run_status(run, "alibi", 2, 0) == "other"


def test_local_attention_rows_match_the_float64_window_reference(monkeypatch):
    # a window of 8: at every position the model sees the last 8 tokens only, i.e. the reference of the last 8 ids
    monkeypatch.setattr(long_context, "LOCAL_LENGTHS", (16, 48))
    monkeypatch.setattr(long_context, "SCORED_TOKENS", 96)
    models = {p: tiny_gpt(p) for p in long_context.LOCAL_POSITIONS}
    ids = random_ids(400)
    rows = long_context.local_attention_rows(models, ids, window=8, new_tokens=2, log=lambda m: None)
    assert [(r["position"], r["attention"], r["eval_length"]) for r in rows] == [
        (p, a, n) for p in ("rope", "alibi") for a in ("full", "window-8") for n in (16, 48)]
    for row in rows:
        if row["attention"] == "window-8":
            n = row["eval_length"]
            starts = {w * n + t: max(w * n, w * n + t - 7) for w in range(96 // n) for t in range(n)}
            expected = reference_perplexity(models[row["position"]], ids, starts)
            assert row["perplexity"] == pytest.approx(expected, rel=1e-4), row
            assert row["kv_cache_bytes"] == 2 * 1 * 2 * 7 * 8 * 4  # one layer's keys + values of 7 positions
        else:
            assert row["kv_cache_bytes"] == 2 * 1 * 2 * row["eval_length"] * 8 * 4
