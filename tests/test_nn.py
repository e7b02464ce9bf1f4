"""Torch models: attention paths agree, causality, padding, KV cache, equality with Hugging Face's GPT-2 and BERT."""

import math
import re

import numpy as np
import pytest
import torch
from bert_helpers import TINY_BERT, bert_inputs, hf_bert_config, randomize
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_llm.interop import bert_state_from_hf
from mini_llm.nn import (
    GPT,
    BertConfig,
    BertEncoder,
    BertForMaskedLM,
    BertForSequenceClassification,
    GPTConfig,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    attention,
    causal_mask,
    padding_mask,
    sinusoidal_positions,
)

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    fields = dict(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(**{**fields, **overrides})).eval()


def tiny_bert_config(**overrides) -> BertConfig:
    fields = dict(TINY_BERT, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertConfig(**{**fields, **overrides})


def tiny_seq2seq(**overrides) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    fields = dict(src_vocab_size=40, tgt_vocab_size=30, block_size=24, d_model=32, n_head=4, d_ff=64, dropout=0.0)
    return Seq2SeqTransformer(Seq2SeqConfig(**{**fields, **overrides})).eval()


def random_qkv(B=2, H=3, T=5, S=5, D=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(B, H, T, D, generator=g, dtype=dtype)
    k = torch.randn(B, H, S, D, generator=g, dtype=dtype)
    v = torch.randn(B, H, S, D, generator=g, dtype=dtype)
    return q, k, v


# ---------------------------------------------------------------- attention


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["none", "causal", "padding", "causal+padding", "causal-cached", "additive"])
def test_sdpa_and_math_paths_agree(dtype, case):
    T, S = (3, 7) if case == "causal-cached" else (6, 6)
    q, k, v = random_qkv(T=T, S=S, dtype=dtype)
    mask, is_causal = None, case.startswith("causal")
    if "padding" in case:
        mask = padding_mask(torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]))
    if case == "additive":
        mask = torch.randn(2, 1, T, S, dtype=dtype)
    y_sdpa, w_sdpa = attention(q, k, v, mask=mask, is_causal=is_causal, impl="sdpa")
    y_math, w_math = attention(q, k, v, mask=mask, is_causal=is_causal, impl="math")
    assert w_sdpa is None and w_math.shape == (2, 3, T, S)
    assert y_sdpa.shape == y_math.shape == (2, 3, T, 8)
    assert (y_sdpa - y_math).abs().max().item() <= TOL[dtype]


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 3),
    H=st.integers(1, 4),
    T=st.integers(1, 9),
    extra=st.integers(0, 4),
    D=st.sampled_from([1, 4, 16]),
    causal=st.booleans(),
)
def test_sdpa_and_math_agree_on_any_shape(B, H, T, extra, D, causal):
    q, k, v = random_qkv(B, H, T, T + extra, D, dtype=torch.float64)
    y_sdpa, _ = attention(q, k, v, is_causal=causal, impl="sdpa")
    y_math, weights = attention(q, k, v, is_causal=causal, impl="math")
    assert (y_sdpa - y_math).abs().max().item() <= 1e-12
    assert torch.allclose(weights.sum(-1), torch.ones((), dtype=torch.float64), atol=1e-12)


def test_math_path_is_the_formula():
    q, k, v = random_qkv(B=1, H=1, T=2, S=3, D=4, dtype=torch.float64)
    y, weights = attention(q, k, v, impl="math")
    for i in range(2):
        scores = [float(q[0, 0, i] @ k[0, 0, j]) / math.sqrt(4) for j in range(3)]
        expected = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
        assert weights[0, 0, i].tolist() == pytest.approx(expected, abs=1e-14)
        assert torch.allclose(y[0, 0, i], sum(w * v[0, 0, j] for j, w in enumerate(expected)), atol=1e-14)


def test_causal_weights_sum_to_one_and_vanish_above_the_diagonal():
    q, k, v = random_qkv(T=6, S=6)
    _, weights = attention(q, k, v, is_causal=True, need_weights=True)
    assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-6)
    assert torch.all(weights.triu(diagonal=1) == 0)
    assert torch.all(weights[..., causal_mask(6, 6)] > 0)


