"""Convert transformers' BertModel (and its masked-LM and classification heads) into mini_llm's BERT.

The architectures are the same; only names differ (see the table in ``mini_llm.nn.bert``): BERT_NAME_MAP below
renames Hugging Face's keys to mini_llm's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mini_llm.interop.common import (
    activation_from_hf,
    check_model_type,
    config_fields,
    fields_or_defaults,
    load_converted,
    reject,
)
from mini_llm.nn.bert import BertConfig, BertEncoder, BertForMaskedLM, BertForSequenceClassification

if TYPE_CHECKING:
    from transformers import BertConfig as HFBertConfig

# (pattern, replacement) applied in order to each Hugging Face name, after its "bert." prefix is removed.
BERT_NAME_MAP = [
    (r"^embeddings\.LayerNorm\.", "embeddings.ln."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.", r"layers.\1.attn."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn.c_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.ln_1."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.mlp.c_fc."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.mlp.c_proj."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.ln_2."),
    (r"^cls\.predictions\.transform\.dense\.", "mlm.dense."),
    (r"^cls\.predictions\.transform\.LayerNorm\.", "mlm.ln."),
    (r"^cls\.predictions\.decoder\.", "mlm.decoder."),
    (r"^cls\.predictions\.bias$", "mlm.decoder.bias"),  # the same tensor as cls.predictions.decoder.bias
]
SAME_NAMED_FIELDS = (  # BertConfig fields that transformers' BertConfig has under the same name
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
    "initializer_range",
)
HF_BERT_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # index buffers, not weights
HEAD_PREFIXES = ("mlm.", "classifier.")  # mini_llm names that live next to .bert, not inside it


def bert_config_from_hf(hf_config: HFBertConfig | Mapping[str, Any], attn_impl: str = "sdpa") -> BertConfig:
    """A BertConfig equal to a transformers BertConfig (or its config.json); ValueError for what mini_llm lacks."""
    fields = config_fields(hf_config)
    check_model_type(fields, "bert")
    reject(fields, "position_embedding_type", "absolute", "absolute")
    reject(fields, "is_decoder", False, False)
    reject(fields, "add_cross_attention", False, False)
    if fields.get("pad_token_id", 0) is None:
        raise ValueError("pad_token_id=None is not supported by mini_llm; it needs the id of [PAD]")
    defaults = BertConfig()
    hidden_dropout = fields.get("hidden_dropout_prob", defaults.hidden_dropout_prob)
    classifier_dropout = fields.get("classifier_dropout")
    if classifier_dropout is not None and classifier_dropout != hidden_dropout:
        raise ValueError(
            f"classifier_dropout={classifier_dropout!r} is not supported by mini_llm, whose classifier uses "
            f"hidden_dropout_prob={hidden_dropout!r}; set it to None or to hidden_dropout_prob"
        )
    id2label = fields.get("id2label")
    return BertConfig(
        **fields_or_defaults(fields, defaults, {name: name for name in SAME_NAMED_FIELDS}),
        hidden_act=activation_from_hf("hidden_act", fields.get("hidden_act", defaults.hidden_act)),
        hidden_dropout_prob=hidden_dropout,
        num_labels=len(id2label) if id2label else fields.get("num_labels", defaults.num_labels),
        attn_impl=attn_impl,
    )


def bert_state_from_hf(hf_state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Rename a transformers BERT state dict to mini_llm's; prefix is "" for BertEncoder, "bert." for the heads."""
    state = {}
    for name, tensor in hf_state.items():
        if name.endswith(HF_BERT_BUFFERS):
            continue
        bare = name.removeprefix("bert.")
        for pattern, replacement in BERT_NAME_MAP:
            bare = re.sub(pattern, replacement, bare)
        state[bare if bare.startswith(HEAD_PREFIXES) else prefix + bare] = tensor
    return state


def _keep_own_pooler(state: dict[str, torch.Tensor], encoder: BertEncoder, prefix: str) -> None:
    """Models without a pooler (BertForMaskedLM, add_pooling_layer=False) leave mini_llm's at its initialisation."""
    for name, param in encoder.pooler.dense.named_parameters():
        state.setdefault(f"{prefix}pooler.dense.{name}", param.detach())


def _check_classification(fields: Mapping[str, Any]) -> None:
    """mini_llm's classifier trains with cross-entropy: single-label classification with at least two labels."""
    problem_type = fields.get("problem_type")
    if problem_type not in (None, "single_label_classification"):
        raise ValueError(f"problem_type={problem_type!r} is not supported by mini_llm; only single-label")
    id2label = fields.get("id2label") or {}
    if len(id2label) == 1:
        raise ValueError("num_labels=1 (regression in transformers) is not supported by mini_llm; it needs >= 2")


def bert_from_hf(
    model: nn.Module, attn_impl: str = "sdpa"
) -> BertEncoder | BertForMaskedLM | BertForSequenceClassification:
    """A copy of a transformers BERT as mini_llm's: BertModel -> BertEncoder, and the heads of the same name.

    BertForMaskedLM -> BertForMaskedLM; BertForSequenceClassification -> BertForSequenceClassification.
    Same device, dtype and train/eval mode. Where transformers' model has no pooler (BertForMaskedLM, or
    add_pooling_layer=False), mini_llm's keeps its initialisation; every other key must match (strict load).
    """
    from transformers import BertForMaskedLM as HFBertForMaskedLM
    from transformers import BertForSequenceClassification as HFBertForSequenceClassification
    from transformers import BertModel

    if not isinstance(model, BertModel | HFBertForMaskedLM | HFBertForSequenceClassification):
        raise TypeError(
            "model must be a transformers BertModel, BertForMaskedLM or BertForSequenceClassification, "
            f"got {type(model).__name__}"
        )
    config = bert_config_from_hf(model.config, attn_impl=attn_impl)
    fields = config_fields(model.config)
    if isinstance(model, BertModel):
        target: BertEncoder | BertForMaskedLM | BertForSequenceClassification = BertEncoder(config)
        prefix, encoder = "", target
    elif isinstance(model, HFBertForMaskedLM):
        reject(fields, "tie_word_embeddings", True, True)  # mini_llm's decoder always shares the word embedding
        target = BertForMaskedLM(config)
        prefix, encoder = "bert.", target.bert
    else:
        _check_classification(fields)
        target = BertForSequenceClassification(config)
        prefix, encoder = "bert.", target.bert
    state = bert_state_from_hf(model.state_dict(), prefix=prefix)
    _keep_own_pooler(state, encoder, prefix)
    return load_converted(target, state, like=model)
