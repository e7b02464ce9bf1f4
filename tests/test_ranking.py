"""ROC recalls and AUC of mini_llm.evaluation.ranking against scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from mini_llm.evaluation import recall_curve, roc_auc


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_and_curve_match_scikit_learn(seed, ties):
    rng = np.random.default_rng(seed)
    positive = rng.random(300) < 0.3  # (N,)
    scores = rng.standard_normal(300) + positive  # (N,) positives score higher on average
    if ties:
        scores = np.round(scores, 1)  # many equal scores across the classes
    assert roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    false_positive_rate, true_positive_rate, _ = roc_curve(positive, scores, drop_intermediate=False)
    positive_recall, negative_recall = recall_curve(scores, positive)
    # scikit-learn walks thresholds from high to low with "score >= t"; ours from low to high with "score > t"
    ours = sorted(zip(1 - negative_recall, positive_recall, strict=True))
    theirs = sorted(zip(false_positive_rate, true_positive_rate, strict=True))
    np.testing.assert_allclose(np.array(ours), np.array(theirs), atol=1e-12)


def test_auc_closed_forms():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0  # perfectly separated
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0  # perfectly reversed
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5  # a tie counts one half
    assert roc_auc([-np.inf, np.inf], [False, True]) == 1.0


@pytest.mark.parametrize(
    ("scores", "positive", "message"),
    [
        ([], [], "non-empty 1-D"),
        ([[0.1, 0.2]], [[True, False]], "non-empty 1-D"),
        ([0.1, 0.2], [1, 0], "bool array"),
        ([0.1, 0.2, 0.3], [True, False], "bool array"),
        ([0.1, np.nan], [True, False], "NaN"),
        ([0.1, 0.2], [True, True], "one positive and one negative"),
    ],
)
def test_bad_input_names_the_argument(scores, positive, message):
    for metric in (roc_auc, recall_curve):
        with pytest.raises(ValueError, match=message):
            metric(scores, positive)