def test_causal_mask_is_bottom_right_aligned_for_a_cache():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert causal_mask(3, 3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    with pytest.raises(ValueError, match="n_keys"):
        causal_mask(4, 2)


def test_padded_keys_get_no_weight_and_a_fully_masked_row_stays_finite():
    q, k, v = random_qkv(T=4, S=4)
    mask = padding_mask(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]))
    y, weights = attention(q, k, v, mask=mask, impl="math")
    assert torch.all(weights[0, :, :, 2:] == 0)
    assert torch.allclose(weights[1], torch.full((), 0.25))  # nothing to attend to: uniform, not NaN
    assert torch.isfinite(y).all()


def test_attention_rejects_bad_arguments():
    q, k, v = random_qkv()
    with pytest.raises(ValueError, match="attn_impl"):
        attention(q, k, v, impl="flash")
    with pytest.raises(TypeError, match="mask"):
        attention(q, k, v, mask=torch.ones(5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        padding_mask(torch.ones(5))


# ---------------------------------------------------------------- GPT


def test_gpt_shapes_and_loss():
    model = tiny_gpt()
    idx = torch.randint(0, 50, (3, 10), generator=torch.Generator().manual_seed(1))
    targets = idx.roll(-1, dims=1)
    targets[:, -1] = -100
    out = model(idx, targets)
    assert out.logits.shape == (3, 10, 50)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 50), targets[:, :-1].reshape(-1))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert abs(out.loss.item() - math.log(50)) < 0.5  # a fresh model is close to uniform
    assert out.past_key_values is None and out.attentions is None


def test_gpt_is_causal():
    model = tiny_gpt()
    idx = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(2))
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 50
    a, b = model(idx).logits, model(changed).logits
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpt_sdpa_and_math_agree(dtype):
    sdpa = tiny_gpt().to(dtype)
    math_model = tiny_gpt(attn_impl="math").to(dtype)
    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(3))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (sdpa(idx).logits - math_model(idx).logits).abs().max().item() <= tol


def test_gpt_attention_weights_for_visualisation():
    model = tiny_gpt()
    idx = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(4))
    out = model(idx, return_attention=True)
    assert len(out.attentions) == 2
    for weights in out.attentions:
        assert weights.shape == (2, 2, 9, 9)
        assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-6)
        assert torch.all(weights.triu(diagonal=1) == 0)
    assert (out.logits - model(idx).logits).abs().max().item() <= 1e-5


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_gpt_kv_cache_gives_the_logits_of_a_full_pass(attn_impl):
    model = tiny_gpt(attn_impl=attn_impl)
    idx = torch.randint(0, 50, (2, 14), generator=torch.Generator().manual_seed(5))
    full = model(idx).logits
    out = model(idx[:, :6], use_cache=True)
    pieces = [out.logits]
    for start, stop in [(6, 9), (9, 10), (10, 11), (11, 14)]:  # chunks of several tokens and single tokens
        out = model(idx[:, start:stop], past_key_values=out.past_key_values, use_cache=True)
        pieces.append(out.logits)
    assert out.past_key_values[0][0].shape == (2, 2, 14, 16)
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() <= 1e-5


def test_gpt_rejects_sequences_longer_than_block_size():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    cache = model(torch.zeros(1, 32, dtype=torch.long), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="exceeds block_size 32"):
        model(torch.zeros(1, 1, dtype=torch.long), past_key_values=cache)
    with pytest.raises(ValueError, match="idx"):
        model(torch.zeros(5, dtype=torch.long))


def test_gpt_weight_tying_and_parameter_count():
    tied, untied = tiny_gpt(), tiny_gpt(tie_weights=False)
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    # per block: 2 LayerNorms (2C each), c_attn (3C² + 3C), c_proj (C² + C), c_fc (4C² + 4C), c_proj (4C² + C)
    C, V = 32, 50
    per_block = 12 * C * C + 13 * C
    assert tied.num_params() == V * C + 2 * per_block + 2 * C
    assert tied.num_params(non_embedding=False) == tied.num_params() + 32 * C
    assert untied.num_params() == tied.num_params() + V * C


def test_gpt_config_rejects_bad_values():
    with pytest.raises(ValueError, match="n_embd must be divisible by n_head"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(activation="swish")
    with pytest.raises(ValueError, match="attn_impl"):
        GPTConfig(attn_impl="flash")
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.5)


