"""Word embeddings: word2vec (skip-gram, negative sampling) and GloVe, trained by Numba kernels."""

from mini_llm.embeddings.cooccurrence import Cooccurrence, count_cooccurrences
from mini_llm.embeddings.glove import GloVe, GloVeReport
from mini_llm.embeddings.keyed_vectors import WordVectors
from mini_llm.embeddings.word2vec import TrainingReport, Word2Vec

__all__ = ["Cooccurrence", "GloVe", "GloVeReport", "TrainingReport", "Word2Vec", "WordVectors", "count_cooccurrences"]
