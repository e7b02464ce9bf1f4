"""The book's applications, one room per chapter task: each puts the lower floors to work on a corpus.

- ``charlm``     the char-level GPT on People's Daily: presets, training runs, loading, generated text
- ``decoding``   the decoding experiments of chapter 6: held-out prompts, strategies compared, result files
- ``classify``   the review-sentiment classifiers of chapter 5 (naive Bayes, BERT), their runs and evaluations
- ``qa``         cloze question answering over People's Daily (retrieval, then extraction)
- ``retrieval``  BM25 over characters or character bigrams
- ``ngram``      count-based n-gram language models (add-k, Kneser-Ney), used by the chapters and QA
- ``chat``       a chat with a Llama GGUF model (SmolLM2-135M): chat template, streamed replies, one cache for all turns
- ``fused_llama`` a k-bit Llama decoded one compiled Numba call per token on the CPU (chapter 16)
A decoding algorithm (how the next token is chosen) belongs to ``mini_llm.generation``; a metric to
``mini_llm.evaluation``; the run of a new application gets its own room here.
May import: every lower floor (helpers, atomic, jsonfiles, data, kernels, nn, numpy_nn, quant, train, interop,
embeddings, generation, evaluation) and other rooms of tasks. Never scaling or cli. This __init__ imports nothing,
so ``import mini_llm.tasks.qa`` does not load transformers.
"""