def test_param_count_is_what_the_model_has_without_building_it():
    for changes in ({}, dict(bias=False, tie_weights=False, n_inner=40)):
        config = GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=32, **changes)
        assert config.param_count() == GPT(config).num_params(non_embedding=False)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (dict(bias="no"), TypeError, "bias must be True or False, got 'no'"),
        (dict(tie_weights=1), TypeError, "tie_weights must be True or False"),
        (dict(layer_norm_epsilon=-1e-5), ValueError, "layer_norm_epsilon must be a finite number > 0"),
        (dict(layer_norm_epsilon=float("nan")), ValueError, "layer_norm_epsilon must be a finite number > 0"),
        (dict(layer_norm_epsilon="1e-5"), ValueError, "layer_norm_epsilon must be a finite number > 0"),
        (dict(n_layer=2.0), TypeError, "n_layer must be an integer >= 1, got 2.0"),
        (dict(n_layer="2"), TypeError, "n_layer must be an integer >= 1, got '2'"),
        (dict(n_layer=True), TypeError, "n_layer must be an integer >= 1, got True"),
        (dict(n_inner=2.5), TypeError, "n_inner must be None or an integer >= 1"),
        (dict(dropout="0.1"), ValueError, "dropout must be a number in"),
        (dict(vocab_size=0), ValueError, "vocab_size must be >= 1, got 0"),
    ],
)
def test_gpt_config_checks_types(changes, error, message):
    with pytest.raises(error, match=message):
        GPTConfig(**changes)
    assert GPTConfig(n_layer=np.int64(2), dropout=np.float64(0.1), layer_norm_epsilon=1).n_layer == 2  # numpy numbers


def test_gpt_without_biases_trains_one_step():
    model = tiny_gpt(bias=False, dropout=0.1).train()
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    idx = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(6))
    loss = model(idx, idx.roll(-1, 1)).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def copy_hf_gpt2(model: GPT, hf) -> None:
    """Load a transformers GPT2LMHeadModel's weights into GPT (Conv1D weights are stored transposed)."""
    state = {}
    for name, tensor in hf.state_dict().items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers of older versions
            continue
        state[name] = tensor.t() if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name) else tensor
    model.load_state_dict(state, strict=True)


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_gpt_equals_transformers_gpt2(attn_impl):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf_config = GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=50, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    hf = randomize(GPT2LMHeadModel(hf_config).eval())
    model = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=32, attn_impl=attn_impl)).eval()
    copy_hf_gpt2(model, hf)
    idx = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = hf(idx).logits
        got = model(idx).logits
        assert (got - expected).abs().max().item() <= 1e-5
        # and one token at a time through the KV cache
        out = model(idx[:, :10], use_cache=True)
        out = model(idx[:, 10:11], past_key_values=out.past_key_values, use_cache=True)
        assert (out.logits[:, 0] - expected[:, 10]).abs().max().item() <= 1e-5


