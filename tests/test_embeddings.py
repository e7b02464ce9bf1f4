"""mini_llm.embeddings: SGNS and GloVe gradients against torch autograd, co-occurrence counts by hand, the noise
table and subsampling, reproducibility, the word2vec text format (read by gensim), the evaluation set, bad inputs."""

import importlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from mini_llm.embeddings import (
    AnalogyQuestion,
    GloVe,
    SimilarityPair,
    Word2Vec,
    WordVectors,
    count_cooccurrences,
    evaluate,
    neighbour_overlap,
    top_neighbours,
)
from mini_llm.embeddings.evaluation import evaluation_words, load_analogy_questions, spearman
from mini_llm.embeddings.glove_kernels import glove_adagrad_epoch, glove_gradients, glove_loss, glove_weight
from mini_llm.embeddings.sgns import draw_noise, sgns_pair_update
from mini_llm.embeddings.vocab import (
    alias_probabilities,
    alias_table,
    build_vocabulary,
    encode_corpus,
    keep_probabilities,
    noise_distribution,
    split_long_sentences,
)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def topic_corpus(n_sentences: int = 400, seed: int = 0) -> list[list[str]]:
    """Sentences drawn from one of two disjoint topics: words of a topic only ever occur together."""
    rng = np.random.default_rng(seed)
    topics = [[f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]]
    return [list(rng.choice(topics[s % 2], size=12)) for s in range(n_sentences)]


# ---------------------------------------------------------------------------------------------------------------
# Word2Vec: one SGNS step against autograd, the noise table, subsampling.


