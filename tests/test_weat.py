"""WEAT (mini_llm.evaluation.weat) against hand-worked answers and brute force; the corpus counts of trends.bias."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest

from mini_llm.evaluation.weat import association, weat_effect_size, weat_test
from mini_llm.trends.bias import (
    group_summary,
    pronoun_counts,
    share_agreement,
    smoothed_share,
    split_by_count,
    word_counts,
)

# A hand-worked 2-D example. Attributes A = {(1, 0), (2, 0)} (one direction twice: cosine ignores length), B = {(0, 1)}.
# Targets X = {(1, 0), (4, 3)}, Y = {(0, 1), (3, 4)}. Cosines with (1, 0) and (0, 1):
#   x1 = (1, 0): 1 and 0       -> s = 1 - 0     = 1
#   x2 = (4, 3): 4/5 and 3/5   -> s = 0.8 - 0.6 = 0.2
#   y1 = (0, 1): 0 and 1       -> s = 0 - 1     = -1
#   y2 = (3, 4): 3/5 and 4/5   -> s = 0.6 - 0.8 = -0.2
# mean over X 0.6, over Y -0.6: the statistic (difference of means) is 1.2 (Caliskan's difference of sums 2.4).
# std over {1, 0.2, -1, -0.2} with ddof=1: mean 0, squares 1 + 0.04 + 1 + 0.04 = 2.08, variance 2.08 / 3,
# so d = 1.2 / sqrt(2.08 / 3) = 1.44115...
# The C(4, 2) = 6 partitions of the four s values into two pairs, X_i first (statistic = mean X_i - mean Y_i):
#   {1, 0.2} 1.2 (the observed)  {1, -1} 0  {1, -0.2} 0.8  {0.2, -1} -0.8  {0.2, -0.2} 0  {-1, -0.2} -1.2
# One of six is >= 1.2, so the exact one-sided p-value is 1/6.
X_HAND = [[1.0, 0.0], [4.0, 3.0]]
Y_HAND = [[0.0, 1.0], [3.0, 4.0]]
A_HAND = [[1.0, 0.0], [2.0, 0.0]]
B_HAND = [[0.0, 1.0]]


def test_hand_worked_association_effect_size_and_p_value():
    np.testing.assert_allclose(association(X_HAND + Y_HAND, A_HAND, B_HAND), [1.0, 0.2, -1.0, -0.2], atol=1e-15)
    assert weat_effect_size(X_HAND, Y_HAND, A_HAND, B_HAND) == pytest.approx(1.2 / math.sqrt(2.08 / 3), rel=1e-12)
    result = weat_test(X_HAND, Y_HAND, A_HAND, B_HAND)
    assert result.statistic == pytest.approx(1.2, rel=1e-12)
    assert result.effect_size == pytest.approx(1.44115, abs=1e-5)
    assert (result.method, result.partitions) == ("exact", 6)
    assert result.p_value == pytest.approx(1 / 6, rel=1e-12)


def test_swapping_targets_flips_the_sign_and_the_p_value_side():
    rng = np.random.default_rng(0)
    X, Y, A, B = (rng.normal(size=(n, 5)) for n in (4, 5, 3, 3))
    forward, backward = weat_test(X, Y, A, B), weat_test(Y, X, A, B)
    assert backward.effect_size == pytest.approx(-forward.effect_size, rel=1e-12)
    assert backward.statistic == pytest.approx(-forward.statistic, rel=1e-12)
    # without ties: P(stat >= t) + P(stat >= -t) over the same 126 partitions = 1 + P(stat == t) = 1 + 1/126
    assert forward.p_value + backward.p_value == pytest.approx(1 + 1 / math.comb(9, 4), rel=1e-12)
    # swapping the attributes flips the sign too
    assert weat_effect_size(X, Y, B, A) == pytest.approx(-forward.effect_size, rel=1e-12)


def brute_force_p_value(X, Y, A, B, sums=False):
    """One-sided p-value over all partitions, every cosine recomputed in plain Python; sums: Caliskan's statistic."""
    def cos(u, v):
        return sum(a * b for a, b in zip(u, v, strict=True)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    def s(w):
        return sum(cos(w, a) for a in A) / len(A) - sum(cos(w, b) for b in B) / len(B)

    words = list(X) + list(Y)
    n_x, n_y = (1, 1) if sums else (len(X), len(Y))
    observed = sum(map(s, X)) / n_x - sum(map(s, Y)) / n_y
    hits = total = 0
    for chosen in combinations(range(len(words)), len(X)):
        rest = [i for i in range(len(words)) if i not in chosen]
        stat = sum(s(words[i]) for i in chosen) / n_x - sum(s(words[i]) for i in rest) / n_y
        hits += stat >= observed - 1e-12
        total += 1
    return hits / total


@pytest.mark.parametrize("sizes", [(3, 3), (4, 3), (2, 5), (5, 5)])
def test_exact_p_value_equals_brute_force_enumeration(sizes):
    rng = np.random.default_rng(sum(sizes))
    X, Y = rng.normal(size=(sizes[0], 3)), rng.normal(size=(sizes[1], 3))
    A, B = rng.normal(size=(2, 3)), rng.normal(size=(3, 3))
    result = weat_test(X, Y, A, B)
    assert result.method == "exact"
    assert result.partitions == math.comb(sum(sizes), sizes[0])
    lists = X.tolist(), Y.tolist(), A.tolist(), B.tolist()
    assert result.p_value == pytest.approx(brute_force_p_value(*lists))
    assert result.p_value == pytest.approx(brute_force_p_value(*lists, sums=True))  # the same with Caliskan's sums


def test_statistic_has_the_sign_of_the_effect_size_with_unequal_sizes():
    # every s(w, A, B) < 0; X (3 words) less negative on average than Y (1 word), but its sum is more negative
    X, Y, A, B = [[1.0, 3.0], [1.0, 3.0], [1.0, 3.0]], [[1.0, 4.0]], [[1.0, 0.0]], [[0.0, 1.0]]
    s_x, s_y = (1 - 3) / math.sqrt(10), (1 - 4) / math.sqrt(17)  # -0.632 and -0.728
    result = weat_test(X, Y, A, B)
    assert result.statistic == pytest.approx(s_x - s_y, rel=1e-12)
    assert result.statistic > 0 and result.effect_size > 0 and 3 * s_x - s_y < 0
    assert result.p_value == pytest.approx(1 / 4)  # of the 4 partitions only the observed one puts Y_i = {y}


def test_random_permutations_approach_the_exact_p_value_with_the_plus_one_correction():
    rng = np.random.default_rng(6)
    X, Y, A, B = (rng.normal(size=(n, 4)) for n in (8, 8, 3, 2))
    exact = weat_test(X, Y, A, B)  # C(16, 8) = 12870 partitions <= the default permutations
    sampled = weat_test(X, Y, A, B, permutations=5_000, seed=3)  # fewer than 12870: random
    assert (exact.method, exact.partitions, sampled.method, sampled.partitions) == ("exact", 12870, "random", 5000)
    assert 0.05 < exact.p_value < 0.95  # a p-value away from the ends, so the check below has teeth
    # binomial standard error at most sqrt(0.25 / 5000) = 0.0071: four of them
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.03)
    assert sampled.p_value == weat_test(X, Y, A, B, permutations=5_000, seed=3).p_value  # seeded
    one = weat_test(X_HAND, Y_HAND, A_HAND, B_HAND, permutations=1, seed=0)  # 6 partitions > 1: random
    assert one.method == "random" and one.p_value in (0.5, 1.0)  # (1 + 0 or 1) / (1 + 1)