# ---------------------------------------------------------------- BERT


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_bert_encoder_equals_transformers_bert(attn_impl):
    from transformers import BertModel

    torch.manual_seed(0)
    hf = BertModel(hf_bert_config())
    randomize(hf.eval())
    model = BertEncoder(tiny_bert_config(attn_impl=attn_impl)).eval()
    model.load_state_dict(bert_state_from_hf(hf.state_dict()), strict=True)
    input_ids, attention_mask, token_type_ids = bert_inputs()
    with torch.no_grad():
        expected = hf(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        got = model(input_ids, attention_mask, token_type_ids)
    assert (got.last_hidden_state - expected.last_hidden_state).abs().max().item() <= 1e-5
    assert (got.pooler_output - expected.pooler_output).abs().max().item() <= 1e-5


def test_bert_masked_lm_equals_transformers():
    from transformers import BertForMaskedLM as HFBertForMaskedLM

    torch.manual_seed(0)
    hf = HFBertForMaskedLM(hf_bert_config())
    randomize(hf.eval())
    model = BertForMaskedLM(tiny_bert_config()).eval()
    state = bert_state_from_hf(hf.state_dict(), prefix="bert.")
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert set(missing) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"} and not unexpected
    assert model.mlm.decoder.weight is model.bert.embeddings.word_embeddings.weight
    input_ids, attention_mask, token_type_ids = bert_inputs()
    with torch.no_grad():
        expected = hf(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        got = model(input_ids, attention_mask, token_type_ids).logits
    assert (got - expected).abs().max().item() <= 1e-5


def test_bert_loads_a_transformers_model_of_all_minilm_l6_v2_shape():
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel

    shape = dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
    hf = BertModel(HFBertConfig(**shape))
    model = BertEncoder(BertConfig(**shape))
    model.load_state_dict(bert_state_from_hf(hf.state_dict()), strict=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hf.parameters()) == 22_713_216


def test_config_defaults_match_transformers():
    from transformers import BertConfig as HFBertConfig
    from transformers import GPT2Config

    ours, theirs = BertConfig(), HFBertConfig()
    for name in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "layer_norm_eps",
        "pad_token_id",
        "initializer_range",
    ):
        assert getattr(ours, name) == getattr(theirs, name), name
    gpt, gpt2 = GPTConfig(), GPT2Config()
    assert (gpt.vocab_size, gpt.block_size, gpt.n_layer, gpt.n_head, gpt.n_embd, gpt.n_inner) == (
        gpt2.vocab_size,
        gpt2.n_positions,
        gpt2.n_layer,
        gpt2.n_head,
        gpt2.n_embd,
        gpt2.n_inner,
    )
    assert (gpt.activation, gpt.layer_norm_epsilon) == (gpt2.activation_function, gpt2.layer_norm_epsilon)


def test_bert_ignores_the_content_of_padding():
    torch.manual_seed(0)
    model = BertEncoder(tiny_bert_config()).eval()
    input_ids, attention_mask, _ = bert_inputs()
    scrambled = input_ids.clone()
    scrambled[attention_mask == 0] = 7
    a = model(input_ids, attention_mask).last_hidden_state
    b = model(scrambled, attention_mask).last_hidden_state
    keep = attention_mask.bool()
    assert (a[keep] - b[keep]).abs().max().item() <= 1e-6
    assert not torch.allclose(model(scrambled).last_hidden_state[keep], a[keep])  # without the mask it matters


def test_bert_attention_weights_skip_padding():
    torch.manual_seed(0)
    model = BertEncoder(tiny_bert_config()).eval()
    input_ids, attention_mask, _ = bert_inputs()
    out = model(input_ids, attention_mask, return_attention=True)
    assert len(out.attentions) == 2
    for weights in out.attentions:
        assert weights.shape == (3, 4, 12, 12)
        assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-6)
        assert torch.all(weights[2, :, :, 3:] == 0)
    assert (out.last_hidden_state - model(input_ids, attention_mask).last_hidden_state).abs().max().item() <= 1e-5


def test_bert_heads_train():
    torch.manual_seed(0)
    config = tiny_bert_config(num_labels=3)
    input_ids, attention_mask, token_type_ids = bert_inputs()
    mlm = BertForMaskedLM(config)
    labels = torch.full_like(input_ids, -100)
    labels[:, 1] = input_ids[:, 1]
    out = mlm(input_ids, attention_mask, token_type_ids, labels=labels)
    assert out.logits.shape == (3, 12, 60) and out.loss.ndim == 0
    out.loss.backward()
    assert mlm.bert.embeddings.word_embeddings.weight.grad is not None
    classifier = BertForSequenceClassification(config)
    classifier.bert.load_state_dict(mlm.bert.state_dict())  # pre-train, then fine-tune
    out = classifier(input_ids, attention_mask, token_type_ids, labels=torch.tensor([0, 2, 1]))
    assert out.logits.shape == (3, 3) and out.loss.item() > 0
    out.loss.backward()
    assert classifier.classifier.weight.grad is not None


def test_bert_rejects_bad_inputs():
    model = BertEncoder(tiny_bert_config()).eval()
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.ones(2, 5, dtype=torch.long), torch.ones(2, 4))
    with pytest.raises(ValueError, match="hidden_size must be divisible"):
        BertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="pad_token_id"):
        BertConfig(vocab_size=10, pad_token_id=10)


# ---------------------------------------------------------------- encoder-decoder


def seq2seq_inputs():
    g = torch.Generator().manual_seed(9)
    src = torch.randint(1, 40, (2, 10), generator=g)
    src_mask = torch.ones(2, 10, dtype=torch.long)
    src_mask[1, 6:] = 0
    src[src_mask == 0] = 0
    tgt = torch.randint(1, 30, (2, 8), generator=g)
    return src, src_mask, tgt


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_seq2seq_shapes_and_loss(norm_first, positions):
    model = tiny_seq2seq(norm_first=norm_first, positions=positions)
    src, src_mask, tgt = seq2seq_inputs()
    out = model(src, tgt, src_mask, targets=tgt.roll(-1, 1))
    assert out.logits.shape == (2, 8, 30)
    assert out.loss.ndim == 0 and abs(out.loss.item() - math.log(30)) < 1.5
    assert isinstance(model.enc_ln, torch.nn.LayerNorm) == norm_first
    assert model.lm_head.weight is model.tgt_embed.weight


