"""Chapter 6.2 helpers: batched beam search against the one-source search, sequence scores, reading counts."""

from collections import Counter

import pytest
import torch
from test_beam_search import BOS, tiny_model

from mini_llm.data.pinyin import PinyinPair, reading_counts, syllable_accuracy
from mini_llm.generation import batched_beam_search_seq2seq, beam_search_seq2seq, generate_seq2seq
from mini_llm.train.seq2seq import PairBatches, sequence_log_probs


def sources(seed: int, batch: int, length: int = 5) -> torch.Tensor:
    return torch.randint(1, 12, (batch, length), generator=torch.Generator().manual_seed(seed))  # (B, S)


def assert_same_search(a, b) -> None:
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.lengths, b.lengths)
    # float32 logits of a larger batch round differently: the sums agree to about 1e-6
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.log_probs, b.log_probs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("vocab", [3, 5, 9])
@pytest.mark.parametrize("eos", [None, 2])
def test_batched_beam_search_matches_the_one_source_search(one_thread, vocab, eos):
    for seed in range(4):
        model = tiny_model(seed, vocab)
        src = sources(seed, batch=5)
        mask = torch.ones_like(src)
        mask[seed % 5, 2:] = 0  # one padded source
        for beam_size in (1, 2, 3, 8):  # 8 > vocab for some: the beam cannot be filled at the first step
            for length_penalty in (0.0, 1.0):
                for max_new_tokens in (0, 1, 4, 8):
                    args = (model, src, beam_size, max_new_tokens, BOS, eos, length_penalty)
                    expected = beam_search_seq2seq(*args, src_padding_mask=mask)
                    assert_same_search(batched_beam_search_seq2seq(*args, src_padding_mask=mask), expected)
    uncached = batched_beam_search_seq2seq(model, src, 3, 6, BOS, eos, 1.0, src_padding_mask=mask, use_cache=False)
    assert_same_search(uncached, beam_search_seq2seq(model, src, 3, 6, BOS, eos, 1.0, src_padding_mask=mask))


def test_batched_beam_size_1_is_greedy(one_thread):
    model = tiny_model(7, vocab=6)
    src = sources(8, batch=6)
    greedy = generate_seq2seq(model, src, 7, BOS, greedy=True, eos_token_id=3)
    beam = batched_beam_search_seq2seq(model, src, 1, 7, BOS, eos_token_id=3)
    assert torch.equal(beam.sequences, greedy)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(beam_size=0), "beam_size"),
        (dict(max_new_tokens=9), "max_new_tokens"),  # block_size is 8
        (dict(eos_token_id=6), "eos_token_id"),
        (dict(src=torch.ones(2, 3)), "src"),
    ],
)
def test_batched_beam_search_rejects_bad_arguments(kwargs, name):
    arguments = dict(model=tiny_model(0, vocab=6), src=sources(0, 2), beam_size=2, max_new_tokens=3, bos_token_id=BOS)
    with pytest.raises(ValueError, match=name):
        batched_beam_search_seq2seq(**(arguments | kwargs))


@torch.no_grad()
def test_sequence_log_probs_sum_the_per_step_log_probabilities(one_thread):
    model = tiny_model(2, vocab=7)
    pad, bos, eos = 0, 1, 2  # token 0 is padding here, so BOS is 1
    source_ids = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
    target_ids = [[3, 4, 5], [6], [5, 3, 4, 6]]
    src, tgt = PairBatches(source_ids, target_ids, pad_id=pad, bos_id=bos, eos_id=eos).batch([0, 1, 2])
    scores = sequence_log_probs(model, src, tgt, pad_id=pad)  # (3,)
    assert scores.dtype == torch.float64 and scores.shape == (3,)
    for i, (source, target) in enumerate(zip(source_ids, target_ids, strict=True)):
        memory = model.encode(torch.tensor([source])).memory  # (1, S, C), no padding
        prefix, expected = [bos], 0.0
        for token in [*target, eos]:  # one decoder call per step, without cache or padding
            logits = model.decode(torch.tensor([prefix]), memory).logits[0, -1].double()  # (V,)
            expected += float(torch.log_softmax(logits, dim=-1)[token])
            prefix.append(token)
        assert float(scores[i]) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="src"):
        sequence_log_probs(model, src[0], tgt)


def test_sequence_log_probs_agree_with_the_beam_search_scores(one_thread):
    model = tiny_model(4, vocab=6)
    src = sources(5, batch=4)
    out = beam_search_seq2seq(model, src, 3, 6, BOS, eos_token_id=2, length_penalty=0.0)
    for i, length in enumerate(out.lengths.tolist()):
        tgt = out.sequences[i : i + 1, : 1 + length]  # (1, 1 + length): bos and the hypothesis, eos included
        score = sequence_log_probs(model, src[i : i + 1], tgt, pad_id=-1)  # -1: no token is padding
        assert float(score) == pytest.approx(float(out.log_probs[i]), abs=1e-5)


def test_reading_counts_count_each_reading_of_each_character():
    pairs = [
        PinyinPair("银行", ("yin2", "hang2")),
        PinyinPair("行走", ("xing2", "zou3")),
        PinyinPair("行长", ("hang2", "zhang3")),
    ]
    counts = reading_counts(pairs)
    assert counts["行"] == Counter({"hang2": 2, "xing2": 1})
    assert counts["银"] == Counter({"yin2": 1})
    assert set(counts) == {"银", "行", "走", "长"}
    with pytest.raises(ValueError, match="syllables"):
        reading_counts([PinyinPair("银行", ("yin2",))])


def test_syllable_accuracy_compares_position_by_position():
    pairs = [PinyinPair("银行行长", ("yin2", "hang2", "hang2", "zhang3")), PinyinPair("行走", ("xing2", "zou3"))]
    predictions = [["yin2", "hang2", "xing2"], ["xing2", "zou3", "le5"]]  # one too short, one too long
    assert syllable_accuracy(predictions, pairs) == (4, 6)  # yin2 hang2 | xing2 zou3
    assert syllable_accuracy(predictions, pairs, characters={"行"}) == (2, 3)  # hang2 ✓, xing2 ✗, xing2 ✓
    assert syllable_accuracy(predictions, pairs, characters=set()) == (0, 0)
    with pytest.raises(ValueError, match="one prediction"):
        syllable_accuracy(predictions[:1], pairs)
    with pytest.raises(ValueError, match="list of syllables"):
        syllable_accuracy(["yin2 hang2", "xing2"], pairs)


def test_stable_top_k_is_a_stable_sort_cut_to_k():
    from mini_llm.generation.beam import _stable_top_k

    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (50, 12), generator=generator).double()  # many ties, also at the cut
    scores[::7, 5:] = float("-inf")  # rows with fewer finite scores than k
    scores[1] = torch.arange(12, dtype=torch.float64)  # a row without ties
    for k in (1, 3, 8, 12):
        expected = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        assert torch.equal(_stable_top_k(scores, k), expected)
