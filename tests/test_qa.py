"""mini_llm.tasks.qa: cloze questions from tagged paragraphs, candidates and answerers."""

from collections import Counter

import numpy as np
import pytest

from mini_llm.tasks.ngram import NGramLanguageModel
from mini_llm.tasks.qa import (
    BLANK,
    ClozeQuestion,
    answer_by_frequency,
    answer_by_window,
    build_cloze_qa,
    candidates,
    entity_mentions,
    filled_log_prob,
    language_model_answerer,
    load_cloze_qa,
    merge_entities,
    split_sentences,
    window_overlap,
)


def tag(text: str) -> list[tuple[str, str]]:
    """'江/nr 泽民/nr 访问/v 上海/ns 。/w' -> [('江', 'nr'), ...]."""
    return [tuple(token.rsplit("/", 1)) for token in text.split()]


PARAGRAPHS = [
    tag("江/nr 泽民/nr 访问/v 上海/ns 。/w 江/nr 泽民/nr 在/p 上海/ns 考察/v 工作/n 情况/n 。/w"),
    tag("李/nr 鹏/nr 会见/v 外宾/n 。/w 今天/t 李/nr 鹏/nr 到/v 北京/ns 开会/v 讨论/v 问题/n ！/w 北京/ns 下雪/v 。/w"),
    tag("天气/n 很/d 好/a 。/w"),
]


def test_merge_entities_joins_person_name_parts_only():
    assert merge_entities(tag("江/nr 泽民/nr 和/c 李/nr 鹏/nr 、/w 上海/ns 北京/ns")) == [
        ("江泽民", "nr"), ("和", "c"), ("李鹏", "nr"), ("、", "w"), ("上海", "ns"), ("北京", "ns")]


def test_entity_mentions_lists_people_places_and_organisations():
    assert entity_mentions(PARAGRAPHS[:2]) == [
        ("江泽民", "person"), ("上海", "place"), ("江泽民", "person"), ("上海", "place"),
        ("李鹏", "person"), ("李鹏", "person"), ("北京", "place"), ("北京", "place")]
    assert entity_mentions([tag("新华社/nt 报道/v")]) == [("新华社", "organisation")]


def test_split_sentences_cuts_after_sentence_ends():
    sentences = split_sentences(tag("他/r 来/v 了/u 。/w 好/a ！/w 是/v 吗/y ？/w 尾巴/n"))
    assert ["".join(w for w, _ in s) for s in sentences] == ["他来了。", "好！", "是吗？", "尾巴"]


def test_cloze_questions_blank_an_entity_found_again_in_their_document():
    qa = build_cloze_qa(PARAGRAPHS, n_questions=2, seed=0, min_chars=4)
    assert len(qa.documents) == len(qa.mentions) == 3 and len(qa.questions) == 2
    originals = ["".join(w for w, _ in p) for p in PARAGRAPHS]
    for q in qa.questions:
        assert q.question.count(BLANK) == 1
        sentence = q.filled(q.answer)
        document = qa.documents[q.document]
        assert sentence in originals[q.document] and sentence not in document  # the question's sentence left it
        assert q.answer in document and (q.answer, q.entity_type) in qa.mentions[q.document]
        assert len(q.answer) >= 2
    assert qa.documents[2] == originals[2] and qa.mentions[2] == []
    assert build_cloze_qa(PARAGRAPHS, 2, seed=0, min_chars=4) == qa  # fixed by the seed


def test_cloze_questions_respect_max_per_answer_and_report_too_many():
    twins = [tag("江/nr 泽民/nr 访问/v 上海/ns 。/w 江/nr 泽民/nr 在/p 上海/ns 考察/v 工作/n 情况/n 。/w")] * 3
    qa = build_cloze_qa(twins, n_questions=2, seed=1, min_chars=4, max_per_answer=1)
    assert sorted(q.answer for q in qa.questions) == ["上海", "江泽民"]
    with pytest.raises(ValueError, match="n_questions=3 exceeds the 2 questions"):
        build_cloze_qa(twins, n_questions=3, seed=1, min_chars=4, max_per_answer=1)
    with pytest.raises(ValueError, match="n_questions must be an integer >= 1"):
        build_cloze_qa(PARAGRAPHS, n_questions=0)
    with pytest.raises(ValueError, match="max_per_answer must be an integer >= 1"):
        build_cloze_qa(PARAGRAPHS, n_questions=1, max_per_answer=True)


