"""Text metrics against hand-computed values (and sacrebleu / nltk for BLEU)."""

import functools
import math
import random

import pytest
import sacrebleu
from nltk.translate import bleu_score

from mini_llm.evaluation import text


def test_ngrams():
    assert text.ngrams("abc", 2) == [("a", "b"), ("b", "c")]
    assert text.ngrams("ab", 3) == []
    assert text.ngrams([1, 2, 3], 1) == [(1,), (2,), (3,)]


def test_distinct_n_and_repetition_rate():
    assert text.distinct_n(["ababa"], 2) == 0.5  # ab ba ab ba: 2 distinct of 4
    assert text.distinct_n(["aab", "b"], 1) == 0.5  # a a b b: counted over the texts together
    assert text.distinct_n(["天气很好", "今天"], 2) == 1.0
    assert text.distinct_n(["a", ""], 2) == 0.0  # no bigram at all
    assert text.repetition_rate("ababa", 2) == 0.5
    assert text.repetition_rate("我爱我爱我爱", 2) == pytest.approx(1 - 2 / 5)  # 我爱 爱我 我爱 爱我 我爱
    assert text.repetition_rate("今天天气", 1) == 0.25  # the second 天
    assert text.repetition_rate("a", 2) == 0.0
    assert text.repetition_rate([3, 3, 3], 1) == pytest.approx(2 / 3)


@functools.cache
def _levenshtein(a: str, b: str) -> int:
    """The recursive definition, memoised: an independent reference for the dynamic programme."""
    if not a or not b:
        return len(a) + len(b)
    return min(_levenshtein(a[1:], b) + 1, _levenshtein(a, b[1:]) + 1, _levenshtein(a[1:], b[1:]) + (a[0] != b[0]))


def test_edit_distance():
    assert text.edit_distance("kitten", "sitting") == 3
    assert text.edit_distance("", "abc") == 3 and text.edit_distance("abc", "") == 3
    assert text.edit_distance("人民日报", "人民报纸") == 2  # delete 日, insert 纸
    assert text.edit_distance(["yin2", "hang2"], ["yin2", "xing2"]) == 1
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        assert text.edit_distance(a, b) == _levenshtein(a, b) == text.edit_distance(b, a)


def test_character_error_rate_and_accuracy():
    hyps, refs = ["人民日报", "北京"], ["人民日报社", "南京"]
    assert text.character_error_rate(hyps, refs) == pytest.approx(2 / 7)  # one insertion, one substitution
    assert text.character_accuracy(hyps, refs) == pytest.approx(5 / 7)
    assert text.character_accuracy(refs, refs) == 1.0
    assert text.character_error_rate(["abcd"], ["a"]) == 3.0  # above 1 when the hypothesis is far too long


def _bleu(precisions: list[float], c: int, r: int) -> float:
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * math.exp(sum(math.log(p) for p in precisions) / len(precisions))


def test_bleu_hand_computed():
    # hyp 今天天气很好 (6 chars), ref 今天的天气很好 (7 chars):
    # 1-grams 6/6; 2-grams 今天 天气 气很 很好 of 今天 天天 天气 气很 很好 = 4/5;
    # 3-grams 天气很 气很好 = 2/4; 4-grams 天气很好 = 1/3; c = 6 < r = 7.
    score = text.corpus_bleu(["今天天气很好"], ["今天的天气很好"])
    assert score.precisions == pytest.approx([1, 4 / 5, 2 / 4, 1 / 3])
    assert (score.hypothesis_length, score.reference_length) == (6, 7)
    assert score.brevity_penalty == pytest.approx(math.exp(-1 / 6))
    assert score.bleu == pytest.approx(_bleu([1, 4 / 5, 2 / 4, 1 / 3], 6, 7), rel=1e-12)
    # Corpus BLEU sums the counts before dividing: 北京/北京 adds 2/2 unigrams, 1/1 bigram, no 3- or 4-grams,
    # so the corpus score is not zero although that sentence alone has no 3-gram.
    corpus = text.corpus_bleu(["今天天气很好", "北京"], ["今天的天气很好", "北京"])
    assert corpus.precisions == pytest.approx([8 / 8, 5 / 6, 2 / 4, 1 / 3])
    assert corpus.bleu == pytest.approx(_bleu([1, 5 / 6, 2 / 4, 1 / 3], 8, 9), rel=1e-12)
    assert text.corpus_bleu(["北京"], ["北京"]).bleu == 0.0  # no 3-gram match: zero without smoothing
    assert text.corpus_bleu(["北京"], ["北京"], max_n=2).bleu == 1.0
    assert text.corpus_bleu(["今天 天气"], ["今天天气"]).bleu == 1.0  # whitespace is not a character token


