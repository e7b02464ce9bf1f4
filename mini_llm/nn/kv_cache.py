"""A quantized key/value cache: keys and values stored as int8 or int4 codes, one scale per head and token.

Layout (per layer, for keys and values alike): a cached tensor (B, H, S, D) is kept as codes (B, H, S, D) int8 —
int4 codes two to a byte, (B, H, S, D / 2) uint8 — plus one float16 scale per (batch, head, token), (B, H, S, 1):
the absmax of the token's D values divided by 2^(k-1) - 1 (127 for int8, 7 for int4), symmetric, rounded to
nearest (ties to even). Each token is quantized once, when it enters the cache, so a prompt fed all at once and
the same tokens fed one by one give the same cache. Memory per layer: 2 * B * H * S * (D * k / 8 + 2) bytes,
against 2 * B * H * S * D * 4 for float32.

Pass ``quantized_cache(n_layer, bits)`` as ``past_key_values`` to the first ``GPT`` call with ``use_cache=True``;
the model appends to it in place and returns the same objects.

A bounded cache for sliding-window attention (a GPT with ``attn_window=W``): ``window_cache(n_layer, W)`` holds
float keys and values of the last W - 1 positions only (all the next query may see) and counts the positions seen,
so the model keeps numbering positions from the start: memory 2 * B * H * (W - 1) * D * 4 bytes per layer whatever
the length.
"""

from __future__ import annotations

import torch

from mini_llm.helpers import check_choice, check_int

KV_BITS = (4, 8)