def test_load_cloze_qa_uses_only_heldout_paragraphs():
    qa = load_cloze_qa(n_questions=20, seed=0)
    assert len(qa.documents) == 1949 and len(qa.questions) == 20
    assert all(q.answer in qa.documents[q.document] for q in qa.questions)
    assert max(Counter(q.answer for q in qa.questions).values()) <= 5
    with pytest.raises(ValueError, match="heldout_fraction must be in"):
        load_cloze_qa(heldout_fraction=1.0)


def test_candidates_count_mentions_of_the_type_in_order():
    mentions = [("上海", "place"), ("江泽民", "person"), ("北京", "place"), ("北京", "place")]
    assert list(candidates(mentions, "place").items()) == [("上海", 1), ("北京", 2)]
    with pytest.raises(ValueError, match="entity_type must be one of"):
        candidates(mentions, "city")


QUESTION = ClozeQuestion(question=f"昨天{BLANK}访问了上海", answer="江泽民", entity_type="person", document=0)


def test_frequency_answerer_breaks_ties_by_first_mention():
    assert answer_by_frequency(QUESTION, Counter({"李鹏": 2, "江泽民": 2}), "") == "李鹏"
    assert answer_by_frequency(QUESTION, Counter(), "") == ""


def test_window_overlap_counts_shared_bigrams_around_the_blank():
    document = "李鹏访问了北京。昨天江泽民访问了上海。"
    # 5 characters each side. Question: 昨天 | 访问 问了 了上 上海.
    # Around 江泽民: 北京 京。 。昨 昨天 | 访问 问了 了上 上海
    assert window_overlap(QUESTION, "江泽民", document, width=5) == 5
    # around 李鹏: (nothing) | 访问 问了 了北 北京 -> shares 访问 问了
    assert window_overlap(QUESTION, "李鹏", document, width=5) == 2
    # 10 characters: the right side of 李鹏 reaches 。昨天江泽 and shares 昨天 too
    assert window_overlap(QUESTION, "李鹏", document) == 3
    assert window_overlap(QUESTION, "朱镕基", document) == 0
    assert answer_by_window(QUESTION, Counter({"李鹏": 3, "江泽民": 1}), document) == "江泽民"
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        window_overlap(QUESTION, "李鹏", document, width=0)


def test_local_ngram_score_ranks_candidates_like_the_whole_sentence():
    lm = NGramLanguageModel(3).fit("昨天江泽民访问了上海。今天李鹏访问了北京。江泽民主席在上海。" * 3)
    full = {c: filled_log_prob(QUESTION, c, lm.log_probs) for c in ("江泽民", "李鹏", "北京")}
    local = {c: filled_log_prob(QUESTION, c, lm.log_probs, context=2) for c in full}
    assert full["江泽民"] == pytest.approx(float(np.sum(lm.log_probs("昨天江泽民访问了上海"))))
    for a in full:  # the terms left out do not depend on the candidate: differences agree exactly
        for b in full:
            assert full[a] - full[b] == pytest.approx(local[a] - local[b], abs=1e-9)
    found = Counter({"李鹏": 1, "北京": 1, "江泽民": 1})
    assert language_model_answerer(lm.log_probs)(QUESTION, found, "") == "江泽民"
    assert language_model_answerer(lm.log_probs, context=2)(QUESTION, found, "") == "江泽民"
    with pytest.raises(ValueError, match="context must be None or an integer >= 0"):
        filled_log_prob(QUESTION, "李鹏", lm.log_probs, context=-1)
