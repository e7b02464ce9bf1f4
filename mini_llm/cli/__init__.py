"""The ``mini-llm`` command line.

Commands: ``train`` / ``generate`` a char-level GPT on People's Daily and compare ``decoding`` strategies with it
(chapters 1 and 6), ``zoo train | list`` and ``sweep`` (the k-bit scaling experiment), ``classify train | eval |
imbalance`` (the review-sentiment classifiers of chapters 5 and 6).

Modules: ``app`` (the parser and ``main``), ``guard`` (errors and Ctrl-C -> one line and exit status 2, 1 or 130),
``argtypes`` (the type of every flag value), ``parser`` (parser building blocks), and one module per command group:
``char_gpt``, ``scaling``, ``classify``. Building the parser imports no torch, transformers or numba: each handler
imports what it runs, so ``mini-llm --help`` and ``--version`` answer at once. No module below ``mini_llm.cli``
imports it.
May import: every room of mini_llm (the top floor).
"""

from mini_llm.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
