"""Word embeddings: word2vec (skip-gram, negative sampling) and GloVe, trained by Numba kernels, and their scores.

May import: helpers, data (and numpy, Numba). Never nn, train, tasks, evaluation, scaling or cli.
"""

from mini_llm.embeddings.cooccurrence import Cooccurrence, count_cooccurrences
from mini_llm.embeddings.evaluation import (
    AnalogyQuestion,
    EvaluationResult,
    SimilarityPair,
    evaluate,
    load_analogy_questions,
    load_similarity_pairs,
    neighbour_overlap,
    top_neighbours,
)
from mini_llm.embeddings.glove import GloVe, GloVeReport
from mini_llm.embeddings.keyed_vectors import WordVectors
from mini_llm.embeddings.word2vec import TrainingReport, Word2Vec

__all__ = [
    "AnalogyQuestion",
    "Cooccurrence",
    "EvaluationResult",
    "GloVe",
    "GloVeReport",
    "SimilarityPair",
    "TrainingReport",
    "Word2Vec",
    "WordVectors",
    "count_cooccurrences",
    "evaluate",
    "load_analogy_questions",
    "load_similarity_pairs",
    "neighbour_overlap",
    "top_neighbours",
]
