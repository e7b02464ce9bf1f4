"""mini_llm.tasks.decoding: held-out prompts, batched continuations, their log-probabilities and the result file."""

import json
import math

import pytest
import torch

from mini_llm.data import CharTokenizer, load_people_daily
from mini_llm.generation import generate
from mini_llm.nn import GPT, GPTConfig
from mini_llm.tasks.decoding import (
    STRATEGIES,
    DecodingStrategy,
    continuation_log_probs,
    continue_prompts,
    copied_share,
    decode_chars,
    evaluate_decoding,
    heldout_prompts,
    longest_copied_span,
    perplexity,
    read_result,
    write_result,
)
from mini_llm.tasks.retrieval import char_ngram_set

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer.from_texts(load_people_daily(form="text"))


def random_gpt(vocab_size: int, block_size: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def test_heldout_prompts_are_consecutive_text_of_heldout_paragraphs():
    paragraphs = load_people_daily(form="text")
    heldout = paragraphs[int(0.9 * len(paragraphs)) :]
    pairs = heldout_prompts(5, prompt_chars=6, new_chars=10, seed=3)
    assert len(pairs) == 5 and pairs == heldout_prompts(5, 6, 10, seed=3)
    for prompt, reference in pairs:
        assert len(prompt) == 6 and len(reference) == 10
        assert any(p.startswith(prompt + reference) for p in heldout)
    with pytest.raises(ValueError, match="new_chars must be an integer >= 1"):
        heldout_prompts(5, 6, 0)
    with pytest.raises(ValueError, match="n_prompts=100000 exceeds"):
        heldout_prompts(100_000, 6, 10)


def test_continue_prompts_greedy_matches_generate_and_sampling_is_seeded(tokenizer):
    model = random_gpt(tokenizer.vocab_size)
    prompts = ["中国人民", "经济发展"]
    ids = continue_prompts(model, tokenizer, prompts, 5, STRATEGIES[0])
    assert ids.shape == (2, 5)
    expected = generate(model, torch.tensor([tokenizer.encode(p) for p in prompts]), 5, greedy=True)[:, 4:]
    assert torch.equal(ids, expected)
    top_k = DecodingStrategy("top-k 3", top_k=3)
    assert torch.equal(continue_prompts(model, tokenizer, prompts, 5, top_k, seed=1),
                       continue_prompts(model, tokenizer, prompts, 5, top_k, seed=1))
    with pytest.raises(ValueError, match="one length"):
        continue_prompts(model, tokenizer, ["中国", "经济发展"], 5, top_k)


def brute_force_log_probs(model: GPT, prompt: list[int], new: list[int]) -> float:
    """Sum of log P(token | the last block_size tokens before it), one forward pass per token, in float64."""
    ids, total = prompt + new, 0.0
    for t in range(len(prompt), len(ids)):
        context = torch.tensor([ids[max(0, t - model.config.block_size) : t]])
        total += torch.log_softmax(model(context).logits[0, -1].double(), dim=-1)[ids[t]].item()
    return total


@pytest.mark.parametrize("new_chars", [3, 9])  # 4 + 3 - 1 fits the block of 8 (one pass); 4 + 9 - 1 does not
def test_continuation_log_probs_match_one_forward_pass_per_token(new_chars):
    model = random_gpt(50)
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(0, 50, (3, 4), generator=generator)
    new_ids = torch.randint(0, 50, (3, new_chars), generator=generator)
    got = continuation_log_probs(model, prompt_ids, new_ids)
    for row, value in enumerate(got):
        assert value == pytest.approx(brute_force_log_probs(model, prompt_ids[row].tolist(), new_ids[row].tolist()),
                                      rel=1e-5)
    with pytest.raises(ValueError, match="need prompt_ids"):
        continuation_log_probs(model, prompt_ids, new_ids[:2])


def test_decode_chars_keeps_one_character_per_id(tokenizer):
    ids = tokenizer.encode("中国") + [tokenizer.unk_id]
    assert decode_chars(tokenizer, ids) == "中国\N{REPLACEMENT CHARACTER}"


def test_copied_share_matches_substring_search():
    source = "人民日报今天发表社论。人民的力量"
    texts = ["人民日报发表", "力量人民"]
    grams = [t[i : i + 3] for t in texts for i in range(len(t) - 2)]
    known = char_ngram_set(source, 3)
    assert len(known) == len(source) - 2
    assert copied_share(texts, known) == pytest.approx(sum(g in source for g in grams) / len(grams))
    assert copied_share(texts, known) == pytest.approx(2 / 6)  # 人民日, 民日报 of 6 trigrams
    assert copied_share(["人民"], known) == 0.0
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        char_ngram_set(source, 0)
    with pytest.raises(ValueError, match="known must be a non-empty set"):
        copied_share(texts, set())


def test_longest_copied_span_matches_brute_force():
    source = "人民日报今天发表社论。人民的力量是无穷的"
    known = char_ngram_set(source, 3)
    for text in ("我们看人民日报今天的社论", "人民的力量", "无关的句子", "力量是无穷的人民日报今天发表"):
        substrings = [text[i:j] for i in range(len(text)) for j in range(i + 3, len(text) + 1)]
        in_source = [s for s in substrings if s in source]
        expected = max(in_source, key=len) if in_source else ""
        assert len(longest_copied_span(text, source, known)) == len(expected)
        assert longest_copied_span(text, source, known) in source
    assert longest_copied_span("我们看人民日报今天的社论", source, known) == "人民日报今天"
    with pytest.raises(ValueError, match="known must be a non-empty set"):
        longest_copied_span("人民", source, set())


def test_perplexity_is_exp_of_the_mean_loss_per_character():
    assert perplexity([-2.0, -4.0], 3) == pytest.approx(math.exp(1.0))
    with pytest.raises(ValueError, match="at least one text"):
        perplexity([], 3)


def test_evaluate_decoding_runs_every_strategy_and_prompt_length(tokenizer, tmp_path):
    model = random_gpt(tokenizer.vocab_size, block_size=16)
    result = evaluate_decoding(model, tokenizer, n_prompts=3, prompt_chars=4, new_chars=6, prompt_lengths=(2, 8))
    names = [(run["strategy"]["name"], run["prompt_chars"]) for run in result["runs"]]
    assert names == [(s.name, 4) for s in STRATEGIES] + [("top-p 0.9", 2), ("top-p 0.9", 8)]
    assert all(len(p) == 8 for p in result["prompts"]) and all(len(r) == 6 for r in result["references"])
    for run in result["runs"]:
        assert [len(t) for t in run["continuations"]] == [6, 6, 6] and len(run["log_probs"]) == 3
        assert all(lp < 0 for lp in run["log_probs"])
    path = write_result(result, tmp_path / "decoding.json")
    assert read_result(path) == json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(ValueError, match="prompt_strategy must be one of"):
        evaluate_decoding(model, tokenizer, n_prompts=3, prompt_strategy="beam")


def test_read_result_rejects_other_files(tmp_path):
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_result(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a decoding result"):
        read_result(tmp_path / "other.json")
