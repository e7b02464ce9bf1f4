"""BM25 against the formula written out in float64, a hand-checked ranking, and rank_bm25."""

import math

import numpy as np
import pytest
import rank_bm25

from mini_llm.tasks.retrieval import BM25, char_bigrams, char_tokens

CORPUS = [
    "人民日报发表评论文章",
    "北京今天天气晴朗",
    "日报记者从北京报道",
    "今天北京的天气很好，天气晴朗",
    "",
]


def reference_scores(docs: list[list[str]], query: list[str], k1: float, b: float, idf: str) -> list[float]:
    """Okapi BM25 written out term by term (plain Python floats), independent of mini_llm.tasks.retrieval."""
    N = len(docs)
    avgdl = sum(len(d) for d in docs) / N
    scores = []
    for d in docs:
        total = 0.0
        for t in query:  # a repeated query term counts once per occurrence
            n = sum(1 for other in docs if t in other)
            if n == 0:
                continue
            ratio = (N - n + 0.5) / (n + 0.5)
            w = math.log(1 + ratio) if idf == "lucene" else math.log(ratio)
            f = d.count(t)
            if f == 0:  # contributes nothing (and 0 / 0 for an empty document with b = 1, k1 = 0)
                continue
            total += w * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avgdl))
        scores.append(total)
    return scores


def test_tokenizers():
    assert char_tokens("人民 日报\n") == ["人", "民", "日", "报"]
    assert char_bigrams("人民日报") == ["人民", "民日", "日报"]
    assert char_bigrams("北 京天 ") == ["北", "京天"]
    assert char_bigrams("") == []


@pytest.mark.parametrize("tokenizer", ["char", "bigram"])
@pytest.mark.parametrize("idf", ["lucene", "robertson"])
@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.0), (0.0, 1.0), (2.0, 1.0)])
def test_scores_match_the_formula(tokenizer, idf, k1, b):
    split = char_tokens if tokenizer == "char" else char_bigrams
    bm25 = BM25(k1=k1, b=b, tokenizer=tokenizer, idf=idf).fit(CORPUS)
    for query in ["北京天气", "人民日报", "天气天气", "没有的词", "日报北京"]:
        expected = reference_scores([split(d) for d in CORPUS], split(query), k1, b, idf)
        np.testing.assert_allclose(bm25.score(query), expected, rtol=1e-12, atol=1e-12)


def test_hand_checked_ranking():
    bm25 = BM25().fit(CORPUS)
    # Query bigrams 天气, 气晴, 晴朗 (each in 2 of 5 documents, same idf); avgdl = (9 + 7 + 8 + 13 + 0) / 5 = 7.4.
    # Doc 1 (7 bigrams) has each once: 3 · 2.5 / (1 + 1.5 · (0.25 + 0.75 · 7 / 7.4)) = 3.075 idf;
    # doc 3 (13 bigrams) has 天气 twice: 5 / (2 + 2.351) + 2 · 2.5 / (1 + 2.351) = 2.641 idf. The short one wins.
    assert [i for i, _ in bm25.top_k("天气晴朗", 2)] == [1, 3]
    assert bm25.score("天气晴朗")[1] / bm25.idf["天气"] == pytest.approx(3.0748, abs=1e-4)
    assert bm25.score("天气晴朗")[3] / bm25.idf["天气"] == pytest.approx(2.6410, abs=1e-4)
    assert bm25.top_k("人民日报", 1)[0][0] == 0
    # "日报" is in docs 0 and 2; doc 0 also matches "人民" and "民日".
    assert [i for i, _ in bm25.top_k("人民日报", 2)] == [0, 2]
    # no query term anywhere: every score is 0 and top_k keeps corpus order
    assert bm25.top_k("没有", 3) == [(0, 0.0), (1, 0.0), (2, 0.0)]
    assert len(bm25.top_k("北京", 10)) == len(CORPUS)
    # the empty document never scores
    assert bm25.score("北京天气")[4] == 0.0


def test_a_hand_computed_score():
    # Two documents "ab" and "cc" with char tokens, query "a": N = 2, n(a) = 1, avgdl = 2, |d| = 2.
    bm25 = BM25(k1=1.5, b=0.75, tokenizer="char").fit(["ab", "cc"])
    idf = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))  # ln 2
    expected = idf * 1 * 2.5 / (1 + 1.5 * (1 - 0.75 + 0.75 * 2 / 2))  # ln 2 · 2.5 / 2.5 = ln 2
    assert bm25.score("a")[0] == pytest.approx(expected, rel=1e-15)
    assert bm25.score("a")[0] == pytest.approx(math.log(2), rel=1e-15)


def test_saturation_and_length_normalisation():
    bm25 = BM25(k1=1.2, b=0.75, tokenizer="char").fit(["a", "aa", "aaaa", "b", "a" + "b" * 9])
    s = bm25.score("a")
    assert s[1] > s[0] and s[2] > s[1]  # more occurrences help ...
    assert np.all(s < bm25.idf["a"] * (1.2 + 1))  # ... but saturate below (k1 + 1) · idf
    assert s[0] > s[4]  # one "a" in a long document counts less than in a short one


def test_callable_tokenizer():
    bm25 = BM25(tokenizer=str.split).fit(["the cat sat", "the dog", "a cat and a dog"])
    assert bm25.top_k("cat", 1)[0][0] == 0


def test_against_rank_bm25():
    docs = [char_bigrams(d) for d in CORPUS[:4]]
    theirs = rank_bm25.BM25Okapi(docs, k1=1.5, b=0.75)
    ours = BM25(k1=1.5, b=0.75, tokenizer="bigram", idf="robertson").fit(CORPUS[:4])
    query = "人民日报"  # every query bigram is in fewer than half the documents, so no idf is floored
    np.testing.assert_allclose(ours.score(query), theirs.get_scores(char_bigrams(query)), rtol=1e-12)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: BM25(k1=-1.0), "k1"),
        (lambda: BM25(k1=float("inf")), "k1"),
        (lambda: BM25(b=1.5), "b"),
        (lambda: BM25(idf="bm25+"), "idf"),
        (lambda: BM25(tokenizer="word"), "tokenizer"),
        (lambda: BM25().fit([]), "documents"),
        (lambda: BM25().fit("一篇文章"), "documents"),
        (lambda: BM25().fit(["文章", 3]), "documents"),
        (lambda: BM25().fit(["", " "]), "documents"),
        (lambda: BM25().score("北京"), "fit"),
        (lambda: BM25().fit(CORPUS).score(["北京"]), "query"),
        (lambda: BM25().fit(CORPUS).top_k("北京", 0), "k"),
        (lambda: BM25().fit(CORPUS).top_k("北京", 1.5), "k"),
    ],
)
def test_bad_arguments_raise_value_error(make, name):
    with pytest.raises(ValueError, match=name):
        make()
