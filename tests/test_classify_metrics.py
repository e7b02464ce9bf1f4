"""Classification metrics against scikit-learn, the bootstrap interval, and bad input."""

import numpy as np
import pytest
from sklearn import metrics

from mini_llm.evaluation import bootstrap_macro_f1_interval, classification_metrics, confusion_matrix, macro_f1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_equal_to_scikit_learn(seed, n_classes):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, n_classes, 200))
    labels = list(range(n_classes))
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, n_classes), metrics.confusion_matrix(y_true, y_pred, labels=labels)
    )
    assert macro_f1(y_true, y_pred, n_classes) == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="macro", labels=labels), abs=1e-12
    )
    result = classification_metrics(y_true, y_pred, n_classes)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    np.testing.assert_allclose(result.precision, precision, atol=1e-12)
    np.testing.assert_allclose(result.recall, recall, atol=1e-12)
    np.testing.assert_allclose(result.f1, f1, atol=1e-12)
    assert list(result.support) == support.tolist()
    assert result.accuracy[0] == pytest.approx(metrics.accuracy_score(y_true, y_pred), abs=1e-12)


def test_undefined_scores_are_zero_as_in_scikit_learn():
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 0, 0]  # class 1 never predicted: its precision is 0/0
    result = classification_metrics(y_true, y_pred)
    expected = metrics.precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], zero_division=0)
    np.testing.assert_allclose([result.precision, result.recall, result.f1], expected[:3], atol=1e-12)


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        y_true = rng.integers(0, 2, n)
        y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
        value, low, high = bootstrap_macro_f1_interval(y_true, y_pred, resamples=1000)
        assert low < value < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # the width shrinks roughly as 1 / sqrt(n): 4x fewer at 16x n
    # the bootstrap standard error agrees with the binomial one of a score near 0.8 (within 30%)
    assert widths[1] / (2 * 1.96) == pytest.approx(np.sqrt(0.8 * 0.2 / 1600), rel=0.3)


def test_bootstrap_is_reproducible_and_perfect_predictions_give_a_point():
    y = np.array([0, 1] * 20)
    assert bootstrap_macro_f1_interval(y, y) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(1)
    y_pred = np.where(rng.random(40) < 0.7, y, 1 - y)
    assert bootstrap_macro_f1_interval(y, y_pred) == bootstrap_macro_f1_interval(y, y_pred)


def test_to_dict_is_json_ready():
    import json

    result = classification_metrics([0, 1, 1, 0, 1], [0, 1, 0, 0, 1]).to_dict()
    assert json.loads(json.dumps(result)) == result
    assert result["confusion_matrix"] == [[2, 0], [1, 2]]
    assert result["per_class"][1]["support"] == 3


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([], [], "y_true must be a non-empty 1-D"),
        ([0, 1], [0], "y_pred must have the shape of y_true"),
        ([0.5, 1], [0, 1], "y_true must hold integer class ids"),
        ([0, 1], [-1, 1], "y_pred must hold integer class ids >= 0"),
    ],
)
def test_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred)


def test_bad_settings():
    with pytest.raises(ValueError, match="n_classes must exceed every class id"):
        confusion_matrix([0, 2], [0, 1], n_classes=2)
    with pytest.raises(ValueError, match="resamples must be >= 1"):
        bootstrap_macro_f1_interval([0, 1], [0, 1], resamples=0)
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_macro_f1_interval([0, 1], [0, 1], level=1.0)
