"""Class imbalance and truncation helpers, checked against torch's weighted cross-entropy and naive Bayes by hand."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mini_llm.tasks.classify import (
    CharNGramNaiveBayes,
    EncoderSize,
    FineTuneConfig,
    HFEncoder,
    TextClassificationDataset,
    check_class_weights,
    class_prior,
    fine_tune,
    hf_bert_classifier,
    imbalanced_indices,
    inverse_frequency_weights,
    make_loader,
    prior_shift,
    train_char_tokenizer,
    truncate_text,
    weighted_cross_entropy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.2, 3.0, 1.5], [0.0, 1.0, 2.0]])
def test_weighted_cross_entropy_matches_torch(weights):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(17, 3, generator=generator)  # (B, C)
    labels = torch.randint(0, 3, (17,), generator=generator)  # (B,)
    w = torch.tensor(weights)
    expected = F.cross_entropy(logits, labels, weight=w)
    assert torch.allclose(weighted_cross_entropy(logits, labels, w), expected, atol=1e-6)


def test_weighted_cross_entropy_rejects_bad_shapes():
    with pytest.raises(ValueError, match="logits must be"):
        weighted_cross_entropy(torch.zeros(4), torch.zeros(4, dtype=torch.long), torch.ones(2))


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "one weight per class"), ([1.0, -0.5], ">= 0"), ([1.0, float("nan")], "finite"),
     ([0.0, 0.0], "not all zero"), ([1.0, float("inf")], "finite")],
)
def test_check_class_weights_names_the_argument(weights, message):
    with pytest.raises(ValueError, match="class_weights") as error:
        check_class_weights(weights, 2)
    assert message in str(error.value)


def test_inverse_frequency_weights_by_hand():
    labels = [0, 1, 1, 1]
    weights = inverse_frequency_weights(labels)
    np.testing.assert_allclose(weights, [4 / (2 * 1), 4 / (2 * 3)])
    np.testing.assert_allclose(weights * np.bincount(labels), [2.0, 2.0])  # every class carries the same weight
    np.testing.assert_allclose(class_prior(labels), [0.25, 0.75])
    with pytest.raises(ValueError, match="every class"):
        inverse_frequency_weights([1, 1, 1])
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        class_prior([0, 2])


def test_imbalanced_indices_keeps_the_other_class_and_a_seeded_share():
    labels = np.array([0, 1] * 50)  # 50 of each
    rows = imbalanced_indices(labels, minority=0, ratio=4, seed=3)
    assert np.all(np.diff(rows) > 0)
    assert np.bincount(labels[rows]).tolist() == [round(50 / 4), 50]
    assert np.array_equal(rows, imbalanced_indices(labels, minority=0, ratio=4, seed=3))
    assert not np.array_equal(rows, imbalanced_indices(labels, minority=0, ratio=4, seed=4))
    assert np.array_equal(imbalanced_indices(labels, minority=1, ratio=1), np.arange(100))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"minority": 0, "ratio": 0.5}, "ratio must be"), ({"minority": 0, "ratio": float("nan")}, "ratio must be"),
     ({"minority": 2, "ratio": 4}, "minority must be"), ({"minority": 0, "ratio": 1000}, "ratio=1000")],
)
def test_imbalanced_indices_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        imbalanced_indices([0, 1] * 10, **kwargs)


def _hand_naive_bayes(text: str, log_prior: list[float]) -> np.ndarray:
    """Joint log-likelihoods of the toy model below, computed by hand (unigrams, alpha = 1)."""
    p_char = {0: {"a": 4 / 6, "b": 2 / 6}, 1: {"a": 1 / 3, "b": 2 / 3}}  # class 0: a=3, b=1; class 1: a=0, b=1
    return np.array([log_prior[c] + sum(math.log(p_char[c][ch]) for ch in text) for c in (0, 1)])


def test_prior_shift_gives_the_uniform_prior_naive_bayes():
    texts, labels = ["aab", "a", "b"], [0, 0, 1]
    model = CharNGramNaiveBayes(n_min=1, n_max=1, alpha=1.0).fit(texts, labels)
    np.testing.assert_allclose(model.class_log_prior, np.log([2 / 3, 1 / 3]))
    scores = model.joint_log_likelihood(["ab", "bb"])  # (2, 2)
    for row, text in zip(scores, ["ab", "bb"], strict=True):
        np.testing.assert_allclose(row, _hand_naive_bayes(text, np.log([2 / 3, 1 / 3]).tolist()))
    shifted = prior_shift(scores, class_prior(labels))
    for row, text in zip(shifted, ["ab", "bb"], strict=True):
        np.testing.assert_allclose(row, _hand_naive_bayes(text, [math.log(0.5)] * 2))
    np.testing.assert_allclose(prior_shift(scores, [2, 1], [2, 1]), scores)  # shares are normalised; no change


@pytest.mark.parametrize(
    ("args", "message"),
    [((np.zeros(3), [0.5, 0.5]), "log_scores must be"), ((np.zeros((2, 2)), [1.0]), "train_prior"),
     ((np.zeros((2, 2)), [0.0, 1.0]), "train_prior"), ((np.zeros((2, 2)), [0.5, 0.5], [0.5, -1]), "target_prior")],
)
def test_prior_shift_rejects_bad_priors(args, message):
    with pytest.raises(ValueError, match=message):
        prior_shift(*args)


def test_naive_bayes_class_weights_equal_repeating_the_texts():
    texts = ["好评很好", "很好很快", "太差了", "差评", "不好用", "质量好"]
    labels = [1, 1, 0, 0, 0, 1]
    weighted = CharNGramNaiveBayes(n_max=2, alpha=0.5).fit(texts, labels, class_weights=[1.0, 3.0])
    repeated_texts = texts + [t for t, y in zip(texts, labels, strict=True) if y == 1] * 2
    repeated_labels = labels + [1] * 6
    repeated = CharNGramNaiveBayes(n_max=2, alpha=0.5).fit(repeated_texts, repeated_labels)
    np.testing.assert_allclose(weighted.feature_log_prob, repeated.feature_log_prob)
    np.testing.assert_allclose(weighted.class_log_prior, repeated.class_log_prior)
    plain = CharNGramNaiveBayes(n_max=2, alpha=0.5).fit(texts, labels)
    ones = CharNGramNaiveBayes(n_max=2, alpha=0.5).fit(texts, labels, class_weights=[1, 1])
    np.testing.assert_array_equal(plain.feature_log_prob, ones.feature_log_prob)


@pytest.mark.parametrize("weights", [[1.0], [1.0, 0.0], [1.0, float("nan")]])
def test_naive_bayes_rejects_bad_class_weights(weights):
    with pytest.raises(ValueError, match="class_weights must hold 2"):
        CharNGramNaiveBayes().fit(["好", "差"], [1, 0], class_weights=weights)


def test_truncate_text_by_hand():
    text = "0123456789"
    assert truncate_text(text, 4) == "0123"
    assert truncate_text(text, 4, "tail") == "6789"
    assert truncate_text(text, 5, "head+tail") == "012" + "89"
    assert truncate_text(text, 1, "head+tail") == "0"
    assert truncate_text(text, 10, "tail") == text and truncate_text("短", 64, "head+tail") == "短"


@pytest.mark.parametrize(
    ("max_chars", "side", "message"),
    [(0, "head", "max_chars"), (-3, "tail", "max_chars"), (2.5, "head", "max_chars"), (True, "head", "max_chars"),
     (8, "middle", "side must be one of head, tail, head\\+tail, got 'middle'")],
)
def test_truncate_text_rejects_bad_input(max_chars, side, message):
    with pytest.raises(ValueError, match=message):
        truncate_text("评论", max_chars, side)


def _tiny_run(class_weights):
    texts = ["很好", "太差", "不错", "差评", "好用", "不好"] * 4
    labels = [1, 0, 1, 0, 1, 0] * 4
    tokenizer = train_char_tokenizer(texts, min_frequency=1)
    size = EncoderSize(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    config = FineTuneConfig(epochs=1, batch_size=8, max_length=8, eval_every=2)
    model = hf_bert_classifier(tokenizer, size, config.max_length, seed=0)
    encode = HFEncoder(tokenizer, config.max_length)
    data = TextClassificationDataset(texts, labels)
    loaders = make_loader(data, encode, 8, shuffle=True), make_loader(data, encode, 8)
    history = fine_tune(model, *loaders, config, class_weights=class_weights)
    return model, history


def test_fine_tune_with_equal_weights_matches_the_plain_loss():
    plain, plain_history = _tiny_run(None)
    equal, equal_history = _tiny_run(torch.tensor([2.0, 2.0]))
    for a, b in zip(plain_history, equal_history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
    for (name, a), b in zip(plain.state_dict().items(), equal.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_fine_tune_rejects_weights_of_the_wrong_length():
    with pytest.raises(ValueError, match="class_weights must have one weight per class"):
        _tiny_run(torch.ones(3))