def test_sgns_update_matches_autograd() -> None:
    rng = np.random.default_rng(0)
    syn0 = rng.normal(0, 0.5, (10, 6)).astype(np.float32)  # (V, D)
    syn1neg = rng.normal(0, 0.5, (10, 6)).astype(np.float32)  # (V, D)
    context, center, negatives, alpha = 1, 2, np.array([3, 5, 7, 2]), 0.1  # the 2 equals center: skipped

    v = torch.tensor(syn0, dtype=torch.float64, requires_grad=True)
    u = torch.tensor(syn1neg, dtype=torch.float64, requires_grad=True)
    noise = torch.tensor([3, 5, 7])
    loss = (
        -torch.nn.functional.logsigmoid(u[center] @ v[context])
        - torch.nn.functional.logsigmoid(-(u[noise] @ v[context])).sum()
    )
    loss.backward()

    sgns_pair_update(syn0, syn1neg, context, center, negatives, alpha)
    np.testing.assert_allclose(syn0, (v - alpha * v.grad).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(syn1neg, (u - alpha * u.grad).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_noise_table_draws_unigram_to_the_three_quarters() -> None:
    counts = np.array([5000, 1200, 300, 77, 20, 5, 5, 1], dtype=np.int64)
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(noise_distribution(counts), expected, rtol=1e-12)
    thresholds, alias = alias_table(noise_distribution(counts))
    np.testing.assert_allclose(alias_probabilities(thresholds, alias), expected, atol=1e-9)

    draws = draw_noise(thresholds, alias, 400_000, 7)
    observed = np.bincount(draws, minlength=len(counts)) / len(draws)
    sigma = np.sqrt(expected * (1 - expected) / len(draws))
    assert np.all(np.abs(observed - expected) < 5 * sigma + 1e-6)


def test_subsampling_probability_formula() -> None:
    counts = np.array([1000, 100, 10, 1])
    sample, total = 1e-3, 1111
    t = sample * total
    expected = [min(1.0, (np.sqrt(c / t) + 1) * t / c) for c in counts]  # word2vec.c, gensim
    np.testing.assert_allclose(keep_probabilities(counts, sample), expected, rtol=1e-12)
    assert keep_probabilities(counts, sample)[0] == pytest.approx((np.sqrt(1000 / 1.111) + 1) * 1.111 / 1000)
    np.testing.assert_array_equal(keep_probabilities(counts, 0.0), 1.0)


def test_training_keeps_words_at_the_subsampling_rate() -> None:
    sentences = [["的"] * 30 + ["中国", "北京"] + [f"w{i}" for i in range(s % 20)] for s in range(300)]
    model = Word2Vec(vector_size=8, min_count=1, sample=1e-2, epochs=2, workers=1).fit(sentences)
    vocab = build_vocabulary(sentences, 1)
    expected = 2 * float((vocab.counts * keep_probabilities(vocab.counts, 1e-2)).sum())
    assert model.report.raw_words == 2 * vocab.total
    assert model.report.effective_words == pytest.approx(expected, rel=0.03)
    everything = Word2Vec(vector_size=8, min_count=1, sample=0, epochs=1, workers=1).fit(sentences)
    assert everything.report.effective_words == vocab.total


def test_long_sentences_are_trained_in_pieces() -> None:
    offsets = np.array([0, 0, 3, 25_003, 25_004])  # an empty sentence, then 3, 25000 and 1 words
    np.testing.assert_array_equal(split_long_sentences(offsets, 10_000), [0, 3, 10_003, 20_003, 25_003, 25_004])
    model = Word2Vec(vector_size=4, min_count=1, sample=0, epochs=1, workers=2).fit([["a", "b", "c"] * 7000])
    assert model.report.effective_words == 21_000


def test_word2vec_is_reproducible_with_one_worker_and_learns_topics() -> None:
    sentences = topic_corpus()
    settings = dict(vector_size=16, window=3, min_count=1, sample=0, epochs=3, workers=1)
    first = Word2Vec(**settings, seed=3).fit(sentences)
    again = Word2Vec(**settings, seed=3).fit(sentences)
    other = Word2Vec(**settings, seed=4).fit(sentences)
    np.testing.assert_array_equal(first.vectors, again.vectors)
    np.testing.assert_array_equal(first.output_vectors, again.output_vectors)
    assert not np.array_equal(first.vectors, other.vectors)
    assert first.vectors.shape == (16, 16)
    neighbours = [word for word, _ in first.most_similar("a0", topn=7)]
    assert all(word.startswith("a") for word in neighbours)
    assert first.similarity("a0", "a1") > first.similarity("a0", "b1")
    parallel = Word2Vec(**{**settings, "workers": 2}, seed=3).fit(sentences)  # hogwild: close, not equal
    assert all(word.startswith("a") for word, _ in parallel.most_similar("a0", topn=7))


# ---------------------------------------------------------------------------------------------------------------
# GloVe: counts by hand, loss and gradient against autograd, one AdaGrad step.


def test_cooccurrence_counts_by_hand() -> None:
    sentences = [["a", "b", "c", "a", "b"], ["b", "c"], ["a", "x"]]  # x is dropped by min_count=2
    vocab = build_vocabulary(sentences, 2)
    assert vocab.words == ("a", "b", "c")  # counts 3, 3, 2; ties keep the order of first appearance
    corpus, offsets = encode_corpus(sentences, vocab)
    a, b, c = vocab.index["a"], vocab.index["b"], vocab.index["c"]

    # window 2: a0-b1 1, a0-c2 1/2, b1-c2 1, b1-a3 1/2, c2-a3 1, c2-b4 1/2, a3-b4 1; b-c 1 (2nd sentence)
    expected = np.zeros((3, 3))
    expected[a, b] = expected[b, a] = 1 + 1 / 2 + 1
    expected[a, c] = expected[c, a] = 1 / 2 + 1
    expected[b, c] = expected[c, b] = 1 + 1 / 2 + 1
    counts = count_cooccurrences(corpus, offsets, 2, len(vocab), workers=2)
    np.testing.assert_allclose(counts.to_dense(), expected, rtol=1e-7)
    assert len(counts) == 6
    assert np.all(np.diff(counts.rows) >= 0)

    # window 3 adds a0-a3 (1/3, counted from both ends) and b1-b4 (1/3, both ends)
    expected[a, a] += 2 / 3
    expected[b, b] += 2 / 3
    expected[a, b] += 0  # a0-b4 lies 4 apart
    np.testing.assert_allclose(count_cooccurrences(corpus, offsets, 3, 3).to_dense(), expected, rtol=1e-7)


def test_cooccurrence_counts_match_a_plain_loop() -> None:
    rng = np.random.default_rng(1)
    sentences = [[f"w{k}" for k in rng.integers(0, 12, size=rng.integers(0, 15))] for _ in range(60)]
    vocab = build_vocabulary(sentences, 1)
    corpus, offsets = encode_corpus(sentences, vocab)
    expected = np.zeros((len(vocab), len(vocab)))
    for sentence in sentences:
        ids = [vocab.index[w] for w in sentence]
        for p, i in enumerate(ids):
            for q in range(max(0, p - 4), min(len(ids), p + 5)):
                if q != p:
                    expected[i, ids[q]] += 1 / abs(q - p)
    counts = count_cooccurrences(corpus, offsets, 4, len(vocab), workers=2)
    np.testing.assert_allclose(counts.to_dense(), expected, rtol=1e-6)


def tiny_glove_problem() -> tuple:
    rng = np.random.default_rng(2)
    w, w_ctx = rng.normal(0, 0.3, (4, 3)), rng.normal(0, 0.3, (4, 3))  # (V, D)
    b, b_ctx = rng.normal(0, 0.3, 4), rng.normal(0, 0.3, 4)  # (V,)
    rows, cols = np.array([0, 0, 1, 2, 3, 3]), np.array([1, 3, 1, 0, 2, 3])
    x = np.array([3.0, 250.0, 0.5, 12.0, 100.0, 1.0])  # one above x_max, one at it
    return w, w_ctx, b, b_ctx, rows, cols, x


def test_glove_weighting() -> None:
    np.testing.assert_allclose(glove_weight([1.0, 50.0, 100.0, 400.0], 100.0, 0.75), [0.01**0.75, 0.5**0.75, 1, 1])


def test_glove_loss_and_gradient_match_autograd() -> None:
    w, w_ctx, b, b_ctx, rows, cols, x = tiny_glove_problem()
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in (w, w_ctx, b, b_ctx)]
    tw, tw_ctx, tb, tb_ctx = params
    tx = torch.tensor(x)
    f = torch.clamp((tx / 100.0) ** 0.75, max=1.0)
    error = (tw[rows] * tw_ctx[cols]).sum(1) + tb[rows] + tb_ctx[cols] - torch.log(tx)
    loss = (f * error**2).sum()
    loss.backward()

    assert glove_loss(w, w_ctx, b, b_ctx, rows, cols, x, 100.0, 0.75) == pytest.approx(loss.item(), rel=1e-12)
    for ours, param in zip(glove_gradients(w, w_ctx, b, b_ctx, rows, cols, x, 100.0, 0.75), params, strict=True):
        np.testing.assert_allclose(ours, param.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_glove_adagrad_step_matches_the_formula() -> None:
    w, w_ctx, b, b_ctx, rows, cols, x = tiny_glove_problem()
    entry = slice(0, 1)  # one entry: one AdaGrad step from accumulators that start at 1
    grads = glove_gradients(w, w_ctx, b, b_ctx, rows[entry], cols[entry], x[entry], 100.0, 0.75)
    eta = 0.05
    expected = [p - eta * g / np.sqrt(1.0 + g**2) for p, g in zip((w, w_ctx, b, b_ctx), grads, strict=True)]

    params = [p.astype(np.float32) for p in (w, w_ctx, b, b_ctx)]
    g2 = [np.ones_like(p) for p in params]
    f_x = glove_weight(x[entry], 100.0, 0.75).astype(np.float32)
    log_x = np.log(x[entry]).astype(np.float32)
    loss = glove_adagrad_epoch(*params, *g2, rows[entry].astype(np.int32), cols[entry].astype(np.int32),
                               log_x, f_x, eta, 1)  # fmt: skip
    assert loss == pytest.approx(glove_loss(w, w_ctx, b, b_ctx, rows[entry], cols[entry], x[entry], 100.0, 0.75),
                                 rel=1e-5)  # fmt: skip
    for ours, reference in zip(params, expected, strict=True):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g2[0], 1.0 + grads[0] ** 2, rtol=1e-5)


def test_glove_is_reproducible_with_one_worker_and_learns_topics() -> None:
    sentences = topic_corpus()
    settings = dict(vector_size=16, window=3, min_count=1, epochs=15, workers=1)
    first = GloVe(**settings, seed=3).fit(sentences)
    again = GloVe(**settings, seed=3).fit(sentences)
    np.testing.assert_array_equal(first.vectors, again.vectors)
    np.testing.assert_allclose(first.vectors, first.word_vectors + first.context_vectors)
    assert first.report.losses[-1] < first.report.losses[0]
    assert first.report.nonzero == len(first.cooccurrence)
    assert first.similarity("a0", "a1") > first.similarity("a0", "b1")


# ---------------------------------------------------------------------------------------------------------------
# Queries and the word2vec text format.


def toy_vectors() -> WordVectors:
    """Four words where 国王 - 男人 + 女人 = 王后 exactly, and a fifth far away."""
    vectors = WordVectors()
    vectors._set_vectors(
        ["男人", "女人", "国王", "王后", "苹果"],
        np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [-1, 0, 0.2]], dtype=np.float32),
    )
    return vectors


