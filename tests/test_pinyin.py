"""mini_llm.data.pinyin: clauses, tone-numbered pinyin, the vocabulary and the fixed train / held-out task."""

import pytest

from mini_llm.data import PinyinTask, Vocabulary, load_pinyin_task, to_pinyin
from mini_llm.data.pinyin import SPECIAL_TOKENS, han_clauses, pinyin_pairs


def test_to_pinyin_gives_one_tone_numbered_syllable_per_character():
    assert to_pinyin("中国") == ["zhong1", "guo2"]
    assert to_pinyin("我们的") == ["wo3", "men5", "de5"]  # neutral tone written as 5
    assert to_pinyin("绿") == ["lv4"]  # ü written as v
    assert to_pinyin("银行") == ["yin2", "hang2"]  # the phrase dictionary picks the reading


@pytest.mark.parametrize("text", ["", "中国1", "ab", "中，国", None, 3])
def test_to_pinyin_rejects_anything_but_han_characters(text):
    with pytest.raises(ValueError, match="Han characters"):
        to_pinyin(text)


def test_han_clauses_cut_at_non_han_characters_and_keep_first_occurrences():
    paragraphs = ["迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）", "新年讲话，迈向充满希望的新世纪。"]
    clauses = han_clauses(paragraphs, min_chars=4, max_chars=12)
    assert clauses == ["迈向充满希望的新世纪", "一九九八年新年讲话", "新年讲话"]
    assert han_clauses(paragraphs, min_chars=2, max_chars=4) == ["附图片", "新年讲话"]
    with pytest.raises(ValueError, match="min_chars"):
        han_clauses(paragraphs, min_chars=5, max_chars=4)
    with pytest.raises(TypeError, match="iterable of strings"):
        han_clauses("中国人民", 1, 4)


def test_pinyin_pairs_align_characters_and_syllables():
    (pair,) = pinyin_pairs(["迈向新世纪"])
    assert pair.text == "迈向新世纪"
    assert pair.pinyin == ("mai4", "xiang4", "xin1", "shi4", "ji4")


def test_vocabulary_ids_specials_unknowns_and_decoding():
    vocab = Vocabulary.from_sequences([["a", "b", "a"], ["c", "a"]])
    assert vocab.tokens[:4] == list(SPECIAL_TOKENS)
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.tokens[4:] == ["a", "b", "c"]  # most frequent first, ties in order of appearance
    assert vocab.encode(["a", "z", "c"]) == [4, 3, 6]
    assert vocab.encode("ab") == [4, 5]  # a string is read as its characters
    assert vocab.decode([1, 4, 5, 2, 6, 0]) == ["a", "b"]  # <bos> skipped, stops at <eos>
    assert Vocabulary.from_sequences([["a", "b", "a"]], min_count=2).tokens[4:] == ["a"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([99])
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="special tokens"):
        Vocabulary(["<pad>"])
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.from_sequences([["a"]], min_count=0)


@pytest.fixture(scope="module")
def task() -> PinyinTask:
    return load_pinyin_task(n_train=300, n_heldout=50, seed=0)


def test_task_is_fixed_by_its_seed_and_heldout_clauses_are_unseen(task):
    again = load_pinyin_task(n_train=300, n_heldout=50, seed=0)
    assert again.train == task.train and again.heldout == task.heldout
    assert load_pinyin_task(n_train=300, n_heldout=50, seed=1).train != task.train
    assert len(task.train) == 300 and len(task.heldout) == 50
    assert not {p.text for p in task.heldout} & {p.text for p in task.train}
    assert all(4 <= len(p.text) <= 12 and len(p.pinyin) == len(p.text) for p in task.train + task.heldout)


def test_task_vocabularies_cover_the_training_pairs(task):
    sources, targets = task.encode(task.train)
    assert all(task.source_vocab.unk_id not in ids for ids in sources)
    assert all(task.target_vocab.unk_id not in ids for ids in targets)
    assert task.target_vocab.decode(targets[0]) == list(task.train[0].pinyin)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_train": 0}, "n_train"), ({"n_heldout": True}, "n_heldout"), ({"n_heldout": 10**7}, "exceeds")],
)
def test_task_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_pinyin_task(**{"n_train": 10, "n_heldout": 10, **kwargs})
