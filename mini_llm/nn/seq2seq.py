"""The encoder-decoder Transformer of Vaswani et al. (2017), "Attention Is All You Need".

Encoder layer: self-attention, FFN. Decoder layer: masked (causal) self-attention, cross-attention over the
encoder output (the "memory"), FFN. Each sub-layer has a residual connection and a LayerNorm, after it (post-LN,
as in the paper) or before it (pre-LN, ``norm_first=True``, with a final LayerNorm on each stack).
Embeddings are multiplied by √d_model and added to sinusoidal or learned positions.

``encode`` runs the encoder once; ``decode`` runs the decoder and takes a KV cache of its self-attention
(``past_key_values``), so ``mini_llm.generation`` can decode one token at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mini_llm.nn.attention import KVCache, MultiHeadAttention, padding_mask
from mini_llm.nn.layers import MLP, EncoderLayer, check_config, init_weights, sinusoidal_positions

POSITIONS = ("sinusoidal", "learned")


@dataclass
class Seq2SeqConfig:
    """Hyper-parameters of an encoder-decoder Transformer; the defaults make a small model that trains on a CPU."""

    src_vocab_size: int = 1000  # number of source token ids
    tgt_vocab_size: int = 1000  # number of target token ids
    block_size: int = 128  # longest source or target sequence (the size of the position table)
    d_model: int = 128  # model width C
    n_head: int = 4  # attention heads per attention sub-layer; each has C / n_head dimensions
    d_ff: int = 512  # hidden width of the feed-forward network
    n_encoder_layers: int = 2  # number of encoder layers
    n_decoder_layers: int = 2  # number of decoder layers
    activation: str = "relu"  # FFN non-linearity: "relu" (the paper), "gelu" or "gelu_new"
    dropout: float = 0.1  # dropout on embeddings, attention weights and sub-layer outputs (the paper: 0.1)
    bias: bool = True  # biases in the Linear layers and LayerNorms
    layer_norm_eps: float = 1e-5  # ε added to the variance in every LayerNorm
    norm_first: bool = False  # False: post-LN, x = LN(x + f(x)) (the paper); True: pre-LN, x = x + f(LN(x))
    positions: str = "sinusoidal"  # "sinusoidal" (fixed, the paper) or "learned" (a trained table)
    tie_weights: bool = True  # the output projection shares its weight with the target embedding
    attn_impl: str = "sdpa"  # "sdpa" (torch's fused kernel) or "math" (the explicit formula)

    def __post_init__(self) -> None:
        sizes = ("src_vocab_size", "tgt_vocab_size", "block_size", "d_model", "n_head", "d_ff", "n_encoder_layers",
                 "n_decoder_layers")
        check_config(self, sizes, "d_model", "n_head", ("dropout",), "activation")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(f"d_model must be even for sinusoidal positions, got {self.d_model}")


@dataclass
class EncoderOutput:
    """What Seq2SeqTransformer.encode returns."""

    memory: torch.Tensor  # (B, S, C): the encoder's output, attended to by every decoder layer
    attentions: list[torch.Tensor] | None = None  # per encoder layer (B, H, S, S), when return_attention=True


@dataclass
class Seq2SeqOutput:
    """What Seq2SeqTransformer.forward and .decode return."""

    logits: torch.Tensor  # (B, T, tgt_vocab_size)
    loss: torch.Tensor | None = None  # mean cross-entropy over targets != -100, when targets are given
    past_key_values: KVCache | None = None  # decoder self-attention keys and values, when use_cache=True
    encoder_attentions: list[torch.Tensor] | None = None  # per encoder layer (B, H, S, S) (forward only)
    decoder_attentions: list[torch.Tensor] | None = None  # per decoder layer (B, H, T, T_total), masked self-attn
    cross_attentions: list[torch.Tensor] | None = None  # per decoder layer (B, H, T, S), over the memory


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder output, FFN; each with residual and LayerNorm."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        C, eps, bias = config.d_model, config.layer_norm_eps, config.bias
        self.norm_first = config.norm_first
        self.self_attn = MultiHeadAttention(C, config.n_head, bias, config.dropout, config.dropout, config.attn_impl)
        self.ln_1 = nn.LayerNorm(C, eps=eps, bias=bias)
        self.cross_attn = MultiHeadAttention(C, config.n_head, bias, config.dropout, config.dropout, config.attn_impl)
        self.ln_2 = nn.LayerNorm(C, eps=eps, bias=bias)
        self.mlp = MLP(C, config.d_ff, config.activation, bias, config.dropout)
        self.ln_3 = nn.LayerNorm(C, eps=eps, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        past_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_cache: bool = False,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None, torch.Tensor | None]:
        """x (B, T, C), memory (B, S, C) -> (x (B, T, C), new (k, v) cache, self weights, cross weights)."""
        h = self.ln_1(x) if self.norm_first else x  # (B, T, C)
        a, present, self_weights = self.self_attn(
            h, mask=tgt_mask, is_causal=True, past_kv=past_kv, use_cache=use_cache, need_weights=need_weights
        )  # (B, T, C)
        x = x + a if self.norm_first else self.ln_1(x + a)  # (B, T, C)
        h = self.ln_2(x) if self.norm_first else x  # (B, T, C)
        c, _, cross_weights = self.cross_attn(
            h, context=memory, mask=memory_mask, need_weights=need_weights
        )  # (B, T, C), (B, H, T, S) or None
        x = x + c if self.norm_first else self.ln_2(x + c)  # (B, T, C)
        h = self.ln_3(x) if self.norm_first else x  # (B, T, C)
        f = self.mlp(h)  # (B, T, C)
        x = x + f if self.norm_first else self.ln_3(x + f)  # (B, T, C)
        return x, present, self_weights, cross_weights


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer: src (B, S) and tgt (B, T) -> next-token logits over the target (B, T, V)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        C = config.d_model
        self.src_embed = nn.Embedding(config.src_vocab_size, C)
        self.tgt_embed = nn.Embedding(config.tgt_vocab_size, C)
        if config.positions == "learned":
            self.src_pos = nn.Embedding(config.block_size, C)
            self.tgt_pos = nn.Embedding(config.block_size, C)
        else:
            self.register_buffer("pe", sinusoidal_positions(config.block_size, C), persistent=False)  # (P, C)
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(
            [
                EncoderLayer(
                    d_model=C,
                    n_head=config.n_head,
                    d_ff=config.d_ff,
                    act=config.activation,
                    dropout=config.dropout,
                    attn_dropout=config.dropout,
                    layer_norm_eps=config.layer_norm_eps,
                    bias=config.bias,
                    norm_first=config.norm_first,
                    attn_impl=config.attn_impl,
                )
                for _ in range(config.n_encoder_layers)
            ]
        )
        self.decoder = nn.ModuleList([DecoderLayer(config) for _ in range(config.n_decoder_layers)])
        # Pre-LN leaves the residual stream un-normalised: normalise each stack's output once at the end.
        eps, bias = config.layer_norm_eps, config.bias
        self.enc_ln = nn.LayerNorm(C, eps=eps, bias=bias) if config.norm_first else nn.Identity()
        self.dec_ln = nn.LayerNorm(C, eps=eps, bias=bias) if config.norm_first else nn.Identity()
        self.lm_head = nn.Linear(C, config.tgt_vocab_size, bias=False)
        self.apply(init_weights)
        if config.tie_weights:
            self.lm_head.weight = self.tgt_embed.weight

    def _embed(self, ids: torch.Tensor, table: nn.Embedding, side: str, offset: int = 0) -> torch.Tensor:
        """table(ids) · √C + positions offset..offset+T-1, then dropout: (B, T) -> (B, T, C)."""
        T = ids.size(1)
        if offset + T > self.config.block_size:
            raise ValueError(
                f"{side} sequence length {offset + T} exceeds block_size {self.config.block_size}"
                + (f" (cached {offset} + new {T})" if offset else "")
            )
        pos = torch.arange(offset, offset + T, device=ids.device)  # (T,)
        if self.config.positions == "learned":
            p = (self.src_pos if side == "source" else self.tgt_pos)(pos)  # (T, C)
        else:
            p = self.pe[pos]  # (T, C)
        return self.drop(table(ids) * math.sqrt(self.config.d_model) + p)  # (B, T, C)

    def encode(
        self, src: torch.Tensor, src_padding_mask: torch.Tensor | None = None, return_attention: bool = False
    ) -> EncoderOutput:
        """src (B, S), src_padding_mask (B, S) of 1 (token) / 0 (padding) -> memory (B, S, C)."""
        if src.dim() != 2:
            raise ValueError(f"src must have shape (B, S), got {tuple(src.shape)}")
        mask = self._key_mask(src_padding_mask, src.shape, "src_padding_mask")  # (B, 1, 1, S) or None
        x = self._embed(src, self.src_embed, "source")  # (B, S, C)
        attentions: list[torch.Tensor] | None = [] if return_attention else None
        for layer in self.encoder:
            x, weights = layer(x, mask, need_weights=return_attention)  # (B, S, C)
            if attentions is not None:
                attentions.append(weights)
        return EncoderOutput(memory=self.enc_ln(x), attentions=attentions)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        return_attention: bool = False,
    ) -> Seq2SeqOutput:
        """Logits for every position of tgt (B, T) given the memory (B, S, C) from encode.

        With ``past_key_values`` tgt holds only the new tokens; ``tgt_padding_mask`` (B, cached + T) then covers
        the cached positions too. targets (B, T) are the next target tokens (-100 = ignore).
        """
        if tgt.dim() != 2:
            raise ValueError(f"tgt must have shape (B, T), got {tuple(tgt.shape)}")
        if past_key_values is not None and len(past_key_values) != self.config.n_decoder_layers:
            raise ValueError(
                f"past_key_values must hold one (k, v) per decoder layer ({self.config.n_decoder_layers}), "
                f"got {len(past_key_values)}"
            )
        B, T = tgt.shape
        past_len = past_key_values[0][0].size(2) if past_key_values is not None else 0
        memory_mask = self._key_mask(src_padding_mask, memory.shape[:2], "src_padding_mask")  # (B, 1, 1, S)
        tgt_mask = self._key_mask(tgt_padding_mask, (B, past_len + T), "tgt_padding_mask")  # (B, 1, 1, T_total)
        x = self._embed(tgt, self.tgt_embed, "target", offset=past_len)  # (B, T, C)
        presents: KVCache | None = [] if use_cache else None
        self_attns: list[torch.Tensor] | None = [] if return_attention else None
        cross_attns: list[torch.Tensor] | None = [] if return_attention else None
        for i, layer in enumerate(self.decoder):
            past_kv = past_key_values[i] if past_key_values is not None else None
            x, present, self_w, cross_w = layer(
                x, memory, tgt_mask, memory_mask, past_kv, use_cache, return_attention
            )  # (B, T, C)
            if presents is not None:
                presents.append(present)
            if self_attns is not None and cross_attns is not None:
                self_attns.append(self_w)
                cross_attns.append(cross_w)
        logits = self.lm_head(self.dec_ln(x))  # (B, T, tgt_vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T), ignore_index=-100)  # scalar
        return Seq2SeqOutput(
            logits=logits,
            loss=loss,
            past_key_values=presents,
            decoder_attentions=self_attns,
            cross_attentions=cross_attns,
        )

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_padding_mask: torch.Tensor | None = None,
        tgt_padding_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> Seq2SeqOutput:
        """Encode src (B, S), decode tgt (B, T) (teacher forcing): logits (B, T, tgt_vocab_size)."""
        enc = self.encode(src, src_padding_mask, return_attention)
        out = self.decode(
            tgt, enc.memory, src_padding_mask, tgt_padding_mask, targets, return_attention=return_attention
        )
        out.encoder_attentions = enc.attentions
        return out

    @staticmethod
    def _key_mask(mask: torch.Tensor | None, shape: tuple[int, ...] | torch.Size, name: str) -> torch.Tensor | None:
        """(B, S) mask of 1/0 -> boolean key mask (B, 1, 1, S), after checking its shape."""
        if mask is None:
            return None
        if tuple(mask.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
        return padding_mask(mask)  # (B, 1, 1, S)