def test_queries() -> None:
    vectors = toy_vectors()
    assert vectors.analogy("男人", "国王", "女人")[0][0] == "王后"
    assert [w for w, _ in vectors.analogy("男人", "国王", "女人", topn=5)] == ["王后", "苹果"]  # inputs left out
    top = vectors.most_similar("国王", topn=4)
    assert len(top) == 4 and "国王" not in dict(top)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert vectors.similarity("男人", "男人") == pytest.approx(1.0)
    assert vectors.similarity("男人", "女人") == pytest.approx(1 / np.sqrt(2))


def test_save_load_round_trip_and_gensim_reads_it(tmp_path: Path) -> None:
    model = Word2Vec(vector_size=12, min_count=1, epochs=1, workers=1).fit(topic_corpus(50) + [["中国", "北京"]])
    path = model.save(tmp_path / "vectors.txt")
    loaded = Word2Vec.load(path)
    assert isinstance(loaded, Word2Vec)
    assert loaded.index_to_key == model.index_to_key
    np.testing.assert_array_equal(loaded.vectors, model.vectors)
    assert loaded.most_similar("a0", 3) == model.most_similar("a0", 3)

    from gensim.models import KeyedVectors

    keyed = KeyedVectors.load_word2vec_format(str(path), binary=False)
    assert keyed.index_to_key == model.index_to_key
    np.testing.assert_array_equal(keyed["北京"], model["北京"])
    assert [w for w, _ in keyed.most_similar("a0", topn=3)] == [w for w, _ in model.most_similar("a0", 3)]
    assert GloVe.load(path).similarity("a0", "a1") == pytest.approx(model.similarity("a0", "a1"), rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The evaluation set and its scores.


def test_evaluation_words_occur_five_times_in_peoples_daily() -> None:
    from mini_llm.data import load_people_daily

    counts = Counter(word for sentence in load_people_daily(form="words") for word in sentence)
    rare = {word: counts[word] for word in evaluation_words() if counts[word] < 5}
    assert not rare
    questions = load_analogy_questions()
    assert len(questions) > 1000
    assert {q.category for q in questions} == {
        "country-capital", "province-capital", "next-month", "male-female", "antonym",
    }  # fmt: skip
    assert all(q.expected not in (q.a, q.b, q.c) for q in questions)


def test_evaluate_scores_a_known_model_and_gensim() -> None:
    vectors = toy_vectors()
    questions = [
        AnalogyQuestion("royal", "男人", "国王", "女人", "王后"),
        AnalogyQuestion("x", "男人", "女人", "国王", "苹果"),
    ]
    pairs = [SimilarityPair("男人", "女人", 8), SimilarityPair("男人", "苹果", 1), SimilarityPair("国王", "王后", 9)]
    result = evaluate(vectors, questions, pairs + [SimilarityPair("男人", "未知", 5)])
    assert result.analogy_accuracy == 0.5 and result.analogy_answered == 2
    assert result.category_accuracy == {"royal": 1.0, "x": 0.0}
    assert result.similarity_pairs == 3 and result.similarity_skipped == 1
    assert result.similarity_spearman == pytest.approx(1.0)
    assert neighbour_overlap(vectors, vectors, topn=2) == 1.0

    from gensim.models import KeyedVectors

    keyed = KeyedVectors(vector_size=3)
    keyed.add_vectors(vectors.index_to_key, vectors.vectors)
    assert evaluate(keyed, questions, pairs).analogy_accuracy == 0.5
    assert top_neighbours(keyed, ["国王"], topn=2) == top_neighbours(vectors, ["国王"], topn=2)
    assert neighbour_overlap(vectors, keyed, topn=2) == 1.0


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # scipy.stats.spearmanr


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs.


@pytest.mark.parametrize("cls", [Word2Vec, GloVe])
def test_bad_corpora(cls: type) -> None:
    with pytest.raises(ValueError, match="sentences"):
        cls().fit([])
    with pytest.raises(ValueError, match="sentences"):
        cls().fit([[], []])
    with pytest.raises(ValueError, match="min_count=50"):
        cls(min_count=50).fit([["我", "爱", "北京"]] * 3)
    with pytest.raises(TypeError, match="sentences"):
        cls().fit("我 爱 北京")
    with pytest.raises(TypeError, match="sentence 0"):
        cls().fit(["我 爱 北京"])


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (Word2Vec, {"vector_size": 0}, "vector_size"),
        (Word2Vec, {"vector_size": -3}, "vector_size"),
        (Word2Vec, {"vector_size": 2.5}, "vector_size"),
        (Word2Vec, {"window": 0}, "window"),
        (Word2Vec, {"negative": 0}, "negative"),
        (Word2Vec, {"min_count": 0}, "min_count"),
        (Word2Vec, {"sample": -0.1}, "sample"),
        (Word2Vec, {"alpha": 0}, "alpha"),
        (Word2Vec, {"min_alpha": 0.5}, "min_alpha"),
        (Word2Vec, {"epochs": 0}, "epochs"),
        (Word2Vec, {"workers": 0}, "workers"),
        (Word2Vec, {"seed": -1}, "seed"),
        (GloVe, {"vector_size": 0}, "vector_size"),
        (GloVe, {"x_max": 0}, "x_max"),
        (GloVe, {"alpha": -1}, "alpha"),
        (GloVe, {"learning_rate": 0}, "learning_rate"),
        (GloVe, {"window": -1}, "window"),
    ],
)
def test_bad_arguments(cls: type, kwargs: dict, name: str) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        cls(**kwargs)


