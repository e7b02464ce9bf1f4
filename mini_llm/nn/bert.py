"""A BERT encoder (Devlin et al., 2019) with the exact architecture of Hugging Face's BertModel, plus two small heads.

Embeddings: word + position + token type (segment), summed, then LayerNorm and dropout.
Each layer is post-LN: x = LN(x + attn(x)), x = LN(x + FFN(x)). The pooler is tanh(dense(h[:, 0])).

Parameter names, against Hugging Face's BertModel (N = layer index):

| mini_llm BertEncoder                         | transformers BertModel                                   |
|----------------------------------------------|----------------------------------------------------------|
| embeddings.{word,position,token_type}_embeddings | embeddings.{word,position,token_type}_embeddings     |
| embeddings.ln                                | embeddings.LayerNorm                                     |
| layers.N.attn.{query,key,value}              | encoder.layer.N.attention.self.{query,key,value}         |
| layers.N.attn.c_proj                         | encoder.layer.N.attention.output.dense                   |
| layers.N.ln_1                                | encoder.layer.N.attention.output.LayerNorm               |
| layers.N.mlp.c_fc                            | encoder.layer.N.intermediate.dense                       |
| layers.N.mlp.c_proj                          | encoder.layer.N.output.dense                             |
| layers.N.ln_2                                | encoder.layer.N.output.LayerNorm                         |
| pooler.dense                                 | pooler.dense                                             |

BertForMaskedLM's head: mlm.dense, mlm.ln, mlm.decoder <-> cls.predictions.transform.dense,
cls.predictions.transform.LayerNorm, cls.predictions.decoder (bias: cls.predictions.bias).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm.nn.attention import padding_mask
from mini_llm.nn.layers import EncoderLayer, activation, check_config, init_weights


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder, with Hugging Face's field names; the defaults are BERT-base."""

    vocab_size: int = 30522  # number of token ids (BERT's uncased WordPiece vocabulary)
    hidden_size: int = 768  # model width C
    num_hidden_layers: int = 12  # number of encoder layers
    num_attention_heads: int = 12  # attention heads per layer; each has C / heads dimensions
    intermediate_size: int = 3072  # hidden width of the feed-forward network
    hidden_act: str = "gelu"  # FFN non-linearity: "gelu" (exact erf, BERT), "gelu_new" (tanh) or "relu"
    hidden_dropout_prob: float = 0.1  # dropout on the embeddings and on each sub-layer output
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention weights
    max_position_embeddings: int = 512  # longest sequence: the size of the learned position table
    type_vocab_size: int = 2  # number of segment ids (sentence A = 0, sentence B = 1)
    layer_norm_eps: float = 1e-12  # ε added to the variance in every LayerNorm
    pad_token_id: int = 0  # id of [PAD]: its word embedding starts at 0 and receives no gradient
    initializer_range: float = 0.02  # standard deviation of the normal weight initialisation
    num_labels: int = 2  # number of classes of BertForSequenceClassification
    attn_impl: str = "sdpa"  # "sdpa" (torch's fused kernel) or "math" (the explicit formula)

    def __post_init__(self) -> None:
        sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size", "num_labels")
        dropouts = ("hidden_dropout_prob", "attention_probs_dropout_prob")
        check_config(self, sizes, "hidden_size", "num_attention_heads", dropouts, "hidden_act")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id must be in [0, {self.vocab_size}), got {self.pad_token_id}")


@dataclass
class BertOutput:
    """What BertEncoder.forward returns (Hugging Face's names)."""

    last_hidden_state: torch.Tensor  # (B, T, C)
    pooler_output: torch.Tensor  # (B, C): tanh(dense(h[:, 0])), the [CLS] summary
    attentions: list[torch.Tensor] | None = None  # per layer (B, H, T, T), when return_attention=True


@dataclass
class BertHeadOutput:
    """What the heads (masked LM, sequence classification) return."""

    logits: torch.Tensor  # (B, T, vocab_size) for the masked LM, (B, num_labels) for classification
    loss: torch.Tensor | None = None  # mean cross-entropy over labels != -100, when labels are given
    attentions: list[torch.Tensor] | None = None  # per layer (B, H, T, T), when return_attention=True


