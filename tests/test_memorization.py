"""Memorization (chapter 8): exposure and extraction metrics by hand, and the experiment's pieces on tiny models."""

import copy
import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mini_llm.data import CharTokenizer
from mini_llm.evaluation.memorization import (
    copies_in,
    count_occurrences,
    duplication_rows,
    exposure,
    exposure_rank,
    extraction_lengths,
    extraction_rate,
    extraction_summary,
    random_rank_exposure,
    window_copies,
)
from mini_llm.nn import GPT, GPTConfig
from mini_llm.scaling.zoo import plan
from mini_llm.trends import memorization as mem

# ---------------------------------------------------------------- exposure


def test_exposure_of_the_second_of_eight_candidates_is_two_bits():
    candidates = [5.0, 1.0, 7.0, 2.0, 9.0, 3.5, 8.0, 6.0]  # the canary 2.0 is the second most likely
    assert exposure_rank(2.0, candidates) == 2
    assert exposure(2.0, candidates) == pytest.approx(math.log2(8) - math.log2(2)) == 2.0
    assert exposure(1.0, candidates) == pytest.approx(3.0)  # the most likely: log2 |R|
    assert exposure(9.0, candidates) == pytest.approx(0.0)  # the least likely: rank |R|


def test_ties_count_against_the_canary():
    candidates = [1.0, 2.0, 2.0, 2.0, 3.0]  # the canary 2.0 ties with two other candidates: rank 4, not 2
    assert exposure_rank(2.0, candidates) == 4
    assert exposure(2.0, candidates) == pytest.approx(math.log2(5 / 4))
    assert exposure(3.0, [3.0] * 16) == pytest.approx(0.0)  # a model that cannot tell them apart exposes nothing


def test_exposure_of_several_canaries_at_once_matches_one_by_one():
    rng = np.random.default_rng(0)
    candidates = rng.normal(size=100)
    canaries = candidates[[3, 50, 99]]
    expected = [exposure(float(c), candidates) for c in canaries]
    np.testing.assert_allclose(exposure(canaries, candidates), expected)
    assert list(exposure_rank(canaries, candidates)) == [int((candidates <= c).sum()) for c in canaries]


def test_random_rank_exposure_is_the_mean_over_uniform_ranks():
    for n in (1, 2, 7, 1000):
        ranks = np.arange(1, n + 1)
        assert random_rank_exposure(n) == pytest.approx(np.mean(math.log2(n) - np.log2(ranks)), abs=1e-12)
    assert random_rank_exposure(10**5) == pytest.approx(1 / math.log(2), abs=1e-3)  # 1.44 bits


@pytest.mark.parametrize(
    ("canary", "candidates", "name"),
    [
        (1.0, [], "candidate_log_perplexities"),
        (float("nan"), [1.0, 2.0], "canary_log_perplexity"),
        (1.0, [1.0, float("nan")], "candidate_log_perplexities"),
        (1.0, [1.0, float("inf")], "candidate_log_perplexities"),
        (1.0, [[1.0, 2.0]], "candidate_log_perplexities"),
        ([[1.0]], [1.0, 2.0], "canary_log_perplexity"),
        ("1", [1.0, 2.0], "canary_log_perplexity"),
        (None, [1.0, 2.0], "canary_log_perplexity"),
        (0.5, [1.0, 2.0], "candidate_log_perplexities"),  # the canary is not among the candidates
    ],
)
def test_exposure_rejects_bad_input_naming_the_argument(canary, candidates, name):
    with pytest.raises(ValueError, match=name):
        exposure(canary, candidates)


# ---------------------------------------------------------------- extraction metrics


def test_extraction_lengths_by_hand():
    generated = ["北京市长", "北京站前", "", "abc", "xyz"]
    reference = ["北京市长", "北京市", "上海", "abcdef", "ayz"]
    assert extraction_lengths(generated, reference).tolist() == [4, 2, 0, 3, 0]
    assert extraction_lengths([[1, 2, 3]], [[1, 2, 4]]).tolist() == [2]  # token ids work too


def test_extraction_rate_by_hand():
    lengths = [0, 3, 16, 15, 64, 32]
    assert extraction_rate(lengths, 16) == pytest.approx(3 / 6)
    assert extraction_rate(lengths, 1) == pytest.approx(5 / 6)
    assert extraction_rate(lengths, 65) == 0.0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: extraction_lengths(["ab"], ["ab", "cd"]), "same length"),
        (lambda: extraction_lengths("ab", ["ab"]), "generated"),
        (lambda: extraction_lengths(["ab"], [3]), "reference"),
        (lambda: extraction_rate([], 16), "lengths"),
        (lambda: extraction_rate([1, -2], 16), "lengths"),
        (lambda: extraction_rate([1.5], 16), "lengths"),
        (lambda: extraction_rate([1, float("nan")], 16), "lengths"),
        (lambda: extraction_rate([[1, 2]], 16), "lengths"),
        (lambda: extraction_rate([1, 2], 0), "n must be"),
        (lambda: extraction_rate([1, 2], 2.0), "n must be"),
    ],
)
def test_extraction_metrics_reject_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_extraction_summary_counts_and_bounds_the_shares():
    rows = extraction_summary(np.array([0, 5, 16, 64]), (1, 16, 64))
    assert [(r["min_chars"], r["extracted"], r["rate"]) for r in rows] == [(1, 3, 0.75), (16, 2, 0.5), (64, 1, 0.25)]
    assert all(0.0 <= r["rate_low"] <= r["rate"] <= r["rate_high"] <= 1.0 for r in rows)


