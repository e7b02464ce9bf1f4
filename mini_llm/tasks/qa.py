"""Cloze question answering over People's Daily: questions built from held-out articles, answered from documents.

A question is a sentence of a held-out paragraph with one named entity (a person, place or organisation, from the
corpus's part-of-speech tags nr / ns / nt) replaced by a blank, as in the news cloze questions of Hermann et al.
(2015). The sentence is removed from its paragraph, and the rest of the paragraph becomes a document of the
collection; the question is kept only if its answer still occurs in that document, so it can be found there.

Answering is retrieval (BM25 over the documents, mini_llm.tasks.retrieval) followed by extraction: the candidates are
the entities of the question's type in the retrieved document, and an answerer picks one of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mini_llm.helpers import check_int
from mini_llm.tasks.retrieval import char_ngram_set

ENTITY_TYPES = {"nr": "person", "ns": "place", "nt": "organisation"}  # corpus tag -> entity type
QUESTION_WORDS = {"person": "谁", "place": "哪里", "organisation": "哪个机构"}  # what the blank asks for
BLANK = "＿＿"  # stands for the answer in a question
SENTENCE_ENDS = frozenset("。！？")
Mention = tuple[str, str]  # (entity text, entity type)


@dataclass(frozen=True)
class ClozeQuestion:
    """A sentence with its answer blanked out, the answer, its type and the index of the document holding it."""

    question: str  # contains BLANK exactly once
    answer: str
    entity_type: str  # one of ENTITY_TYPES' values
    document: int  # index into ClozeQA.documents

    def filled(self, candidate: str) -> str:
        """The question with the blank replaced by ``candidate``."""
        return self.question.replace(BLANK, candidate)


@dataclass(frozen=True)
class ClozeQA:
    """The document collection, the entity mentions of each document, and the questions."""

    documents: list[str]
    mentions: list[list[Mention]]  # per document, in order of appearance
    questions: list[ClozeQuestion]


def merge_entities(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(word, tag) pairs with runs of person-name parts joined (江/nr 泽民/nr -> 江泽民/nr)."""
    merged: list[tuple[str, str]] = []
    for word, tag in pairs:
        if tag == "nr" and merged and merged[-1][1] == "nr":
            merged[-1] = (merged[-1][0] + word, "nr")
        else:
            merged.append((word, tag))
    return merged


