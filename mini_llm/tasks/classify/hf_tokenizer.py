"""A character-level tokenizer trained with the `tokenizers` library on the training texts, for transformers."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order


def train_char_tokenizer(texts: Sequence[str], min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Every non-space character seen ``min_frequency`` times in ``texts`` becomes a token (after NFKC, lower case).

    The ``tokenizers`` trainer breaks ties between equally frequent characters in a run-dependent order,
    so the trained vocabulary is re-numbered: the special tokens first, then the characters in code-point order.
    Inputs become ``[CLS] c1 c2 ... [SEP]``, as in BERT.
    """
    texts = list(texts)
    if not texts or not any(text.strip() for text in texts):
        raise ValueError("texts must hold at least one non-blank text to train a tokenizer on")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])  # full-width Ａ１ -> a1
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    trainer = trainers.WordLevelTrainer(
        min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    draft = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    draft.normalizer, draft.pre_tokenizer = normalizer, pre_tokenizer
    draft.train_from_iterator(texts, trainer=trainer)
    chars = sorted(set(draft.get_vocab()) - set(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *chars])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


class HFEncoder:
    """encode(texts) for the collator: the tokenizer's padded ids, attention mask and token types, truncated."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, texts: list[str]) -> dict:
        return dict(
            self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )  # each (B, T), T = longest text of the batch