# ---------------------------------------------------------------- duplicated text


def brute_force_copies(text: np.ndarray, length: int) -> list[int]:
    windows = [tuple(text[i:i + length]) for i in range(len(text) - length + 1)]
    counts = Counter(windows)
    return [counts[w] for w in windows]


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 13])
def test_window_copies_match_a_brute_force_count(length):
    text = np.random.default_rng(length).integers(0, 3, size=400)  # three symbols: many repeats
    assert window_copies(text, length).tolist() == brute_force_copies(text, length)


def test_count_occurrences_and_held_out_copies_match_a_brute_force_count():
    rng = np.random.default_rng(1)
    text, other = rng.integers(0, 2, size=300), rng.integers(0, 2, size=60)
    queries = np.stack([other[i:i + 6] for i in range(len(other) - 5)])  # (55, 6)
    train_windows = Counter(tuple(text[i:i + 6]) for i in range(len(text) - 5))
    expected = [train_windows[tuple(q)] for q in queries]
    assert count_occurrences(text, queries).tolist() == expected
    assert copies_in(text, other, 6).tolist() == expected
    with pytest.raises(ValueError, match="queries"):
        count_occurrences(text, queries[0])


def test_duplication_rows_by_hand():
    train = np.array([1, 2, 3, 1, 2, 3, 4])  # windows of 3: 123 231 312 123 234 -> 123 twice
    held_out = np.array([2, 3, 1, 9])  # windows of 3: 231 (in train), 319 (not)
    rows = duplication_rows(train, held_out, [3])
    assert rows[0] == {"text": "train", "window_chars": 3, "windows": 5, "duplicated_windows": 2,
                       "duplicated_share": 0.4, "distinct_duplicated": 1, "max_copies": 2}
    assert rows[1]["text"] == "held_out" and rows[1]["windows"] == 2 and rows[1]["duplicated_share"] == 0.5


def test_draw_prefixes_samples_unique_and_duplicated_windows():
    span = mem.PREFIX_CHARS + mem.CONTINUATION_CHARS
    ids = np.arange(1000)
    other = np.zeros(len(ids) - span + 1, dtype=np.int64)
    other[[10, 20, 30]] = [1, 2, 1]
    samples = mem.draw_prefixes("train", ids, other, 50, np.random.default_rng(0))
    groups = {s.group: s for s in samples}
    assert set(groups) == {"all", "unique", "duplicated"}
    assert len(groups["all"].starts) == 50 and len(np.unique(groups["all"].starts)) == 50
    assert (groups["unique"].other_copies == 0).all() and set(groups["unique"].starts) <= set(groups["all"].starts)
    assert groups["duplicated"].starts.tolist() == [10, 20, 30]  # all three, fewer than asked
    again = mem.draw_prefixes("train", ids, other, 50, np.random.default_rng(0))
    assert all((a.starts == b.starts).all() for a, b in zip(samples, again, strict=True))


# ---------------------------------------------------------------- models


