"""The naive Bayes baseline: a hand-computed example, scikit-learn as the reference, the Wilson interval, bad input."""

import math

import numpy as np
import pytest
from sklearn import naive_bayes as sklearn_nb
from sklearn.feature_extraction import text as sklearn_text

from mini_llm.data import load_reviews
from mini_llm.evaluation import accuracy_interval
from mini_llm.tasks.classify import CharNGramNaiveBayes
from mini_llm.tasks.classify.naive_bayes import char_ngrams


def test_char_ngrams_collapse_white_space():
    assert char_ngrams("ab  c", 1, 2) == ["a", "b", " ", "c", "ab", "b ", " c"]


def test_a_unigram_model_by_hand():
    model = CharNGramNaiveBayes(n_min=1, n_max=1, alpha=1.0).fit(["aab", "b", "bc"], [1, 0, 0])
    # class 1 counts a:2 b:1 c:0 -> (3, 2, 1) / 6; class 0 counts a:0 b:2 c:1 -> (1, 3, 2) / 6; priors 1/3, 2/3
    expected = np.array([
        math.log(2 / 3) + math.log(1 / 6) + math.log(3 / 6),  # "ab" under class 0
        math.log(1 / 3) + math.log(3 / 6) + math.log(2 / 6),  # "ab" under class 1
    ])
    np.testing.assert_allclose(model.joint_log_likelihood(["ab"])[0], expected, rtol=1e-12)
    assert model.predict(["aa", "c", "zzz"]).tolist() == [1, 0, 0]  # unseen "z" is skipped: the prior decides


def test_equals_scikit_learn_on_reviews():
    reviews = load_reviews()
    train_texts, train_labels = reviews.train.texts[:2000], reviews.train.labels[:2000]
    test_texts = reviews.test.texts[:300]
    ours = CharNGramNaiveBayes(n_min=1, n_max=2, alpha=0.5).fit(train_texts, train_labels)
    vectorizer = sklearn_text.CountVectorizer(analyzer="char", ngram_range=(1, 2), lowercase=False)
    theirs = sklearn_nb.MultinomialNB(alpha=0.5).fit(vectorizer.fit_transform(train_texts), train_labels)
    test_counts = vectorizer.transform(test_texts)
    np.testing.assert_allclose(ours.predict_log_proba(test_texts), theirs.predict_log_proba(test_counts), atol=1e-9)
    assert ours.predict(test_texts).tolist() == theirs.predict(test_counts).tolist()


def test_wilson_interval_closed_form():
    accuracy, low, high = accuracy_interval([True] * 8 + [False] * 2)
    z = 1.96
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    assert accuracy == 0.8
    assert (low, high) == pytest.approx((centre - half, centre + half), rel=1e-12)
    _, low_one, high_one = accuracy_interval([True])  # one success: the interval stays inside [0, 1]
    assert 0 < low_one < 1 and high_one == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_min=0), "n_min must be an integer >= 1"),
        (dict(n_min=2, n_max=1), "n_max must be an integer >= n_min = 2"),
        (dict(alpha=0.0), "alpha must be a finite number > 0"),
        (dict(alpha=float("nan")), "alpha must be a finite number > 0"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharNGramNaiveBayes(**kwargs)


def test_bad_data():
    model = CharNGramNaiveBayes()
    with pytest.raises(ValueError, match="texts must not be empty"):
        model.fit([], [])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        model.fit(["a", "b"], [1])
    with pytest.raises(ValueError, match="at least two classes"):
        model.fit(["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="not fitted"):
        model.predict(["a"])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        accuracy_interval([])
