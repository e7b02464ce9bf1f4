"""mini_llm: the companion package of the book."""

__version__ = "0.1.0"
