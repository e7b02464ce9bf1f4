"""Chapter 9's question-4 study: pruning by hand, honest bits, masked recovery, speculative exactness, the CSV files."""

from __future__ import annotations

import csv
import math
from fractions import Fraction

import pytest
import torch

from mini_llm.data import CharData, CharTokenizer
from mini_llm.nn import GPT, GPTConfig
from mini_llm.scaling import compression, decode_speed, sweep, zoo
from mini_llm.scaling.faq_study import TABLES, run_faq_compress

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(seed: int = 0, vocab: int = 12) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=2, n_embd=8)).eval()


def tiny_data(vocab: int = 12) -> CharData:
    generator = torch.Generator().manual_seed(0)
    tokenizer = CharTokenizer("abcdefghijk")  # 11 characters + <unk> = 12 ids
    ids = torch.randint(0, vocab, (4000,), generator=generator)
    return CharData(tokenizer, ids[:3000], ids[3000:])


def test_layer_inputs_are_what_the_first_linear_sees():
    model = tiny_gpt()
    x = torch.randint(0, 12, (2, 16))
    seen = compression.layer_inputs(model, x)
    assert set(seen) == set(compression.block_linears(model))
    with torch.no_grad():
        h = model.transformer.wte(x) + model.transformer.wpe(torch.arange(16))  # (2, 16, 8)
        expected = model.transformer.h[0].ln_1(h).flatten(0, 1)  # (32, 8)
    torch.testing.assert_close(seen["transformer.h.0.attn.c_attn"], expected)


@pytest.mark.parametrize("method", compression.PRUNE_METHODS)
def test_pruned_copy_zeros_exactly_the_masked_weights(method):
    model = tiny_gpt()
    calibration = torch.randint(0, 12, (4, 16))
    pruned, masks = compression.pruned_copy(model, method, 0.5, calibration)
    for name, layer in compression.block_linears(pruned).items():
        original = dict(model.named_modules())[name].weight
        mask = masks[name]
        assert torch.equal(layer.weight, original * mask)
        if method.startswith("2:4"):  # every group of 4 consecutive inputs keeps exactly 2
            assert (mask.reshape(mask.size(0), -1, 4).sum(-1) == 2).all()
        else:
            assert abs(1 - mask.float().mean().item() - 0.5) < 0.05
    assert torch.equal(pruned.lm_head.weight, model.lm_head.weight)  # the embedding stays dense


def test_magnitude_mask_drops_the_smallest_of_a_hand_matrix():
    weight = torch.tensor([[0.1, -3.0, 0.2, 4.0], [-0.05, 1.0, 2.0, -0.3]])
    mask = compression.prune_mask(weight, "magnitude", 0.5, None)
    assert mask.tolist() == [[False, True, False, True], [False, True, True, False]]


def test_sparse_bits_count_2_4_by_hand():
    model = tiny_gpt()
    pruned, masks = compression.pruned_copy(model, "2:4-magnitude", 0.5, torch.zeros(1, 16, dtype=torch.long))
    parts = compression.sparse_bits(pruned, masks, "2:4-magnitude")
    dense = sweep.bit_breakdown(model)
    numel = sum(m.numel() for m in masks.values())
    assert parts["linear"] == numel // 2 * (16 + 2)  # half the values at 16 bits + 2 bits of position each
    assert parts["embedding"] == dense["embedding"] and parts["other"] == dense["other"]


def test_recovery_keeps_pruned_weights_at_zero_and_moves_the_rest():
    model = tiny_gpt()
    data = tiny_data()
    size = zoo.get_sizes("test")[0]
    pruned, masks = compression.pruned_copy(model, "magnitude", 0.7, torch.zeros(1, 16, dtype=torch.long))
    before = {n: layer.weight.clone() for n, layer in compression.block_linears(pruned).items()}
    compression.recover(pruned, masks, size, data, steps=5)
    for name, layer in compression.block_linears(pruned).items():
        assert (layer.weight[~masks[name]] == 0).all()
        assert not torch.equal(layer.weight[masks[name]], before[name][masks[name]])


def test_gap_recovered_closed_form():
    assert compression.gap_recovered(math.exp(2.0), math.exp(1.5), math.exp(1.0)) == pytest.approx(0.5)
    assert compression.gap_recovered(10.0, 10.0, 5.0) == 0.0


def test_precision_rows_float32_equals_the_sweep_evaluation_and_bf16_is_close():
    model = tiny_gpt()
    evals = compression.EvalSet.of(tiny_data(), 16)
    rows = {row["precision"]: row for row in compression.precision_rows(model, evals, repeats=1)}
    assert rows["float32"]["perplexity"] == sweep.evaluate(model, evals.x, evals.y)["perplexity"]
    for precision in ("bf16-autocast", "bf16-weights"):
        assert rows[precision]["perplexity"] == pytest.approx(rows["float32"]["perplexity"], rel=0.03)


