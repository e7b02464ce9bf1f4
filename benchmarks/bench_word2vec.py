"""Word-embedding training speed and quality: mini_llm Word2Vec against gensim Word2Vec, and mini_llm GloVe.

Both word2vec implementations train skip-gram with negative sampling on the word-segmented People's Daily corpus
(Jan 1998) with the same settings (vector_size 100, window 5, negative 5, min_count 5, sample 1e-3, 5 epochs,
2 threads, alpha 0.025 -> 0.0001). Speed is gensim's "effective words/s": the words kept by subsampling over all
epochs, divided by the seconds of training (building the vocabulary is timed apart). Quality is measured on the
book's evaluation set (analogy accuracy, similarity Spearman) and by the mean overlap of the top-10 neighbours of
the 1000 most frequent words with gensim's model; the overlap between two mini_llm runs that differ only in the
seed shows how much of the difference is chance. GloVe reports the time to count co-occurrences and to train.
The Numba kernels are compiled (or loaded from the cache) by a small warm-up fit before anything is timed.

Run: .venv/bin/python benchmarks/bench_word2vec.py [--workers 2] [--epochs 5] [--no-glove] ...
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from common import markdown_table, positive_int, print_machine

from mini_llm.data import load_people_daily
from mini_llm.embeddings import GloVe, Word2Vec, evaluate, neighbour_overlap

COLUMNS = (
    "model",
    "vocab s",
    "train s",
    "effective words",
    "effective words/s",
    "ratio vs gensim",
    "analogy acc %",
    "similarity Spearman",
    "top-10 overlap vs gensim",
)
GLOVE_COLUMNS = (
    "model",
    "count s",
    "nonzero X_ij",
    "train s",
    "s/epoch",
    "final J/nonzero",
    "analogy acc %",
    "similarity Spearman",
    "top-10 overlap vs gensim",
)
MINI_LLM = "mini_llm Word2Vec"
MINI_LLM_RESEEDED = "mini_llm Word2Vec, seed + 1"
GENSIM = "gensim Word2Vec"
GLOVE = "mini_llm GloVe"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: word2vec settings (shared by both implementations), corpus size, GloVe, peers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vector-size", type=positive_int, default=100, help="dimension of the word vectors")
    parser.add_argument("--window", type=positive_int, default=5, help="largest center-context distance")
    parser.add_argument("--negative", type=positive_int, default=5, help="noise words per pair")
    parser.add_argument("--min-count", type=positive_int, default=5, help="rarer words are dropped")
    parser.add_argument("--sample", type=float, default=1e-3, help="subsampling threshold (0 = off)")
    parser.add_argument("--epochs", type=positive_int, default=5, help="passes over the corpus")
    parser.add_argument("--workers", type=positive_int, default=2, help="training threads of both implementations")
    parser.add_argument("--seed", type=int, default=1, help="seed of both implementations")
    parser.add_argument("--max-sentences", type=positive_int, default=None, help="use the first N paragraphs only")
    parser.add_argument("--glove-window", type=positive_int, default=10, help="GloVe context words on each side")
    parser.add_argument("--glove-epochs", type=positive_int, default=25, help="GloVe AdaGrad passes")
    parser.add_argument("--no-glove", action="store_true", help="leave out GloVe")
    parser.add_argument("--no-reseed", action="store_true", help="leave out the second mini_llm run (seed + 1)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.sample <= 1.0:
        parser.error(f"--sample must lie in [0, 1], got {args.sample}")
    return args


def quality(model: Any, reference: Any | None) -> dict[str, Any]:
    """Analogy accuracy (%), similarity Spearman and (when a reference is given) the top-10 overlap with it."""
    scores = evaluate(model)
    overlap = "-" if reference is None else neighbour_overlap(model, reference)
    return {
        "analogy acc %": 100 * scores.analogy_accuracy,
        "similarity Spearman": scores.similarity_spearman,
        "top-10 overlap vs gensim": overlap,
    }


def fit_mini_llm(sentences: list[list[str]], args: argparse.Namespace, seed: int) -> tuple[Word2Vec, dict[str, Any]]:
    """Train mini_llm's Word2Vec; returns the model and its speed columns."""
    start = time.perf_counter()
    model = Word2Vec(
        vector_size=args.vector_size, window=args.window, negative=args.negative, min_count=args.min_count,
        sample=args.sample, epochs=args.epochs, workers=args.workers, seed=seed,
    ).fit(sentences)  # fmt: skip
    report = model.report
    return model, {
        "vocab s": time.perf_counter() - start - report.seconds,
        "train s": report.seconds,
        "effective words": report.effective_words,
        "effective words/s": report.effective_words_per_second,
    }


