"""Text classification baselines for the review-sentiment task (chapter 5)."""

from mini_llm.classify.naive_bayes import CharNGramNaiveBayes, accuracy_interval

__all__ = ["CharNGramNaiveBayes", "accuracy_interval"]
