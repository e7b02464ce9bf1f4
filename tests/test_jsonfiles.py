"""mini_llm.jsonfiles: one reader for the format-tagged JSON files of runs and results."""

import pytest

from mini_llm.jsonfiles import read_format_json


def test_reads_an_object_with_the_expected_format(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"format": "demo/1", "x": [1, 2]}', encoding="utf-8")
    assert read_format_json(path, "demo/1", "a demo file") == {"format": "demo/1", "x": [1, 2]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        ('{"format": "demo/2"}', "is not a demo file \\(format 'demo/1' expected\\)"),
        ('["format", "demo/1"]', "is not a demo file"),
    ],
)
def test_rejects_other_files_naming_them(tmp_path, text, message):
    path = tmp_path / "bad.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        read_format_json(path, "demo/1", "a demo file")
    assert str(path) in str(error.value)