def test_bleu_clipping_multiple_references_and_whitespace_tokens():
    score = text.corpus_bleu(["的的的的"], [["的天", "的的天"]], max_n=1)
    assert score.precisions == [2 / 4]  # clipped at the largest count in any one reference
    assert score.reference_length == 3  # the closest reference length
    assert text.corpus_bleu(["abc"], [["ab", "abcd"]], max_n=1).reference_length == 2  # a tie takes the shorter
    assert text.corpus_bleu(["abcdef"], ["abc"], max_n=1).brevity_penalty == 1.0  # longer than the reference: none
    score = text.corpus_bleu(["yin2 hang2 hen3 duo1"], ["yin2 xing2 hen3 duo1"], max_n=2, tokenize="whitespace")
    assert score.precisions == pytest.approx([3 / 4, 1 / 3])  # syllables, not characters
    assert score.bleu == pytest.approx(math.sqrt(3 / 4 * 1 / 3))
    assert text.corpus_bleu([""], ["北京"]).bleu == 0.0


def test_bleu_against_sacrebleu():
    hyps = ["今天天气很好", "北京欢迎你们", "人民日报发表评论"]
    refs = ["今天的天气很好", "北京欢迎你", "人民日报发表了评论"]
    theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="char", smooth_method="none")
    assert text.corpus_bleu(hyps, refs).bleu * 100 == pytest.approx(theirs.score, rel=1e-9)


def test_bleu_against_nltk():
    hyps = ["今天天气很好", "北京欢迎你们", "人民日报发表评论"]
    refs = [["今天的天气很好", "今天天气不错"], ["北京欢迎你"], ["人民日报发表了评论"]]
    theirs = bleu_score.corpus_bleu([[list(r) for r in rs] for rs in refs], [list(h) for h in hyps])
    assert text.corpus_bleu(hyps, refs).bleu == pytest.approx(theirs, rel=1e-9)


def test_qa_metrics():
    assert text.normalize_answer(" 北京，Beijing。 ") == "北京beijing"
    assert text.exact_match("北京。", ["首都", "北京"]) == 1.0
    assert text.exact_match("北京市", "北京") == 0.0
    assert text.char_f1("北京市", "北京") == pytest.approx(0.8)  # P = 2/3, R = 1
    assert text.char_f1("天安门广场", ["天安门", "广场"]) == pytest.approx(0.75)  # the best answer: P = 3/5, R = 1
    assert text.char_f1("好好", "好") == pytest.approx(2 / 3)  # characters are a multiset: one 好 matches
    assert text.char_f1("上海", "北京") == 0.0
    assert text.char_f1("。", "") == 1.0 and text.char_f1("北京", "。") == 0.0  # empty after normalisation
    scores = text.qa_scores(["北京", "上海市", "广州"], ["北京", "上海", ["深圳", "广州。"]])
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((1 + 0.8 + 1) / 3)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: text.distinct_n("一段文字", 2), "texts"),
        (lambda: text.distinct_n(["一段文字"], 0), "n"),
        (lambda: text.repetition_rate("一段文字", 1.5), "n"),
        (lambda: text.character_error_rate(["a"], ["a", "b"]), "same length"),
        (lambda: text.character_error_rate([""], [""]), "references"),
        (lambda: text.corpus_bleu("北京", ["北京"]), "hypotheses"),
        (lambda: text.corpus_bleu(["北京"], ["北京"], max_n=0), "max_n"),
        (lambda: text.corpus_bleu(["北京"], ["北京"], tokenize="jieba"), "tokenize"),
        (lambda: text.corpus_bleu(["北京"], [[]]), "references"),
        (lambda: text.corpus_bleu([["北", "京"]], ["北京"]), "strings"),
        (lambda: text.exact_match("北京", []), "answers"),
        (lambda: text.char_f1("北京", [3]), "answers"),
        (lambda: text.qa_scores([], []), "predictions"),
    ],
)
def test_bad_arguments_raise_value_error(call, name):
    with pytest.raises(ValueError, match=name):
        call()