class BertEmbeddings(nn.Module):
    """LN(word + position + token type embeddings), then dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T), token_type_ids (B, T) or None (all 0) -> (B, T, C)."""
        T = input_ids.size(1)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)  # (B, T)
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        x = self.word_embeddings(input_ids) + self.position_embeddings(pos)  # (B, T, C)
        x = x + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        return self.dropout(self.ln(x))  # (B, T, C)


class BertPooler(nn.Module):
    """tanh(dense(h[:, 0])): the hidden state of the first ([CLS]) token, transformed."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, C)."""
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, C)


class BertEncoder(nn.Module):
    """BERT: input_ids (B, T) -> last_hidden_state (B, T, C) and pooler_output (B, C)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            [
                EncoderLayer(
                    d_model=config.hidden_size,
                    n_head=config.num_attention_heads,
                    d_ff=config.intermediate_size,
                    act=config.hidden_act,
                    dropout=config.hidden_dropout_prob,
                    attn_dropout=config.attention_probs_dropout_prob,
                    layer_norm_eps=config.layer_norm_eps,
                    norm_first=False,
                    attn_impl=config.attn_impl,
                )
                for _ in range(config.num_hidden_layers)
            ]
        )
        self.pooler = BertPooler(config)
        self.apply(partial(init_weights, std=config.initializer_range))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> BertOutput:
        """input_ids (B, T); attention_mask (B, T): 1 for tokens, 0 for padding (None: no padding)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (B, T), got {tuple(input_ids.shape)}")
        T = input_ids.size(1)
        if T > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {T} exceeds max_position_embeddings {self.config.max_position_embeddings}"
            )
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        mask = padding_mask(attention_mask) if attention_mask is not None else None  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        attentions: list[torch.Tensor] | None = [] if return_attention else None
        for layer in self.layers:
            x, weights = layer(x, mask, need_weights=return_attention)  # (B, T, C)
            if attentions is not None:
                attentions.append(weights)
        return BertOutput(last_hidden_state=x, pooler_output=self.pooler(x), attentions=attentions)


class BertMLMHead(nn.Module):
    """Masked-LM head: decoder(LN(act(dense(h)))) -> logits over the vocabulary."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.ln = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)  # weight tied to the word embedding

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, vocab_size)."""
        h = self.ln(self.act(self.dense(hidden)))  # (B, T, C)
        return self.decoder(h)  # (B, T, vocab_size)


class _BertWithHead(nn.Module):
    """A BertEncoder ``self.bert`` and a task head: forward runs the encoder, then the subclass's ``head``."""

    bert: BertEncoder

    def head(self, out: BertOutput, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, loss or None without labels) of the encoder's output."""
        raise NotImplementedError

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> BertHeadOutput:
        """The head's logits and loss (see ``head``) for the inputs of BertEncoder.forward."""
        out = self.bert(input_ids, attention_mask, token_type_ids, return_attention)
        logits, loss = self.head(out, labels)
        return BertHeadOutput(logits=logits, loss=loss, attentions=out.attentions)


class BertForMaskedLM(_BertWithHead):
    """BertEncoder + masked-LM head, for pre-training: predict the tokens at masked positions."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertEncoder(config)
        self.mlm = BertMLMHead(config)
        self.mlm.apply(partial(init_weights, std=config.initializer_range))
        nn.init.zeros_(self.mlm.decoder.bias)
        self.mlm.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def head(self, out: BertOutput, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab_size); labels (B, T) hold the original ids at masked positions and -100 elsewhere."""
        logits = self.mlm(out.last_hidden_state)  # (B, T, vocab_size)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)  # scalar
        return logits, loss


class BertForSequenceClassification(_BertWithHead):
    """BertEncoder + dropout + a linear classifier on the pooler output, for fine-tuning."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertEncoder(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        init_weights(self.classifier, std=config.initializer_range)

    def head(self, out: BertOutput, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits (B, num_labels); labels (B,) are class ids."""
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = F.cross_entropy(logits, labels) if labels is not None else None  # scalar
        return logits, loss