def test_speculative_rows_with_the_target_as_its_own_draft_accept_everything():
    target = tiny_gpt()
    prompts = decode_speed.held_out_prompts(torch.arange(100) % 12, 2, 4)
    rows = list(decode_speed.speculative_rows(target, {"self": target}, prompts, 8, gammas=(1, 3), repeats=1,
                                              log=lambda m: None))
    assert rows[0]["draft"] == "none" and rows[0]["target_calls"] == 16
    for row in rows[1:]:
        assert row["identical"] and row["acceptance_rate"] == 1.0
        assert row["target_calls"] == 2 * math.ceil(8 / (row["gamma"] + 1))


def test_held_out_prompts_and_bad_input():
    prompts = decode_speed.held_out_prompts(torch.arange(20), 4, 3)
    assert [p.tolist() for p in prompts] == [[[0, 1, 2]], [[5, 6, 7]], [[10, 11, 12]], [[15, 16, 17]]]
    with pytest.raises(ValueError, match="n_prompts x length"):
        decode_speed.held_out_prompts(torch.arange(10), 4, 3)
    with pytest.raises(ValueError, match="method"):
        compression.prune_mask(torch.ones(2, 4), "random", 0.5, None)
    with pytest.raises(ValueError, match="sparsity"):
        compression.prune_mask(torch.ones(2, 4), "magnitude", 1.0, None)


def test_sparse_matmul_rows_agree_with_dense():
    rows = list(decode_speed.sparse_matmul_rows(n=64, sparsities=(0.0, 0.9), columns=(1, 4), repeats=1))
    assert [(r["sparsity"], r["columns"]) for r in rows] == [(0.0, 1), (0.0, 4), (0.9, 1), (0.9, 4)]
    assert all(r["dense_ms"] > 0 and r["csr_ms"] > 0 for r in rows)


def test_run_faq_compress_on_the_test_zoo(tmp_path):
    cache = tmp_path / "cache"
    for job in zoo.plan("test", seeds=[0]):
        zoo.train_job(job, cache, progress=False, log=lambda m: None)
    out = tmp_path / "results"
    with pytest.raises(FileNotFoundError, match="zoo train"):
        run_faq_compress(out, "test", "1x32", ("1x16",), cache_dir=tmp_path / "empty", log=lambda m: None)
    written = run_faq_compress(out, "test", "1x32", ("1x16",), seeds=(0,), fraction=Fraction(1, 4), recovery_steps=2,
                               new_tokens=8, prompts=2, tables=TABLES[:4], cache_dir=cache, log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"faq_{t}.csv" for t in TABLES[:4])
    with written["pruning"].open() as file:
        pruning = list(csv.DictReader(file))
    baseline = pruning[0]
    assert baseline["method"] == "none" and float(baseline["bits_per_param"]) == 16.0
    assert len(pruning) == 1 + 2 * 9 + 2 + len(compression.RECOVERY)
    with written["speculative"].open() as file:
        assert all(row["identical"] == "True" for row in csv.DictReader(file))
    with written["distillation"].open() as file:
        methods = [row["method"] for row in csv.DictReader(file)]
    assert methods == ["zoo", "scratch", "distilled", "scratch-bf16-autocast"]


def test_prefill_decode_row_counts_the_kv_cache_by_formula():
    model = GPT(GPTConfig(vocab_size=12, block_size=64, n_layer=2, n_head=2, n_embd=8)).eval()
    cached = decode_speed.prefill_decode_row(model, 3, 10, 4, use_cache=True, repeats=1)
    uncached = decode_speed.prefill_decode_row(model, 3, 10, 4, use_cache=False, repeats=1)
    predicted = decode_speed.predicted_kv_cache_bytes(model.config, 3, 10)
    assert cached["kv_cache_bytes"] == predicted == 2 * 2 * 3 * 10 * 8 * 4  # k and v, layers, batch, length, width
    assert cached["decode_ms_per_token"] > 0 and uncached["decode_ms_per_token"] > 0
    assert decode_speed.memory_bandwidth(megabytes=8, repeats=1) > 0


def test_decode_without_the_cache_gives_the_cached_tokens():
    model = tiny_gpt()
    prompt = torch.randint(0, 12, (2, 5))
    with torch.no_grad():
        out = model(prompt)
        tokens = prompt
        for _ in range(4):  # the uncached loop by hand, against generate with the cache
            tokens = torch.cat([tokens, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            out = model(tokens)
    assert torch.equal(decode_speed.greedy_outputs(model, [prompt], 4)[0], tokens)


def test_a_student_keeps_the_whole_runs_warm_up_and_decays_over_its_own_steps():
    size = compression.zoo_size("1x64")
    whole, quarter = size.trainer_config(), compression.student_config(size, Fraction(1, 4), seed=3)
    assert whole.warmup_steps == whole.max_steps // 20 == 73
    assert quarter.max_steps == 368 and quarter.warmup_steps == 73 and quarter.seed == 3
    assert (quarter.lr, quarter.min_lr) == (whole.lr, whole.min_lr) and quarter.eval_interval == 0
    tiny = compression.student_config(size, Fraction(1, 16), seed=0)  # 96 steps: the warm-up is capped at half
    assert tiny.warmup_steps == tiny.max_steps // 2
