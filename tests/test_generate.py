"""Decoding: the KV cache changes no token, seeds reproduce runs, top-k/top-p filter as defined, bad arguments fail."""

import pytest
import torch

from mini_llm.generation import generate, generate_seq2seq, sample_next_token, top_k_filter, top_p_filter
from mini_llm.nn import GPT, GPTConfig, Seq2SeqConfig, Seq2SeqTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=40, block_size=24, n_layer=2, n_head=2, n_embd=32, tie_weights=False)).eval()
    with torch.no_grad():  # sharper next-token distributions (about 2 nats) than the near-uniform initial ones
        gpt.lm_head.weight.mul_(20)
    return gpt


@pytest.fixture(scope="module")
def prompt() -> torch.Tensor:
    return torch.randint(0, 40, (3, 5), generator=torch.Generator().manual_seed(1))


SAMPLING = [
    dict(temperature=1.0),
    dict(temperature=0.7, top_k=5),
    dict(temperature=1.3, top_p=0.9),
    dict(temperature=0.9, top_k=10, top_p=0.8),
]


def test_greedy_decoding_is_the_same_with_and_without_the_cache(model, prompt):
    cached = generate(model, prompt, 12, greedy=True, use_cache=True)
    uncached = generate(model, prompt, 12, greedy=True, use_cache=False)
    assert cached.shape == (3, 17)
    assert torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, uncached)


def test_greedy_picks_the_argmax_of_a_full_pass(model, prompt):
    out = generate(model, prompt, 6, greedy=True)
    for t in range(5, 11):
        assert torch.equal(out[:, t], model(out[:, :t]).logits[:, -1].argmax(-1))


@pytest.mark.parametrize("kwargs", SAMPLING)
def test_seeded_sampling_is_the_same_with_and_without_the_cache(model, prompt, kwargs):
    cached = generate(model, prompt, 12, seed=123, use_cache=True, **kwargs)
    uncached = generate(model, prompt, 12, seed=123, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


def test_seeded_runs_are_reproducible(model, prompt):
    a = generate(model, prompt, 15, seed=7)
    b = generate(model, prompt, 15, seed=7)
    c = generate(model, prompt, 15, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, generate(model, prompt, 15, seed=8))
    torch.manual_seed(3)
    d = generate(model, prompt, 15)
    torch.manual_seed(3)
    assert torch.equal(d, generate(model, prompt, 15))  # the global generator when neither is given


def test_top_k_1_and_a_tiny_top_p_are_greedy(model, prompt):
    greedy = generate(model, prompt, 10, greedy=True)
    assert torch.equal(generate(model, prompt, 10, top_k=1, seed=0), greedy)
    assert torch.equal(generate(model, prompt, 10, top_p=1e-6, seed=0), greedy)
    assert not torch.equal(generate(model, prompt, 10, temperature=2.0, seed=0), greedy)


def test_decoding_past_block_size_slides_the_window(model, prompt):
    cached = generate(model, prompt, 30, seed=5, use_cache=True)
    uncached = generate(model, prompt, 30, seed=5, use_cache=False)
    assert cached.shape == (3, 35)
    assert torch.equal(cached, uncached)
    greedy = generate(model, prompt, 30, greedy=True)
    assert torch.equal(greedy[:, -1], model(greedy[:, -25:-1]).logits[:, -1].argmax(-1))


def test_eos_stops_decoding(model, prompt):
    first = generate(model, prompt[:1], 1, greedy=True)[0, -1].item()
    out = generate(model, prompt[:1], 10, greedy=True, eos_token_id=first)
    assert out.shape == (1, 6) and out[0, -1].item() == first
    batch = generate(model, prompt, 10, greedy=True, eos_token_id=first)
    ended = batch[0, 5:] == first
    assert ended[0] and torch.all(ended)  # a finished sequence keeps emitting eos
    assert batch.shape[1] <= 15


def test_zero_new_tokens_returns_the_prompt(model, prompt):
    assert torch.equal(generate(model, prompt, 0), prompt)


def test_seq2seq_decoding_with_and_without_the_cache():
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        src_vocab_size=30, tgt_vocab_size=20, block_size=16, d_model=32, n_head=4, d_ff=64, dropout=0.0
    )
    s2s = Seq2SeqTransformer(config).eval()
    src = torch.randint(1, 30, (2, 9), generator=torch.Generator().manual_seed(2))
    src_mask = torch.ones_like(src)
    src_mask[1, 5:] = 0
    for kwargs in [dict(greedy=True), dict(seed=4, top_k=8)]:
        cached = generate_seq2seq(s2s, src, 10, bos_token_id=1, src_padding_mask=src_mask, use_cache=True, **kwargs)
        uncached = generate_seq2seq(s2s, src, 10, bos_token_id=1, src_padding_mask=src_mask, use_cache=False, **kwargs)
        assert cached.shape == (2, 11) and torch.all(cached[:, 0] == 1)
        assert torch.equal(cached, uncached)
    with pytest.raises(ValueError, match="bos_token_id"):
        generate_seq2seq(s2s, src, 3, bos_token_id=20)


