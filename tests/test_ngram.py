"""n-gram language models against closed-form answers."""

import math

import numpy as np
import pytest

from mini_llm.tasks.ngram import UNKNOWN_CHAR, NGramLanguageModel, absolute_discount

TEXT = "人民日报社论：迈向充满希望的新世纪。新世纪充满希望，人民充满信心。"


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
def test_distributions_sum_to_one(order, smoothing):
    model = NGramLanguageModel(order, smoothing=smoothing, add_k=0.5).fit(TEXT)
    for history in ["", "充满", "新世纪", "从未见过", "人民日报社"]:
        total = math.fsum(model.prob(history, char) for char in model.vocab)
        assert total == pytest.approx(1.0, abs=1e-12)
        assert all(model.prob(history, char) > 0 for char in model.vocab)


def test_kneser_ney_by_hand():
    # "abab": bigrams ab x2, ba x1 -> D2 = n1/(n1+2 n2) = 1/3. Continuation counts N1+(.a) = N1+(.b) = 1
    # -> D1 = 2/(2+0) = 1, P1(w) = (max(1-1, 0) + 1 * 2 * 1/3) / 2 = 1/3 for a, b and the unknown symbol.
    # P(b|a) = (2 - 1/3 + 1/3 * 1 * 1/3) / 2 = 8/9 and P(a|a) = (1/3 * 1 * 1/3) / 2 = 1/18.
    model = NGramLanguageModel(2).fit("abab")
    assert model.vocab_size == 3
    assert model.prob("", "a") == pytest.approx(1 / 3)
    assert model.prob("a", "b") == pytest.approx(8 / 9)
    assert model.prob("a", "a") == pytest.approx(1 / 18)
    assert model.prob("a", "z") == pytest.approx(1 / 18)  # unseen characters share the unknown symbol
    assert model.prob("b", "a") == pytest.approx((1 - 1 / 3 + 1 / 3 * 1 / 3) / 1)
    assert model.prob("zzz", "a") == pytest.approx(1 / 3)  # unseen history: back off to the unigram


def test_perplexity_closed_forms():
    uniform = NGramLanguageModel(1, smoothing="none").fit("abcd" * 10 + "\n")
    assert uniform.perplexity("abcd") == pytest.approx(41 / 10)  # each of a..d has probability 10/41
    assert NGramLanguageModel(2, smoothing="none").fit("abcd" * 10).perplexity("abcd") == pytest.approx(
        math.exp(-math.log(10 / 40) / 4))  # first char unigram 10/40, then three certain bigrams
    assert math.isinf(NGramLanguageModel(2, smoothing="none").fit("abab").perplexity("aa"))
    model = NGramLanguageModel(3).fit(TEXT)
    log_probs = model.log_probs("新世纪充满信心")
    assert model.perplexity("新世纪充满信心") == pytest.approx(math.exp(-np.mean(log_probs)))
    assert log_probs[2] == pytest.approx(math.log(model.prob("新世", "纪")))


def test_add_k_formula():
    model = NGramLanguageModel(2, smoothing="add-k", add_k=1.0).fit("abab")
    # c(ab) = 2, c(a.) = 2, V = 3 (a, b, unknown): (2 + 1) / (2 + 3).
    assert model.prob("a", "b") == pytest.approx(3 / 5)


def test_absolute_discount():
    assert absolute_discount([1, 1, 2, 5]) == pytest.approx(2 / (2 + 2))
    assert absolute_discount([3, 4]) == 0.5


def test_generation_is_seeded_and_follows_the_counts():
    deterministic = NGramLanguageModel(2, smoothing="none").fit("abcd" * 10)
    assert deterministic.generate("a", 6) == "abcdabc"  # every bigram has probability 1
    model = NGramLanguageModel(3).fit(TEXT)
    assert model.generate("新世", 20, seed=7) == model.generate("新世", 20, seed=7)
    assert len({model.generate("新世", 20, seed=s) for s in range(5)}) > 1
    assert set(model.generate("新世", 50, seed=1)) <= set(TEXT)
    symbols, probs = model.distribution("充满")
    assert symbols == sorted(model.vocab) and probs.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_chars must be >= 0"):
        model.generate("a", -1)


def test_bad_input():
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        NGramLanguageModel(0)
    with pytest.raises(ValueError, match="smoothing must be one of"):
        NGramLanguageModel(2, smoothing="laplace")
    with pytest.raises(ValueError, match="add_k must be > 0"):
        NGramLanguageModel(2, smoothing="add-k", add_k=0)
    with pytest.raises(ValueError, match="non-empty string"):
        NGramLanguageModel(2).fit("")
    with pytest.raises(ValueError, match="reserved character"):
        NGramLanguageModel(2).fit("a" + UNKNOWN_CHAR)
    with pytest.raises(RuntimeError, match="call fit"):
        NGramLanguageModel(2).prob("a", "b")
    with pytest.raises(ValueError, match="non-empty string"):
        NGramLanguageModel(2).fit("ab").perplexity("")
