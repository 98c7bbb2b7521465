"""The motion side of the FaceFormer backbone (``faceformer.py``): periodic positional encoding,
the periodic ALiBi causal bias, the audio-to-frame alignment mask and the biased causal decoder.

The decoder is a stack of post-norm layers (self-attention, cross-attention, ReLU feed-forward;
the layout of ``nn.TransformerDecoderLayer``) written on ``F.scaled_dot_product_attention`` with
float masks, so that

- masks are per sample: the self-attention bias is (B, heads, T, T) (FaceFormer's (heads, T, T)
  mask only works for batch size 1), padded key frames are blocked for every query;
- the autoregressive loop can keep a key/value cache: step t encodes one new frame instead of
  re-running the whole prefix (FaceFormer's O(T^2) loop). With causal attention the cached keys
  and values are exactly what a full re-run would compute (dropout masks aside, drawn once per
  frame instead of once per re-run).

Positions are taken modulo the period on the fly, so there is no ``max_seq_len`` (FaceFormer's
600-frame limit, issue #48, does not exist here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def alibi_slopes(num_heads: int) -> list[float]:
    """FaceFormer's ``get_slopes``: a geometric sequence, 1/4, 1/16, 1/64, 1/256 for 4 heads."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_2(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


def periodic_alibi_bias(
    num_heads: int, length: int, period: int, device=None, dtype=torch.float32, causal: bool = True
) -> torch.Tensor:
    """(heads, T, T) additive bias: -slope_h * floor((i - j) / period) for j <= i, -inf for j > i.

    With ``causal=False`` the bias is symmetric, -slope_h * floor(|i - j| / period) (the lip
    reader's bidirectional encoder).
    """
    pos = torch.arange(length, device=device)
    distance = pos[:, None] - pos[None, :]
    steps = torch.div(distance.abs(), period, rounding_mode="floor").to(dtype)
    slopes = torch.tensor(alibi_slopes(num_heads), device=device, dtype=dtype)
    bias = -slopes[:, None, None] * steps
    if causal:
        bias = bias.masked_fill(distance < 0, float("-inf"))
    return bias


def self_attention_bias(
    frame_mask: torch.Tensor, num_heads: int, period: int, causal: bool = True
) -> torch.Tensor:
    """Per-sample (B, heads, T, T) bias: the periodic ALiBi bias plus -inf on padded key frames.

    Frame 0 of every sequence is real, so no row is fully blocked (padded query rows still see
    frame 0 and give finite, ignored outputs).
    """
    _, length = frame_mask.shape
    bias = periodic_alibi_bias(num_heads, length, period, frame_mask.device, torch.float32, causal)
    key_pad = torch.zeros(frame_mask.shape, device=frame_mask.device).masked_fill(
        ~frame_mask, float("-inf")
    )
    return bias[None] + key_pad[:, None, None, :]


def alignment_mask(
    num_frames: int, tokens_per_frame: int, device=None, num_tokens: int | None = None
) -> torch.Tensor:
    """(T, S) bool, S = r*T by default; True = frame t may attend audio token s, that is
    tokens r*t ... r*t + r - 1.

    VOCA (30 fps, features interpolated to the frame count): r = 1, frame t sees token t only.
    BIWI (25 fps, two 50 Hz features per frame): r = 2, frame t sees tokens 2t and 2t + 1.
    """
    frames = torch.arange(num_frames, device=device)
    tokens = torch.arange(num_tokens or num_frames * tokens_per_frame, device=device)
    return torch.div(tokens, tokens_per_frame, rounding_mode="floor")[None, :] == frames[:, None]


def float_mask(allowed: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Bool (True = attend) -> additive float mask (0 / -inf) for SDPA."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, float("-inf")
    )