def quantize_tokens(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, H, T, D) -> (codes (B, H, T, D) int8 in [-(2^(k-1)-1), 2^(k-1)-1], scales (B, H, T, 1) float16)."""
    levels = 2 ** (bits - 1) - 1  # 127 or 7
    scales = (x.abs().amax(dim=-1, keepdim=True) / levels).to(torch.float16)  # (B, H, T, 1)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales)).float()  # an all-zero token keeps codes 0
    codes = torch.round(x.float() / safe).clamp_(-levels, levels).to(torch.int8)  # (B, H, T, D)
    return codes, scales


def dequantize_tokens(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """codes (B, H, S, D) and scales (B, H, S, 1) -> values (B, H, S, D) of dtype."""
    return (codes.float() * scales.float()).to(dtype)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """int8 codes in [-7, 7], (..., D) with D even -> (..., D / 2) uint8, the even index in the low nibble."""
    nibbles = (codes + 8).to(torch.uint8)  # 1..15
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """(..., D / 2) uint8 -> int8 codes (..., D)."""
    low, high = (packed & 0x0F).to(torch.int8) - 8, (packed >> 4).to(torch.int8) - 8
    return torch.stack([low, high], dim=-1).flatten(-2)


class QuantizedKV:
    """One layer's cache of keys and values as k-bit codes with a float16 scale per (batch, head, token)."""

    def __init__(self, bits: int = 8) -> None:
        self.bits = check_choice("kv bits", bits, KV_BITS)
        self.codes: list[torch.Tensor | None] = [None, None]  # keys, values: (B, H, S, D) int8 or (B, H, S, D/2)
        self.scales: list[torch.Tensor | None] = [None, None]  # (B, H, S, 1) float16
        self.dtype = torch.float32  # of the values handed back to attention

    def __len__(self) -> int:
        """Cached positions S."""
        return 0 if self.scales[0] is None else self.scales[0].size(2)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize the new keys and values (B, H, T, D), add them; return all of them dequantized (B, H, S, D)."""
        if k.dim() != 4 or k.shape != v.shape:
            raise ValueError(f"k and v must both be (B, H, T, D), got {tuple(k.shape)} and {tuple(v.shape)}")
        if self.bits == 4 and k.size(-1) % 2:
            raise ValueError(f"an int4 cache packs two codes per byte: head dimension D must be even, got {k.size(-1)}")
        self.dtype = k.dtype
        out = []
        for i, new in enumerate((k, v)):
            codes, scales = quantize_tokens(new, self.bits)  # (B, H, T, D), (B, H, T, 1)
            stored = pack_int4(codes) if self.bits == 4 else codes
            old_codes, old_scales = self.codes[i], self.scales[i]
            self.codes[i] = stored if old_codes is None else torch.cat([old_codes, stored], dim=2)
            self.scales[i] = scales if old_scales is None else torch.cat([old_scales, scales], dim=2)
            all_codes = unpack_int4(self.codes[i]) if self.bits == 4 else self.codes[i]
            out.append(dequantize_tokens(all_codes, self.scales[i], self.dtype))  # (B, H, S, D)
        return out[0], out[1]

    def nbytes(self) -> int:
        """Bytes held: codes and scales of keys and values."""
        return sum(t.numel() * t.element_size() for t in (*self.codes, *self.scales) if t is not None)


def quantized_cache(n_layer: int, bits: int = 8) -> list[QuantizedKV]:
    """An empty quantized cache for every layer, to pass as ``past_key_values`` with ``use_cache=True``."""
    check_int("n_layer", n_layer, 1)
    return [QuantizedKV(bits) for _ in range(n_layer)]


class WindowKV:
    """One layer's cache for sliding-window attention: keys and values of the last ``window - 1`` positions only."""

    def __init__(self, window: int) -> None:
        self.window = check_int("window", window, 1)
        self.seen = 0  # positions appended so far: the position of the next token
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None  # (B, H, <= window - 1, D) each

    def __len__(self) -> int:
        """Positions seen so far (not held: at most window - 1 are)."""
        return self.seen

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new keys and values (B, H, T, D); return the held ones then the new ones (B, H, S, D)."""
        keys, values = (k, v) if self.kv is None else (torch.cat([self.kv[0], k], 2), torch.cat([self.kv[1], v], 2))
        self.seen += k.size(2)
        keep = min(self.window - 1, keys.size(2))  # what the next query can still see
        self.kv = (keys[:, :, keys.size(2) - keep:], values[:, :, values.size(2) - keep:]) if keep else None
        return keys, values

    def nbytes(self) -> int:
        """Bytes held: keys and values of at most window - 1 positions."""
        return 0 if self.kv is None else sum(t.numel() * t.element_size() for t in self.kv)


def window_cache(n_layer: int, window: int) -> list[WindowKV]:
    """An empty sliding-window cache for every layer, for a GPT with ``attn_window=window`` (``use_cache=True``)."""
    check_int("n_layer", n_layer, 1)
    return [WindowKV(window) for _ in range(n_layer)]


def cache_length(layer_cache: QuantizedKV | WindowKV | tuple[torch.Tensor, torch.Tensor]) -> int:
    """Positions before the next token: what one layer's cache has seen (quantized, windowed or a (k, v) pair)."""
    return len(layer_cache) if isinstance(layer_cache, QuantizedKV | WindowKV) else layer_cache[0].size(2)


def extend_cache(
    past_kv: QuantizedKV | WindowKV | tuple[torch.Tensor, torch.Tensor] | None, k: torch.Tensor, v: torch.Tensor,
    use_cache: bool,
) -> tuple[torch.Tensor, torch.Tensor, QuantizedKV | WindowKV | tuple[torch.Tensor, torch.Tensor] | None]:
    """(keys, values) of the cached positions then the new ones, each (B, H, S, D), and the cache to hand back.

    A QuantizedKV or WindowKV is updated in place (and handed back); a (keys, values) pair is concatenated into a new
    one. Without use_cache the cache handed back is None.
    """
    if isinstance(past_kv, QuantizedKV | WindowKV):
        k, v = past_kv.append(k, v)  # dequantized, or the window's held positions then the new ones
        return k, v, past_kv if use_cache else None
    if past_kv is not None:
        k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)  # S = S_past + T
    return k, v, (k, v) if use_cache else None


def truncate_cache(cache: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> list | None:
    """The per-layer (keys, values) cache cut back to its first ``length`` positions; None for 0."""
    return [(k[:, :, :length], v[:, :, :length]) for k, v in cache] if length else None