def fit_gensim(sentences: list[list[str]], args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Train gensim's Word2Vec (sg=1, hs=0) with the same settings; returns the model and its speed columns."""
    from gensim.models import Word2Vec as GensimWord2Vec

    model = GensimWord2Vec(
        vector_size=args.vector_size, window=args.window, negative=args.negative, min_count=args.min_count,
        sample=args.sample, epochs=args.epochs, workers=args.workers, seed=args.seed, sg=1, hs=0,
    )  # fmt: skip
    start = time.perf_counter()
    model.build_vocab(sentences)
    vocab_seconds = time.perf_counter() - start
    start = time.perf_counter()
    effective, _ = model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    seconds = time.perf_counter() - start
    return model, {
        "vocab s": vocab_seconds,
        "train s": seconds,
        "effective words": effective,
        "effective words/s": effective / seconds,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the machine and the tables, and return all rows (word2vec rows, then GloVe)."""
    args = parse_args(argv)
    sentences = load_people_daily(form="words")[: args.max_sentences]
    print_machine()
    print(
        f"corpus: People's Daily 1998-01, {len(sentences):,} paragraphs, {sum(map(len, sentences)):,} words; "
        f"skip-gram, vector_size={args.vector_size}, window={args.window}, negative={args.negative}, "
        f"min_count={args.min_count}, sample={args.sample}, epochs={args.epochs}, workers={args.workers}, "
        f"seed={args.seed}"
    )
    Word2Vec(min_count=1, epochs=1, workers=args.workers).fit(sentences[:50])  # compile or load the kernels
    GloVe(min_count=1, epochs=1, workers=args.workers).fit(sentences[:50])

    ours, ours_speed = fit_mini_llm(sentences, args, args.seed)
    peer, peer_speed = fit_gensim(sentences, args)
    rows = [{"model": MINI_LLM, **ours_speed}, {"model": GENSIM, **peer_speed}]
    runs = [ours, peer]
    if not args.no_reseed:
        reseeded, reseeded_speed = fit_mini_llm(sentences, args, args.seed + 1)
        rows.append({"model": MINI_LLM_RESEEDED, **reseeded_speed})
        runs.append(reseeded)
    for row, model in zip(rows, runs, strict=True):
        row["ratio vs gensim"] = row["effective words/s"] / peer_speed["effective words/s"]
        row.update(quality(model, None if model is peer else peer))
    print(markdown_table(rows, COLUMNS))
    if not args.no_reseed:
        print(f"top-10 overlap of the two mini_llm runs (seeds {args.seed}, {args.seed + 1}): "
              f"{neighbour_overlap(ours, runs[2]):.2f}")  # fmt: skip

    if not args.no_glove:
        glove = GloVe(
            vector_size=args.vector_size, window=args.glove_window, min_count=args.min_count,
            epochs=args.glove_epochs, workers=args.workers, seed=args.seed,
        ).fit(sentences)  # fmt: skip
        report = glove.report
        glove_row = {
            "model": GLOVE,
            "count s": report.count_seconds,
            "nonzero X_ij": report.nonzero,
            "train s": report.train_seconds,
            "s/epoch": report.train_seconds / args.glove_epochs,
            "final J/nonzero": f"{report.losses[-1]:.4f}",
            **quality(glove, peer),
        }
        print(
            f"GloVe: window={args.glove_window} (1/distance weights), x_max={glove.x_max}, alpha={glove.alpha}, "
            f"AdaGrad learning_rate={glove.learning_rate}, epochs={args.glove_epochs}, workers={args.workers}"
        )
        print(markdown_table([glove_row], GLOVE_COLUMNS))
        rows.append(glove_row)
    return rows


if __name__ == "__main__":
    main()