@pytest.mark.parametrize("norm_first", [False, True])
def test_seq2seq_decoder_is_causal_in_the_target(norm_first):
    model = tiny_seq2seq(norm_first=norm_first)
    src, src_mask, tgt = seq2seq_inputs()
    changed = tgt.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 30
    a = model(src, tgt, src_mask).logits
    b = model(src, changed, src_mask).logits
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("norm_first", [False, True])
def test_seq2seq_ignores_masked_source_padding(norm_first):
    model = tiny_seq2seq(norm_first=norm_first)
    src, src_mask, tgt = seq2seq_inputs()
    scrambled = src.clone()
    scrambled[1, 6:] = torch.arange(6, 10)
    a = model(src, tgt, src_mask).logits
    b = model(scrambled, tgt, src_mask).logits
    assert (a - b).abs().max().item() <= 1e-6
    assert not torch.allclose(model(scrambled, tgt).logits[1], a[1])  # without the mask it matters


def test_seq2seq_ignores_masked_target_padding():
    model = tiny_seq2seq()
    src, src_mask, tgt = seq2seq_inputs()
    tgt_mask = torch.ones_like(tgt)
    tgt_mask[:, :2] = 0  # left padding
    scrambled = tgt.clone()
    scrambled[:, :2] = 3
    a = model(src, tgt, src_mask, tgt_mask).logits
    b = model(src, scrambled, src_mask, tgt_mask).logits
    assert (a[:, 2:] - b[:, 2:]).abs().max().item() <= 1e-6


def test_seq2seq_attention_paths_and_weights():
    sdpa, math_model = tiny_seq2seq(), tiny_seq2seq(attn_impl="math")
    src, src_mask, tgt = seq2seq_inputs()
    a = sdpa(src, tgt, src_mask).logits
    out = math_model(src, tgt, src_mask, return_attention=True)
    assert (a - out.logits).abs().max().item() <= 1e-5
    assert [w.shape for w in out.encoder_attentions] == [(2, 4, 10, 10)] * 2
    assert [w.shape for w in out.decoder_attentions] == [(2, 4, 8, 8)] * 2
    assert [w.shape for w in out.cross_attentions] == [(2, 4, 8, 10)] * 2
    for weights in out.decoder_attentions:
        assert torch.all(weights.triu(diagonal=1) == 0)
    for weights in out.encoder_attentions + out.cross_attentions:
        assert torch.all(weights[1, :, :, 6:] == 0)
        assert torch.allclose(weights.sum(-1), torch.ones(()), atol=1e-6)


@pytest.mark.parametrize(("norm_first", "attn_impl"), [(False, "sdpa"), (True, "sdpa"), (False, "math")])
def test_seq2seq_kv_cache_gives_the_logits_of_a_full_pass(norm_first, attn_impl):
    model = tiny_seq2seq(norm_first=norm_first, positions="learned", attn_impl=attn_impl)
    src, src_mask, tgt = seq2seq_inputs()
    full = model(src, tgt, src_mask).logits
    memory = model.encode(src, src_mask).memory
    out = model.decode(tgt[:, :3], memory, src_mask, use_cache=True)
    pieces = [out.logits]
    for start, stop in [(3, 5), (5, 6), (6, 8)]:
        out = model.decode(tgt[:, start:stop], memory, src_mask, past_key_values=out.past_key_values, use_cache=True)
        pieces.append(out.logits)
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() <= 1e-5


def test_seq2seq_rejects_bad_inputs():
    model = tiny_seq2seq()
    src, src_mask, tgt = seq2seq_inputs()
    with pytest.raises(ValueError, match="source sequence length 25 exceeds block_size 24"):
        model(torch.ones(1, 25, dtype=torch.long), tgt[:1])
    with pytest.raises(ValueError, match="src_padding_mask"):
        model(src, tgt, src_mask[:, :5])
    with pytest.raises(ValueError, match="positions"):
        Seq2SeqConfig(positions="rotary")


def test_sinusoidal_positions_follow_the_paper():
    table = sinusoidal_positions(50, 16)
    for pos, i in [(0, 0), (3, 0), (7, 2), (49, 7)]:
        angle = pos / 10000 ** (2 * i / 16)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