def test_effect_size_ignores_vector_length():
    rng = np.random.default_rng(1)
    X, Y, A, B = (rng.normal(size=(3, 4)) for _ in range(4))
    scale = rng.uniform(0.1, 10.0, size=(3, 1))
    assert weat_effect_size(X * scale, Y, A * scale, B) == pytest.approx(weat_effect_size(X, Y, A, B), rel=1e-12)


@pytest.mark.parametrize(
    ("change", "argument"),
    [
        ({"X": np.zeros((0, 2))}, "X"),
        ({"B": []}, "B"),
        ({"Y": [[1.0, 2.0, 3.0]]}, "Y"),
        ({"A": [[1.0, 0.0, 0.0]]}, "A"),
        ({"A": [[np.nan, 1.0]]}, "A"),
        ({"Y": [[np.inf, 1.0]]}, "Y"),
        ({"B": [[0.0, 0.0]]}, "B"),
        ({"X": [1.0, 0.0]}, "X"),
        ({"X": [["he", "she"]]}, "X"),
    ],
)
def test_bad_input_names_the_argument(change, argument):
    sets = {"X": X_HAND, "Y": Y_HAND, "A": A_HAND, "B": B_HAND, **change}
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        weat_test(**sets)
    with pytest.raises(ValueError, match=rf"^{argument} must"):
        weat_effect_size(**sets)