def tiny_gpt(vocab_size: int, seed: int = 0, block_size: int = 16) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def test_greedy_continuations_match_an_argmax_loop_without_cache():
    model = tiny_gpt(11)
    prefixes = torch.randint(0, 11, (5, 4), generator=torch.Generator().manual_seed(0))
    got = mem.greedy_continuations(model, prefixes, 6, batch_size=2)
    idx = prefixes.clone()
    with torch.no_grad():
        for _ in range(6):
            idx = torch.cat([idx, model(idx).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(got, idx[:, 4:])


def test_continuation_loss_matches_a_float64_reference():
    model = tiny_gpt(11)
    windows = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(1))
    got = mem.continuation_loss(model, windows, prefix=4, batch_size=2)
    exact = tiny_gpt(11).double()
    with torch.no_grad():
        log_probs = F.log_softmax(exact(windows[:, :-1]).logits, dim=-1)  # (3, 9, V)
    nll = -log_probs.gather(-1, windows[:, 1:, None])[..., 0]  # (3, 9): position t predicts character t + 1
    torch.testing.assert_close(got, nll[:, 3:].mean(dim=1), rtol=1e-5, atol=1e-5)


def test_secret_scores_equal_per_candidate_float64_log_likelihoods():
    model = tiny_gpt(13).double()
    context, digits = [1, 0, 12], list(range(2, 12))
    scores = mem.secret_log_perplexities(model, context, digits, n_digits=3, batch_size=37)
    assert scores.shape == (1000,) and scores.dtype == np.float64
    for value in np.random.default_rng(0).choice(1000, size=40, replace=False):
        secret = [digits[int(c)] for c in f"{value:03d}"]
        with torch.no_grad():
            log_probs = F.log_softmax(model(torch.tensor([context + secret])).logits[0], dim=-1)  # (T, V)
        expected = -sum(float(log_probs[len(context) - 1 + j, secret[j]]) for j in range(3))
        assert scores[value] == pytest.approx(expected, abs=1e-10)
    assert np.exp(-scores).sum() <= 1.0  # probabilities of disjoint continuations


CANARY_CHARS = "".join(mem.NAMES) + "的密码是" + mem.DIGITS + "\n新年好。"


def canary_tokenizer() -> CharTokenizer:
    return CharTokenizer.from_texts([CANARY_CHARS])


def test_make_canaries_gives_each_repeat_count_its_own_names_and_secrets():
    canaries = mem.make_canaries(np.random.default_rng(0), repeats=(1, 4), per_repeat=3, n_digits=4)
    assert Counter(c.repeats for c in canaries) == {0: 3, 1: 3, 4: 3}
    assert len({c.name for c in canaries}) == 9 and all(len(c.secret) == 4 and c.secret.isdigit() for c in canaries)
    assert canaries == mem.make_canaries(np.random.default_rng(0), repeats=(1, 4), per_repeat=3, n_digits=4)
    assert mem.Canary("李娜", "01234", 1).text == "李娜的密码是０１２３４"
    with pytest.raises(ValueError, match="names"):
        mem.make_canaries(np.random.default_rng(0), per_repeat=5)


def test_insert_canaries_inserts_each_exactly_as_often_as_asked():
    tokenizer = canary_tokenizer()
    train = torch.tensor(tokenizer.encode("新年好。\n" * 200), dtype=torch.long)
    canaries = mem.make_canaries(np.random.default_rng(1), repeats=(1, 4, 16), per_repeat=2)
    new, placed = mem.insert_canaries(train, canaries, tokenizer, np.random.default_rng(2))
    text = new.numpy()
    for canary in canaries:
        ids = np.array(tokenizer.encode("\n" + canary.text + "\n"))
        assert count_occurrences(text, ids[None])[0] == canary.repeats
    assert len(placed) == 2 * (1 + 4 + 16)
    keep = np.ones(len(text), dtype=bool)
    for start, canary in placed:
        length = len(canary.text) + 1  # the paragraph and its newline
        assert tokenizer.decode(text[start:start + length].tolist()) == canary.text + "\n"
        assert text[start - 1] == tokenizer.encode("\n")[0]  # a paragraph of its own
        keep[start:start + length] = False
    assert torch.equal(torch.from_numpy(text[keep]), train)  # nothing else changed
    with pytest.raises(ValueError, match="paragraph breaks"):
        mem.insert_canaries(train[:10], canaries, tokenizer, np.random.default_rng(2))


def test_canary_rows_rank_the_secret_among_all_candidates():
    tokenizer = canary_tokenizer()
    model = tiny_gpt(tokenizer.vocab_size)
    canaries = [mem.Canary("李娜", "042", 4), mem.Canary("陈静", "917", 0)]
    rows = mem.canary_rows(model, canaries, tokenizer, {"model": "tiny"}, n_digits=3)
    exact = tiny_gpt(tokenizer.vocab_size).double()
    for row, canary in zip(rows, canaries, strict=True):
        context = tokenizer.encode(canary.context)
        bits = mem.secret_log_perplexities(exact, context, tokenizer.encode(mem.DIGITS), 3) / math.log(2)
        rank = int((bits <= bits[canary.value]).sum())
        assert row["rank"] == rank and row["candidates"] == 1000 and row["model"] == "tiny"
        assert row["exposure_bits"] == pytest.approx(math.log2(1000) - math.log2(rank))
        assert row["extracted"] == (rank == 1) and row["most_likely_secret"] == f"{int(np.argmin(bits)):03d}"


def test_train_canary_model_is_deterministic_and_trains():
    tokenizer = canary_tokenizer()
    train = torch.tensor(tokenizer.encode(("新年好。\n" + "李娜的密码是０１２\n") * 40), dtype=torch.long)
    size = plan("test", ["1x16"], [0])[0].size  # 8 steps of 4 x 16 tokens
    start = tiny_gpt(tokenizer.vocab_size)
    first = mem.train_canary_model(copy.deepcopy(start), train, size, seed=3)
    second = mem.train_canary_model(copy.deepcopy(start), train, size, seed=3)
    assert not first.training
    changed = False
    for a, b, c in zip(first.state_dict().values(), second.state_dict().values(), start.state_dict().values(),
                       strict=True):
        assert torch.equal(a, b)
        changed |= not torch.equal(a, c)
    assert changed


def test_canary_text_is_cut_after_a_paragraph_break():
    train = torch.tensor([5, 5, 1, 6, 6, 6, 1, 7, 7, 7])
    assert mem.canary_text(train, 0.5, newline=1).tolist() == [5, 5, 1]  # 5 ids, back to the break
    assert mem.canary_text(train, 1.0, newline=1).tolist() == train.tolist()
    with pytest.raises(ValueError, match="text_fraction"):
        mem.canary_text(train, 0.0, newline=1)