def test_top_k_filter_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[True, False, True, False, True]]
    assert torch.equal(top_k_filter(logits, 99), logits)


def test_top_p_filter_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.1, 0.5, 0.15, 0.25]]))

    def kept(p):
        return (~torch.isinf(top_p_filter(logits, p))).tolist()[0]

    assert kept(0.5) == [False, True, False, False]
    assert kept(0.6) == [False, True, False, True]
    assert kept(0.7) == [False, True, False, True]
    assert kept(0.76) == [False, True, True, True]
    assert kept(1.0) == [True, True, True, True]


def test_sampling_frequencies_follow_the_filtered_distribution():
    n = 40000
    logits = torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05])).expand(n, 4)
    g = torch.Generator().manual_seed(0)

    def frequencies(**kwargs):
        return torch.bincount(sample_next_token(logits, generator=g, **kwargs), minlength=4).double() / n

    assert frequencies().tolist() == pytest.approx([0.6, 0.25, 0.1, 0.05], abs=0.01)
    assert frequencies(top_p=0.8).tolist() == pytest.approx([0.6 / 0.85, 0.25 / 0.85, 0, 0], abs=0.01)
    assert frequencies(top_k=3).tolist() == pytest.approx([0.6 / 0.95, 0.25 / 0.95, 0.1 / 0.95, 0], abs=0.01)
    hot = torch.softmax(logits[0] / 2.0, dim=0).tolist()  # temperature 2 flattens the distribution
    assert frequencies(temperature=2.0).tolist() == pytest.approx(hot, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=2.0), "max_new_tokens"),
        (dict(idx=torch.zeros(2, 0, dtype=torch.long)), "idx"),
        (dict(idx=torch.zeros(4, dtype=torch.long)), "idx"),
        (dict(idx=torch.zeros(1, 3)), "idx"),
        (dict(idx=torch.tensor([[1, 40]])), "idx"),
        (dict(idx=torch.tensor([[-1, 3]])), "idx"),
        (dict(eos_token_id=40), "eos_token_id"),
        (dict(seed=1, generator=torch.Generator()), "seed"),
    ],
)
def test_bad_arguments_raise_value_error(model, prompt, kwargs, name):
    arguments = dict(idx=prompt, max_new_tokens=3) | kwargs
    with pytest.raises(ValueError, match=name):
        generate(model, **arguments)


def test_non_finite_logits_are_refused_not_picked():
    nan = torch.tensor([[0.0, float("nan"), 1.0]])
    for greedy in (True, False):
        with pytest.raises(ValueError, match="logits must not hold NaN or \\+inf"):
            sample_next_token(nan, greedy=greedy)
    with pytest.raises(ValueError, match="at least one token per row"):
        sample_next_token(torch.full((2, 3), float("-inf")))
    masked = torch.tensor([[float("-inf"), 0.0, float("-inf")]])  # -inf for some tokens is a mask, not an error
    assert sample_next_token(masked, greedy=True).item() == 1 and sample_next_token(masked).item() == 1


@pytest.mark.parametrize("logits", [torch.randn(2, 50), -torch.rand(2, 50) - 1])
def test_a_temperature_that_overflows_the_logits_is_a_value_error(logits):
    with pytest.raises(ValueError, match="temperature=1e-45 is too small for these logits"):
        sample_next_token(logits, temperature=1e-45)


def test_a_top_p_below_the_smallest_float32_keeps_the_likeliest_token():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    for p in (1e-300, 1e-46):
        assert torch.equal(sample_next_token(logits, top_p=p), logits.argmax(dim=-1))


def test_greedy_ignores_temperature(model, prompt):
    greedy = generate(model, prompt, 4, greedy=True)
    assert torch.equal(generate(model, prompt, 4, greedy=True, temperature=0.0), greedy)