def test_bad_permutations_and_seed():
    with pytest.raises(ValueError, match="permutations"):
        weat_test(X_HAND, Y_HAND, A_HAND, B_HAND, permutations=0)
    with pytest.raises(ValueError, match="seed"):
        weat_test(X_HAND, Y_HAND, A_HAND, B_HAND, seed=-1)


def test_equal_associations_give_an_undefined_effect_size():
    same = [[1.0, 1.0], [2.0, 2.0]]  # s = 0 for both, so the spread is 0
    assert math.isnan(weat_effect_size(same, same, A_HAND, B_HAND))


# A tiny hand-made corpus: three paragraphs of words.
TINY = [
    ["护士", "说", "她", "很", "忙", "，", "他", "也", "忙"],  # 护士: window 3 -> 她; window 10 -> 她, 他
    ["工程师", "说", "，", "他", "说", "她", "他"],  # 工程师: window 3 -> 他; window 10 -> 他 x2, 她
    ["他", "是", "工程师", "他们", "说", "护士"],  # 他 before 工程师 does not count; 他们 is not 他; 护士 is last
]


def test_pronoun_counts_on_a_tiny_corpus():
    assert pronoun_counts(TINY, ["护士", "工程师"], window=3) == {"护士": (0, 1), "工程师": (1, 0)}
    assert pronoun_counts(TINY, ["护士", "工程师", "司机"], window=10) == {
        "护士": (1, 1), "工程师": (2, 1), "司机": (0, 0)}
    with pytest.raises(ValueError, match="window"):
        pronoun_counts(TINY, ["护士"], window=0)


def test_word_counts_and_frequency_filter():
    counts = word_counts(TINY)
    assert (counts["他"], counts["工程师"], counts["护士"], counts["她"], counts["他们"]) == (4, 2, 2, 2, 1)
    assert split_by_count(["护士", "他们", "司机", "他"], counts, min_count=2) == (["护士", "他"], ["他们", "司机"])


def test_smoothed_share_and_agreement():
    assert smoothed_share(0, 0) == 0.5
    assert smoothed_share(3, 1) == pytest.approx(1.5 / 5)  # (1 + 0.5) / (3 + 1 + 1)
    with pytest.raises(ValueError, match="he"):
        smoothed_share(-1, 0)
    corpus = np.array([0.1, 0.2, 0.4, 0.6])
    same = share_agreement(corpus, corpus)
    assert (same.n, same.pearson, same.slope, same.logit_slope) == pytest.approx((4, 1.0, 1.0, 1.0))
    odds = np.exp(2.0 * np.log(corpus / (1 - corpus)))  # log-odds doubled: the model amplifies
    amplified = share_agreement(corpus, odds / (1 + odds))
    assert amplified.logit_slope == pytest.approx(2.0) and amplified.logit_pearson == pytest.approx(1.0)
    with pytest.raises(ValueError, match="model_share"):
        share_agreement(corpus, [0.1, 0.2, 0.3, 1.0])


def test_group_summary_pools_the_counts():
    rows = [{"group": "m", "corpus_he": 3, "corpus_she": 0, "model_share": 0.1},
            {"group": "f", "corpus_he": 1, "corpus_she": 1, "model_share": 0.4},
            {"group": "m", "corpus_he": 1, "corpus_she": 1, "model_share": 0.3}]
    summary = group_summary(rows)
    assert list(summary) == ["m", "f"]
    assert summary["m"] == pytest.approx({"words": 2, "corpus_he": 4, "corpus_she": 1, "corpus_share": 0.2,
                                          "model_share": 0.2})
    assert summary["f"]["corpus_share"] == 0.5