def test_bad_queries(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fit"):
        Word2Vec().most_similar("北京")
    vectors = toy_vectors()
    with pytest.raises(ValueError, match="'上海'"):
        vectors.most_similar("上海")
    with pytest.raises(ValueError, match="c='上海'"):
        vectors.analogy("男人", "国王", "上海")
    with pytest.raises(ValueError, match="word2='上海'"):
        vectors.similarity("男人", "上海")
    with pytest.raises(ValueError, match="topn"):
        vectors.most_similar("男人", topn=0)
    with pytest.raises(ValueError, match="outside"):
        top_neighbours(vectors, ["上海"])
    with pytest.raises(TypeError, match="model"):
        evaluate(object())
    bad = tmp_path / "bad.txt"
    bad.write_text("2 3\n北京 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        Word2Vec.load(bad)
    bad.write_text("北京 1 2 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="word2vec text format"):
        Word2Vec.load(bad)
    spaced = WordVectors()
    spaced._set_vectors(["new york"], np.ones((1, 2)))
    with pytest.raises(ValueError, match="whitespace"):
        spaced.save(tmp_path / "spaced.txt")


# ---------------------------------------------------------------------------------------------------------------
# The benchmark script at a tiny size (speed is never asserted).


def test_benchmark_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("bench_word2vec")
    rows = bench.main(["--max-sentences", "150", "--epochs", "1", "--glove-epochs", "1", "--vector-size", "16"])
    out = capsys.readouterr().out
    assert [row["model"] for row in rows] == [bench.MINI_LLM, bench.GENSIM, bench.MINI_LLM_RESEEDED, bench.GLOVE]
    for row in rows[:3]:
        assert tuple(row) == bench.COLUMNS
        assert row["effective words/s"] > 0
    assert rows[1]["ratio vs gensim"] == 1.0
    assert tuple(rows[3]) == bench.GLOVE_COLUMNS
    assert "machine: " in out and "| mini_llm GloVe |" in out