def split_sentences(pairs: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The (word, tag) pairs cut after every sentence-ending punctuation mark (。！？)."""
    sentences: list[list[tuple[str, str]]] = [[]]
    for word, tag in pairs:
        sentences[-1].append((word, tag))
        if tag == "w" and word in SENTENCE_ENDS:
            sentences.append([])
    return [s for s in sentences if s]


def _mentions(sentences: Sequence[Sequence[tuple[str, str]]]) -> list[Mention]:
    return [(word, ENTITY_TYPES[tag]) for sentence in sentences for word, tag in sentence if tag in ENTITY_TYPES]


def entity_mentions(tagged_paragraphs: Sequence[Sequence[tuple[str, str]]]) -> list[Mention]:
    """Every person, place and organisation mention of the paragraphs, person-name parts joined."""
    return [(word, ENTITY_TYPES[tag]) for pairs in tagged_paragraphs for word, tag in merge_entities(pairs)
            if tag in ENTITY_TYPES]


def _text(sentences: Sequence[Sequence[tuple[str, str]]]) -> str:
    return "".join(word for sentence in sentences for word, _ in sentence)


def _question_choices(sentences: list[list[tuple[str, str]]], min_chars: int) -> list[tuple[int, int]]:
    """(sentence, word) positions of entities that occur once in their sentence and again in another sentence."""
    choices = []
    for s, sentence in enumerate(sentences):
        rest = {word for word, _ in _mentions(sentences[:s] + sentences[s + 1 :])}
        words = [word for word, _ in sentence]
        if len(_text([sentence])) < min_chars:
            continue
        for w, (word, tag) in enumerate(sentence):
            if tag in ENTITY_TYPES and len(word) >= 2 and words.count(word) == 1 and word in rest:
                choices.append((s, w))
    return choices


def _pick_questions(
    paragraphs: list[list[list[tuple[str, str]]]], choices: list[list[tuple[int, int]]], n_questions: int,
    max_per_answer: int, seed: int,
) -> dict[int, tuple[int, int]]:
    """Paragraph -> (sentence, word) of its question: paragraphs in random order, each answer used at most so often."""
    rng = np.random.default_rng(seed)
    asked: dict[int, tuple[int, int]] = {}
    used: Counter[str] = Counter()
    for p in rng.permutation(len(paragraphs)).tolist():
        usable = [(s, w) for s, w in choices[p] if used[paragraphs[p][s][w][0]] < max_per_answer]
        if usable and len(asked) < n_questions:
            s, w = usable[rng.integers(len(usable))]
            asked[p] = (s, w)
            used[paragraphs[p][s][w][0]] += 1
    if len(asked) < n_questions:
        raise ValueError(f"n_questions={n_questions} exceeds the {len(asked)} questions these paragraphs can give "
                         f"with max_per_answer={max_per_answer}")
    return asked


def build_cloze_qa(
    tagged_paragraphs: Sequence[Sequence[tuple[str, str]]], n_questions: int, seed: int = 0, min_chars: int = 12,
    max_per_answer: int = 3,
) -> ClozeQA:
    """At most one cloze question from each of n_questions random paragraphs; every paragraph is a document."""
    for name, value in (("n_questions", n_questions), ("min_chars", min_chars), ("max_per_answer", max_per_answer)):
        check_int(name, value, 1, kinds=int)
    paragraphs = [split_sentences(merge_entities(pairs)) for pairs in tagged_paragraphs]
    choices = [_question_choices(sentences, min_chars) for sentences in paragraphs]
    asked = _pick_questions(paragraphs, choices, n_questions, max_per_answer, seed)
    documents, mentions, questions = [], [], []
    for p, sentences in enumerate(paragraphs):
        if p in asked:
            s, w = asked[p]
            sentence = sentences[s]
            answer, tag = sentence[w]
            question = _text([sentence[:w]]) + BLANK + _text([sentence[w + 1 :]])
            questions.append(ClozeQuestion(question, answer, ENTITY_TYPES[tag], len(documents)))
            sentences = sentences[:s] + sentences[s + 1 :]
        documents.append(_text(sentences))
        mentions.append(_mentions(sentences))
    return ClozeQA(documents, mentions, questions)


def load_cloze_qa(
    n_questions: int = 250, seed: int = 0, heldout_fraction: float = 0.1, max_per_answer: int = 5
) -> ClozeQA:
    """Cloze questions and documents from the last ``heldout_fraction`` of People's Daily's paragraphs."""
    from mini_llm.data import load_people_daily

    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    tagged = load_people_daily(form="tagged")
    heldout = tagged[int((1 - heldout_fraction) * len(tagged)) :]
    return build_cloze_qa(heldout, n_questions, seed, max_per_answer=max_per_answer)


def candidates(mentions: Sequence[Mention], entity_type: str) -> Counter[str]:
    """How often each entity of ``entity_type`` is mentioned, in order of first mention."""
    if entity_type not in QUESTION_WORDS:
        raise ValueError(f"entity_type must be one of {tuple(QUESTION_WORDS)}, got {entity_type!r}")
    return Counter(text for text, kind in mentions if kind == entity_type)


def answer_by_frequency(question: ClozeQuestion, found: Counter[str], document: str) -> str:
    """The most often mentioned candidate (ties: the first mentioned); '' when there is none."""
    return found.most_common(1)[0][0] if found else ""


def window_overlap(question: ClozeQuestion, candidate: str, document: str, width: int = 10) -> int:
    """The most character bigrams shared by the question around its blank and the document around ``candidate``."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    at = question.question.index(BLANK)
    before_blank = question.question[max(0, at - width) : at]
    after_blank = question.question[at + len(BLANK) : at + len(BLANK) + width]
    around_blank = char_ngram_set(before_blank, 2) | char_ngram_set(after_blank, 2)
    best, start = 0, document.find(candidate)
    while start >= 0:
        end = start + len(candidate)
        before, after = document[max(0, start - width) : start], document[end : end + width]
        around = char_ngram_set(before, 2) | char_ngram_set(after, 2)
        best = max(best, len(around & around_blank))
        start = document.find(candidate, start + 1)
    return best


def answer_by_window(question: ClozeQuestion, found: Counter[str], document: str) -> str:
    """The candidate whose context in the document shares most bigrams with the question's (ties: most frequent)."""
    ranked = sorted(found, key=lambda c: (-window_overlap(question, c, document), -found[c]))
    return ranked[0] if ranked else ""


def filled_log_prob(
    question: ClozeQuestion, candidate: str, log_probs: Callable[[str], np.ndarray], context: int | None = None
) -> float:
    """log P(question with the blank filled by candidate); with ``context`` = n - 1 for an n-gram model, only the
    terms that depend on the candidate (the candidate and the n - 1 characters after it), which rank the same."""
    if context is None:
        return float(np.sum(log_probs(question.filled(candidate))))
    if not isinstance(context, int) or context < 0:
        raise ValueError(f"context must be None or an integer >= 0, got {context!r}")
    at = question.question.index(BLANK)
    left = question.question[max(0, at - context) : at]
    right = question.question[at + len(BLANK) : at + len(BLANK) + context]
    return float(np.sum(log_probs(left + candidate + right)[len(left) :]))


def language_model_answerer(
    log_probs: Callable[[str], np.ndarray], context: int | None = None
) -> Callable[[ClozeQuestion, Counter[str], str], str]:
    """An answerer that picks the candidate making the filled question most probable under a language model."""

    def answer(question: ClozeQuestion, found: Counter[str], document: str) -> str:
        scores = {c: filled_log_prob(question, c, log_probs, context) for c in found}
        return max(scores, key=scores.__getitem__) if scores else ""

    return answer
