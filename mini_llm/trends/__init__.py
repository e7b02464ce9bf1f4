"""Chapter 8 (未来发展趋势与挑战): the experiments that check the source's trends and challenges on the book's models.

One module per experiment, and ``domains`` (the review texts and the loss with <unk> targets apart, shared by two of
them): ``compute_optimal`` (how the zoo's loss falls with parameters and tokens),
``generalization`` (in-domain against out-of-domain perplexity), ``lora_study`` (LoRA and QLoRA adaptation to one
domain), ``memorization`` (extraction and canaries), ``bias`` (他/她 associations in the corpus, the models and the
embeddings). Each writes a small CSV under ``results/`` through a ``mini-llm future`` command.
May import: every floor below it (helpers, data, nn, quant, train, evaluation, tasks, scaling). Never cli.
"""