class PeriodicPositionalEncoding(nn.Module):
    """Sinusoids of positions 0 ... period - 1, repeated: position t is encoded as t mod period."""

    def __init__(self, dim: int, period: int, dropout: float = 0.1) -> None:
        super().__init__()
        position = torch.arange(period, dtype=torch.float32)[:, None]
        div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
        pe = torch.zeros(period, dim)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)[:, : dim // 2]
        self.register_buffer("pe", pe, persistent=False)
        self.period = period
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x (B, T, d) holding positions start ... start + T - 1."""
        if x.shape[1] == 1:  # an autoregressive step: a view, no index tensor
            return self.dropout(x + self.pe[start % self.period][None, None].to(x.dtype))
        index = torch.arange(start, start + x.shape[1], device=x.device) % self.period
        return self.dropout(x + self.pe[index].to(x.dtype))


def append_to_cache(cache: dict, k: torch.Tensor, v: torch.Tensor):
    """Append this step's keys/values (B, heads, n, d_h) to ``cache``; return all so far.

    With ``cache["capacity"]`` (inference, no gradients) the keys/values go into buffers
    allocated once for that many frames: memory linear in T, no re-copy per step. Without it
    (training through the loop) they are concatenated, which autograd can differentiate."""
    capacity = cache.get("capacity")
    if capacity is None:
        if "k" in cache:
            k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
        cache["k"], cache["v"] = k, v
        return k, v
    if "k" not in cache:
        shape = (*k.shape[:2], capacity, k.shape[3])
        cache["k"], cache["v"], cache["n"] = k.new_empty(shape), v.new_empty(shape), 0
    start, end = cache["n"], cache["n"] + k.shape[2]
    cache["k"][:, :, start:end], cache["v"][:, :, start:end] = k, v
    cache["n"] = end
    return cache["k"][:, :, :end], cache["v"][:, :, :end]


class Attention(nn.Module):
    """Multi-head attention on SDPA; ``cross`` projects queries and keys/values separately."""

    def __init__(self, dim: int, num_heads: int, dropout: float, cross: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"feature_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dropout, self.cross = num_heads, dropout, cross
        if cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(source).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x, mask, memory=None, cache=None):
        """x (B, T, d); mask broadcastable to (B, heads, T, S), or None. For self-attention,
        ``cache`` is a dict holding the keys/values of earlier frames (appended to); for
        cross-attention, ``memory`` is the pair of projected keys/values of the audio tokens."""
        if self.cross:
            q = self.split(self.q(x))
            k, v = memory
        else:
            q, k, v = (self.split(t) for t in self.qkv(x).chunk(3, dim=-1))
            if cache is not None:
                k, v = append_to_cache(cache, k, v)
        p = self.dropout if self.training else 0.0
        mask = None if mask is None else mask.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """Post-norm decoder layer: x = LN(x + SA(x)); x = LN(x + CA(x, audio)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.cross_attn = Attention(dim, num_heads, dropout, cross=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, self_mask, memory_kv, memory_mask, cache=None, cross=None):
        """``cross``: the cross-attention's output when known beforehand (one key per query)."""
        x = self.norm1(x + self.drop(self.self_attn(x, self_mask, cache=cache)))
        if cross is None:
            cross = self.cross_attn(x, memory_mask, memory=memory_kv)
        x = self.norm2(x + self.drop(cross))
        return self.norm3(x + self.drop(self.ffn(x)))


class MotionEncoder(nn.Module):
    """The shared motion encoder: Linear(V*3 -> d) on offsets from the template (FaceFormer's
    ``vertice_map``). It embeds the decoder's input frames and is the lip reader's front end."""

    def __init__(self, num_vertices: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * num_vertices, dim)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.proj(offsets)


class MotionDecoder(nn.Module):
    """FaceFormer's biased causal decoder: motion tokens attend their past (periodic ALiBi) and
    their own audio tokens (alignment mask)."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        period: int,
        tokens_per_frame: int,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.num_heads, self.period, self.tokens_per_frame = num_heads, period, tokens_per_frame

    def forward(self, tokens: torch.Tensor, audio_tokens: torch.Tensor, frame_mask: torch.Tensor):
        """Teacher-forced: all T input tokens (B, T, d) in one pass -> (B, T, d)."""
        length = tokens.shape[1]
        self_mask = self_attention_bias(frame_mask, self.num_heads, self.period)
        allowed = alignment_mask(
            length, self.tokens_per_frame, tokens.device, audio_tokens.shape[1]
        )
        memory_mask = float_mask(allowed)
        x = tokens
        for layer in self.layers:
            x = layer(x, self_mask, layer.cross_attn.keys_values(audio_tokens), memory_mask)
        return x

    def start(self, audio_tokens: torch.Tensor, num_frames: int) -> dict:
        """State of an autoregressive run: the audio keys/values of every layer (computed once)
        and an empty key/value cache per layer. Nothing of size T x T: each step builds its own
        bias row and reads only its own audio tokens, so memory grows linearly with T. Without
        gradients the caches are preallocated for ``num_frames`` (no re-copy per step).

        The bias rows are views of one (heads, T) vector: entry u holds
        -slope_h * floor((T - 1 - u) / period), so the row of frame t (distances t ... 0 to
        frames 0 ... t) is its last t + 1 entries. With one audio token per frame (30 fps) and
        no dropout, each frame's cross-attention has a single key, so its softmax is 1 and its
        output is out(v_t): computed for all frames at once."""
        device = audio_tokens.device
        slopes = torch.tensor(alibi_slopes(self.num_heads), device=device)
        distance = (num_frames - 1) - torch.arange(num_frames, device=device)
        steps = torch.div(distance, self.period, rounding_mode="floor").to(slopes.dtype)
        memory = [layer.cross_attn.keys_values(audio_tokens) for layer in self.layers]
        single = self.tokens_per_frame == 1 and not self.training
        capacity = None if torch.is_grad_enabled() else num_frames
        return dict(
            memory=memory,
            cross=[
                layer.cross_attn.out(v.transpose(1, 2).flatten(2)) if single else None
                for layer, (_, v) in zip(self.layers, memory)
            ],
            bias=(-slopes[:, None] * steps)[None, :, None, :],
            num_frames=num_frames,
            caches=[{"capacity": capacity} for _ in memory],
        )

    def step(self, token: torch.Tensor, t: int, state: dict) -> torch.Tensor:
        """Autoregressive step: the new input token (B, 1, d) at position t -> output (B, 1, d).

        Self-attention: the caches hold the keys/values of frames < t; the bias row of frame t,
        -slope_h * floor((t - j) / period) for j <= t, is the row t of
        :func:`periodic_alibi_bias`. Cross-attention: frame t may only see its own audio tokens
        r t ... r t + r - 1 (:func:`alignment_mask`), so it attends exactly those keys, with no
        mask. Padding needs no mask either: frame t of a sequence only sees its frames <= t.
        """
        bias = state["bias"][..., state["num_frames"] - 1 - t :]
        r = self.tokens_per_frame
        x = token
        layers = zip(self.layers, state["memory"], state["cross"], state["caches"])
        for layer, (k, v), cross, cache in layers:
            if cross is not None:
                x = layer(x, bias, None, None, cache=cache, cross=cross[:, t : t + 1])
            else:
                own = (k[:, :, r * t : r * t + r], v[:, :, r * t : r * t + r])
                x = layer(x, bias, own, None, cache=cache)
        return x
