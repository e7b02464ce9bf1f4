"""Beam search for the encoder-decoder: greedy at beam_size 1, exact when the beam holds every prefix, eos handling."""

import itertools

import pytest
import torch

from mini_llm.generation import beam_search_seq2seq, generate_seq2seq
from mini_llm.nn import Seq2SeqConfig, Seq2SeqTransformer

BOS = 0


def tiny_model(seed: int, vocab: int = 4) -> Seq2SeqTransformer:
    """A random encoder-decoder with weights large enough that its outputs depend on the source and the prefix."""
    torch.manual_seed(seed)
    config = Seq2SeqConfig(
        src_vocab_size=12,
        tgt_vocab_size=vocab,
        block_size=8,
        d_model=16,
        n_head=2,
        d_ff=32,
        n_encoder_layers=1,
        n_decoder_layers=1,
        dropout=0.0,
        tie_weights=False,
    )
    model = Seq2SeqTransformer(config).eval()
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() > 1):
            weight.normal_(0.0, 0.5)  # the default 0.02 gives nearly uniform next-token distributions
        model.lm_head.weight.mul_(0.5)  # mean next-token entropy about 1.4 nats of ln 5 = 1.6
    return model


def sources(seed: int, batch: int = 3, length: int = 5) -> torch.Tensor:
    return torch.randint(1, 12, (batch, length), generator=torch.Generator().manual_seed(seed))  # (B, S)


@torch.no_grad()
def sequence_log_prob(model: Seq2SeqTransformer, src: torch.Tensor, hypothesis: list[int]) -> float:
    """Total log-probability of the tokens after bos, from one plain teacher-forced forward pass (no cache)."""
    tgt = torch.tensor([[BOS, *hypothesis[:-1]]])  # (1, T)
    logits = model(src[None], tgt).logits[0].double()  # (T, V)
    return float(torch.log_softmax(logits, dim=-1)[torch.arange(len(hypothesis)), hypothesis].sum())


def all_hypotheses(vocab: int, length: int, eos: int | None) -> list[list[int]]:
    """Every output of at most length tokens: cut at the first eos, or length tokens without one."""
    found = set()
    for seq in itertools.product(range(vocab), repeat=length):
        if eos is not None and eos in seq:
            seq = seq[: seq.index(eos) + 1]
        found.add(seq)
    return [list(seq) for seq in sorted(found)]


def hypothesis(row: torch.Tensor, length: int) -> list[int]:
    return row[1 : 1 + length].tolist()


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_beam_size_1_is_greedy(one_thread, length_penalty):
    model = tiny_model(0, vocab=6)
    src = sources(1, batch=4)
    mask = torch.ones_like(src)
    mask[2, 3:] = 0
    greedy = generate_seq2seq(model, src, 7, BOS, src_padding_mask=mask, greedy=True)  # (4, 8), no eos
    eos = int(greedy[0, 3])  # a token greedy decoding emits mid-way, so that some rows stop early
    for eos_token_id in (None, eos):
        expected = generate_seq2seq(model, src, 7, BOS, src_padding_mask=mask, greedy=True, eos_token_id=eos_token_id)
        beam = beam_search_seq2seq(model, src, 1, 7, BOS, eos_token_id, length_penalty, src_padding_mask=mask)
        assert torch.equal(beam.sequences, expected)
    assert beam.lengths.min() < 7  # eos ended some hypotheses early


def test_a_beam_holding_every_prefix_finds_the_best_sequence(one_thread):
    vocab, steps = 4, 3
    not_greedy = length_matters = 0
    for seed in range(3):
        model = tiny_model(seed, vocab)
        src = sources(seed + 10, batch=3)
        for eos in (None, 3):
            greedy = generate_seq2seq(model, src, steps, BOS, greedy=True, eos_token_id=eos)
            lengths = []
            for length_penalty in (0.0, 0.5, 1.0):
                # vocab ** steps hypotheses fit in the beam: nothing is pruned, so the search is exhaustive
                out = beam_search_seq2seq(model, src, vocab**steps, steps, BOS, eos, length_penalty)
                lengths.append(out.lengths)
                for i in range(src.size(0)):
                    scored = []
                    for hyp in all_hypotheses(vocab, steps, eos):
                        log_prob = sequence_log_prob(model, src[i], hyp)
                        scored.append((log_prob / len(hyp) ** length_penalty, log_prob, hyp))
                    best_score, best_log_prob, best = max(scored)
                    assert hypothesis(out.sequences[i], int(out.lengths[i])) == best
                    assert float(out.scores[i]) == pytest.approx(best_score, abs=1e-5)
                    assert float(out.log_probs[i]) == pytest.approx(best_log_prob, abs=1e-5)
                    not_greedy += best != greedy[i, 1:].tolist()[: len(best)]
            length_matters += int((lengths[0] != lengths[-1]).sum())
    assert not_greedy > 0 and length_matters > 0  # the check is not passed by greedy decoding alone


