"""Text metrics for generated, translated and extracted text, all over characters (or any token sequence).

- Diversity of generated text: distinct-n (Li et al., 2016), the share of distinct n-grams, and the repetition
  rate of one text, the share of its n-grams that repeat an earlier one.
- Sequence outputs (translation): corpus BLEU (Papineni et al., 2002) over characters or whitespace tokens,
  Levenshtein edit distance, character error rate and accuracy.
- Question answering: exact match and character F1 after normalisation, as in the SQuAD script (Rajpurkar et al.,
  2016) and its Chinese version for CMRC 2018, which compares characters instead of words.

Classification metrics (accuracy, macro F1, confusion matrix) live in ``mini_llm.evaluation.classification``.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from mini_llm.helpers import check_int

BLEU_TOKENIZERS = ("char", "whitespace")


def _check_texts(texts: object, name: str) -> None:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        got = "a single str (wrap one text as [text])" if isinstance(texts, str) else type(texts).__name__
        raise ValueError(f"{name} must be a list of texts (strings or token lists), got {got}")


def ngrams(tokens: Sequence[Hashable], n: int) -> list[tuple[Hashable, ...]]:
    """The n-grams of a token sequence (a string is a sequence of characters), in order: len(tokens) - n + 1."""
    check_int("n", n, 1)
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams over all n-grams of all texts together (corpus distinct-n); 0.0 when there are none."""
    _check_texts(texts, "texts")
    grams = [g for text in texts for g in ngrams(text, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: Sequence[Hashable], n: int) -> float:
    """Share of the n-grams of one text that repeat an earlier n-gram of it: 1 - distinct / total; 0.0 if none."""
    grams = ngrams(text, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions that turn a into b."""
    previous = list(range(len(b) + 1))  # distances from a[:0] to every prefix of b
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _check_pairs(hypotheses: Sequence, references: Sequence) -> None:
    _check_texts(hypotheses, "hypotheses")
    _check_texts(references, "references")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"hypotheses and references must have the same length, got {len(hypotheses)} and {len(references)}"
        )


def character_error_rate(hypotheses: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]]) -> float:
    """Total edit distance over total reference length (corpus CER); can exceed 1 for long hypotheses."""
    _check_pairs(hypotheses, references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("references must hold at least one token between them, got only empty references")
    return sum(edit_distance(h, r) for h, r in zip(hypotheses, references, strict=True)) / total


def character_accuracy(hypotheses: Sequence[Sequence[Hashable]], references: Sequence[Sequence[Hashable]]) -> float:
    """1 - character error rate: 1.0 when every hypothesis equals its reference (negative if far too long)."""
    return 1.0 - character_error_rate(hypotheses, references)


@dataclass
class BleuScore:
    """What corpus_bleu returns; bleu = brevity_penalty · exp(mean of ln precisions)."""

    bleu: float  # in [0, 1] (sacrebleu reports 100 times this)
    precisions: list[float]  # clipped n-gram precision for n = 1 .. max_n
    brevity_penalty: float  # 1 if hypothesis_length > reference_length, else exp(1 - r / c)
    hypothesis_length: int  # c: tokens in all hypotheses
    reference_length: int  # r: tokens in the closest reference of each hypothesis, summed


def _bleu_tokens(text: str, tokenize: str) -> list[str]:
    if not isinstance(text, str):
        raise ValueError(f"hypotheses and references must be strings, got {type(text).__name__}")
    return [ch for ch in text if not ch.isspace()] if tokenize == "char" else text.split()


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    max_n: int = 4,
    tokenize: str = "char",
) -> BleuScore:
    """Corpus BLEU of hypotheses against one reference (a str) or several (a list of str) each; no smoothing.

    ``tokenize="char"`` compares characters (whitespace dropped), ``"whitespace"`` space-separated tokens (e.g.
    pinyin syllables). Matches are clipped by the largest count of the n-gram in any one reference; the reference
    length of a hypothesis is that of its closest reference (the shorter on a tie). BLEU is 0 when any n-gram
    order has no match.
    """
    _check_pairs(hypotheses, references)
    check_int("max_n", max_n, 1)
    if tokenize not in BLEU_TOKENIZERS:
        raise ValueError(f"tokenize must be one of {BLEU_TOKENIZERS}, got {tokenize!r}")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs:
            raise ValueError("references must give at least one reference per hypothesis, got an empty list")
        hyp = _bleu_tokens(hypothesis, tokenize)
        ref_tokens = [_bleu_tokens(r, tokenize) for r in refs]
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in ref_tokens)[1]
        for n in range(1, max_n + 1):
            counts = Counter(ngrams(hyp, n))
            max_ref: Counter = Counter()
            for r in ref_tokens:
                max_ref |= Counter(ngrams(r, n))  # element-wise max over the references
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in counts.items())
            totals[n - 1] += sum(counts.values())
    precisions = [m / t if t else 0.0 for m, t in zip(matches, totals, strict=True)]
    if hyp_len == 0:
        brevity_penalty = 0.0
    else:
        brevity_penalty = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    if min(precisions) == 0.0:
        bleu = 0.0
    else:
        bleu = brevity_penalty * math.exp(sum(math.log(p) for p in precisions) / max_n)
    return BleuScore(bleu, precisions, brevity_penalty, hyp_len, ref_len)


def normalize_answer(text: str) -> str:
    """Lower-case, then drop whitespace and punctuation (Unicode categories P*), as the CMRC 2018 script does."""
    return "".join(ch for ch in text.lower() if not ch.isspace() and not unicodedata.category(ch).startswith("P"))


def _answers(answers: str | Sequence[str]) -> list[str]:
    answers = [answers] if isinstance(answers, str) else list(answers)
    if not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"answers must be a string or a non-empty list of strings, got {answers!r}")
    return answers


def exact_match(prediction: str, answers: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in _answers(answers)))


def _char_f1(pred: str, gold: str) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def char_f1(prediction: str, answers: str | Sequence[str]) -> float:
    """Best F1 of the prediction's characters against any answer's (multiset overlap, after normalisation)."""
    pred = normalize_answer(prediction)
    return max(_char_f1(pred, normalize_answer(a)) for a in _answers(answers))


def qa_scores(predictions: Sequence[str], answers: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """Mean exact match and mean character F1 over a question set: {"exact_match": ..., "f1": ...}."""
    _check_pairs(predictions, answers)
    if len(predictions) == 0:
        raise ValueError("predictions must hold at least one answer, got an empty list")
    em = [exact_match(p, a) for p, a in zip(predictions, answers, strict=True)]
    f1 = [char_f1(p, a) for p, a in zip(predictions, answers, strict=True)]
    return {"exact_match": sum(em) / len(em), "f1": sum(f1) / len(f1)}
