"""CharTokenizer: round trips, the unknown token, save/load and bad input."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mini_llm.data import CharTokenizer
from mini_llm.data.tokenizer import UNK_TOKEN


def test_vocabulary_is_sorted_with_unk_first():
    tok = CharTokenizer.from_texts(["人民日报", "日报"])
    assert tok.chars == sorted("人民日报")
    assert tok.vocab_size == 5 and tok.unk_id == 0
    assert tok.encode("日报") == [tok.chars.index("日") + 1, tok.chars.index("报") + 1]


@given(st.lists(st.text(min_size=1), min_size=1, max_size=5))
def test_encode_decode_round_trip(texts):
    tok = CharTokenizer.from_texts(texts)
    for text in texts:
        assert tok.decode(tok.encode(text)) == text


def test_unknown_characters():
    tok = CharTokenizer.from_texts(["abc"])
    assert tok.encode("abz") == [1, 2, 0]
    assert tok.decode(tok.encode("abz")) == "ab" + UNK_TOKEN
    with pytest.raises(ValueError, match="outside the vocabulary: 'z'"):
        tok.encode("abz", on_unknown="error")
    with pytest.raises(ValueError, match="on_unknown must be one of"):
        tok.encode("a", on_unknown="skip")
    with pytest.raises(ValueError, match="id 9 is outside the vocabulary"):
        tok.decode([9])


def test_min_count():
    tok = CharTokenizer.from_texts(["aab"], min_count=2)
    assert tok.chars == ["a"]
    with pytest.raises(ValueError, match="no vocabulary"):
        CharTokenizer.from_texts(["ab"], min_count=3)
    with pytest.raises(ValueError, match="no vocabulary"):
        CharTokenizer.from_texts([])
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        CharTokenizer.from_texts(["a"], min_count=0)
    with pytest.raises(TypeError, match="not a single string"):
        CharTokenizer.from_texts("abc")


def test_save_load(tmp_path):
    tok = CharTokenizer.from_texts(["迈向充满希望的新世纪"])
    path = tmp_path / "vocab.json"
    tok.save(path)
    again = CharTokenizer.load(path)
    assert again.chars == tok.chars
    assert again.encode("新世纪") == tok.encode("新世纪")


@pytest.mark.parametrize("content, message", [
    ("not json", "not a CharTokenizer file"),
    (json.dumps({"chars": ["a"]}), "missing format"),
    (json.dumps({"format": "mini_llm.CharTokenizer", "version": 99, "chars": ["a"]}), "version 99"),
    (json.dumps({"format": "mini_llm.CharTokenizer", "version": 1, "chars": "ab"}), "no list of chars"),
    (json.dumps({"format": "mini_llm.CharTokenizer", "version": 1, "chars": ["a", "a"]}), "duplicates"),
    (json.dumps({"format": "mini_llm.CharTokenizer", "version": 1, "chars": ["ab"]}), "single characters"),
    (json.dumps({"format": "mini_llm.CharTokenizer", "version": 1, "chars": [1, 2]}), "single characters, got 1"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ("", "not a CharTokenizer file"),
    (b"\xff\xfe", "not a CharTokenizer file"),
    (None, "it is a directory"),
])
def test_corrupt_files_are_rejected_naming_the_file(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        CharTokenizer.load(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_ids_and_texts_of_the_wrong_type_are_refused():
    tok = CharTokenizer(list("abc"))
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tok.encode(b"abc")
    with pytest.raises(TypeError, match="text must be a str, got list"):
        tok.encode(["a", "b"])
    for ids in ([1.9], ["1"], [True], [torch.tensor(1.0)]):
        with pytest.raises(TypeError, match="ids must be integers"):
            tok.decode(ids)
    assert tok.decode([1, np.int64(2), torch.tensor(3)]) == tok.decode(torch.tensor([1, 2, 3])) == "abc"