def test_a_small_beam_lies_between_greedy_and_the_exhaustive_best(one_thread):
    vocab, steps = 5, 4
    better_than_greedy = 0
    for seed in range(5):
        model = tiny_model(seed, vocab)
        src = sources(seed + 20, batch=4)
        greedy = generate_seq2seq(model, src, steps, BOS, greedy=True)  # (4, 1 + steps)
        exhaustive = beam_search_seq2seq(model, src, vocab**steps, steps, BOS)
        for beam_size in (2, 3):
            out = beam_search_seq2seq(model, src, beam_size, steps, BOS)
            for i in range(src.size(0)):
                beam_log_prob = sequence_log_prob(model, src[i], hypothesis(out.sequences[i], steps))
                greedy_log_prob = sequence_log_prob(model, src[i], hypothesis(greedy[i], steps))
                assert float(out.log_probs[i]) == pytest.approx(beam_log_prob, abs=1e-5)
                # Not a theorem for every model (the greedy prefix can drop out of the beam), but true of these:
                assert beam_log_prob >= greedy_log_prob
                assert float(out.log_probs[i]) <= float(exhaustive.log_probs[i]) + 1e-6  # this one is a theorem
                better_than_greedy += beam_log_prob > greedy_log_prob + 1e-6
    assert better_than_greedy > 0


def test_cache_padding_and_scores(one_thread):
    model = tiny_model(3, vocab=7)
    src = sources(4, batch=3, length=6)
    mask = torch.ones_like(src)
    mask[1, 4:] = 0
    kwargs = dict(eos_token_id=2, length_penalty=1.0, src_padding_mask=mask)
    cached = beam_search_seq2seq(model, src, 3, 7, BOS, **kwargs)
    uncached = beam_search_seq2seq(model, src, 3, 7, BOS, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.scores, uncached.scores, rtol=0, atol=1e-5)
    alone = beam_search_seq2seq(model, src[1:2, :4], 3, 7, BOS, eos_token_id=2, length_penalty=1.0)
    assert torch.equal(alone.sequences[0, : 1 + alone.lengths[0]], cached.sequences[1, : 1 + cached.lengths[1]])
    for i in range(3):
        hyp = hypothesis(cached.sequences[i], int(cached.lengths[i]))
        log_prob = sequence_log_prob(model, src[i][mask[i].bool()], hyp)
        assert float(cached.log_probs[i]) == pytest.approx(log_prob, abs=1e-5)
        assert float(cached.scores[i]) == pytest.approx(log_prob / len(hyp), abs=1e-5)


def test_eos_handling(one_thread):
    model = tiny_model(5, vocab=6)
    src = sources(6, batch=3)
    out = beam_search_seq2seq(model, src, 4, 6, BOS, eos_token_id=4, length_penalty=0.5)
    assert out.sequences[:, 0].eq(BOS).all()
    assert out.sequences.size(1) == 1 + int(out.lengths.max())
    for row, n in zip(out.sequences.tolist(), out.lengths.tolist(), strict=True):
        assert 4 not in row[1:n]  # no eos before the end of a hypothesis
        assert n == 6 or row[n] == 4  # a hypothesis shorter than max_new_tokens ends with eos ...
        assert all(t == 4 for t in row[n + 1 :])  # ... and the rest of the row is eos padding
    # With eos the most likely first token and length_penalty 0, nothing beats stopping at once:
    # every longer hypothesis has log p <= log p(its first token) < log p(eos).
    first = generate_seq2seq(model, src, 1, BOS, greedy=True)[:, 1]  # (3,)
    for i in range(3):
        eos = int(first[i])
        out = beam_search_seq2seq(model, src[i : i + 1], 5, 6, BOS, eos_token_id=eos, length_penalty=0.0)
        assert out.sequences.tolist() == [[BOS, eos]] and out.lengths.tolist() == [1]
    none = beam_search_seq2seq(model, src, 3, 0, BOS)
    assert none.sequences.tolist() == [[BOS]] * 3 and none.log_probs.tolist() == [0.0] * 3
    full = beam_search_seq2seq(model, src, 3, 5, BOS)  # no eos: every hypothesis has max_new_tokens tokens
    assert full.sequences.shape == (3, 6) and full.lengths.tolist() == [5] * 3


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(beam_size=0), "beam_size"),
        (dict(beam_size=2.0), "beam_size"),
        (dict(beam_size=True), "beam_size"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=9), "max_new_tokens"),  # block_size is 8
        (dict(bos_token_id=6), "bos_token_id"),
        (dict(bos_token_id=None), "bos_token_id"),
        (dict(eos_token_id=-1), "eos_token_id"),
        (dict(eos_token_id=6), "eos_token_id"),
        (dict(length_penalty=float("nan")), "length_penalty"),
        (dict(length_penalty="1"), "length_penalty"),
        (dict(src=torch.ones(2, 3)), "src"),
        (dict(src=torch.ones(3, dtype=torch.long)), "src"),
        (dict(src=torch.tensor([[1, 12]])), "src"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    arguments = dict(model=tiny_model(0, vocab=6), src=sources(0), beam_size=2, max_new_tokens=3, bos_token_id=BOS)
    with pytest.raises(ValueError, match=name):
        beam_search_seq2seq(**(arguments | kwargs))
