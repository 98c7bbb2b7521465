"""The shared audio encoder: wav2vec 2.0 (transformers' ``Wav2Vec2Model``) with its CNN frozen,
the features aligned to the motion frame rate between the CNN and the feature projection, as
FaceFormer's ``wav2vec.py`` does (EvelynFan/FaceFormer), then Linear(hidden -> d).

    raw 16 kHz audio -> per-sequence zero mean / unit variance (Wav2Vec2Processor's normalisation)
      -> zero-padded to whole frames (r x round(seconds x fps) features: the last frame is
         covered) -> frozen CNN (50 Hz, one call per sequence: the first conv's GroupNorm would
         otherwise see the padding; in exact chunks) -> bounded CPU cache by name
      -> align: 30 fps: linear interpolation (align_corners=True) to exactly the frame count;
                25 fps: drop the last feature if the count is odd, cut to 2 x frames (2 tokens
                per frame); the frames beyond the audio are dropped
      -> pad -> feature projection -> SpecAugment (train) -> transformer (attention mask;
         overlapping windows on long audio)
      -> Linear(hidden -> d): the decoder's memory tokens.

``audio_encoder`` names the model: ``tiny`` (random, seeded, small CNN: tests and the demo),
``faceformer-bench`` (wav2vec2-base's config shrunk to hidden 64, 2 layers, 2 heads, FFN 128,
with the full 7 x 512 CNN: the speed reference), a local folder written by ``save_pretrained``,
or a hub id.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from datamodules.errors import DataError
from datamodules.face.dataset import audio_frames

SAMPLE_RATE = 16_000
# The frozen CNN runs on at most this many 50 Hz features at a time (exact chunks): on the CPU
# 64 (1.3 s: every layer's output under glibc's 32 MiB mmap threshold, reused when glibc keeps
# freed memory, as render does: 20-28 % faster than one pass at 10-60 s, docs/dualtalker.md),
# elsewhere 500 (10 s: fewer, larger kernels)
CNN_CHUNK_FEATURES = {"cpu": 64, "default": 500}
TOKENS_PER_FRAME = {"vocaset": 1, "biwi": 2}  # the data set's alignment (FaceFormer's wav2vec.py)
_CONV = dict(conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))
NAMED_CONFIGS = {
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        **_CONV,
    ),
    "faceformer-bench": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        conv_dim=(512,) * 7,
        **_CONV,
    ),
}


class AudioEncoderError(DataError):
    """``model.audio_encoder`` names no loadable wav2vec 2.0 model (shown as one line)."""


def _has_weights(folder: Path) -> bool:
    names = (
        "model.safetensors",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    )
    return any((folder / n).is_file() for n in names)


def load_wav2vec(spec: str) -> Wav2Vec2Model:
    """A named random config (seeded), a local ``save_pretrained`` folder, or a hub id."""
    if spec in NAMED_CONFIGS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return Wav2Vec2Model(Wav2Vec2Config(**NAMED_CONFIGS[spec]))
    path = Path(spec).expanduser()
    looks_like_path = path.exists() or spec.startswith(("/", ".", "~")) or spec.count("/") > 1
    hint = (
        "expected a folder written by save_pretrained (config.json plus model.safetensors or "
        "pytorch_model.bin), a hub id such as facebook/wav2vec2-base-960h, or one of: "
        + ", ".join(NAMED_CONFIGS)
    )
    if looks_like_path:
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is a file, not a model folder"
            raise AudioEncoderError(f"model.audio_encoder={spec!r}: {path} {what}; {hint}")
        if not (path / "config.json").is_file() or not _has_weights(path):
            raise AudioEncoderError(f"model.audio_encoder={spec!r}: {path} holds no model; {hint}")
    source = str(path) if looks_like_path else spec
    try:
        try:  # the local folder or the hub cache first: no network call when it is there
            return Wav2Vec2Model.from_pretrained(source, local_files_only=True)
        except OSError:
            if looks_like_path:
                raise
        return Wav2Vec2Model.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        offline = "the hub (offline? put it in ~/.cache/huggingface/hub or pass a local folder)"
        where = "the folder" if looks_like_path else offline
        raise AudioEncoderError(
            f"model.audio_encoder={spec!r}: could not load a wav2vec 2.0 model from {where}: "
            f"{first}"
        ) from None


def cnn_length(num_samples: int, config: Wav2Vec2Config) -> int:
    """Number of 50 Hz CNN features for ``num_samples`` samples (no padding in the convs)."""
    length = num_samples
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
    return max(length, 0)


def normalise(audio: torch.Tensor) -> torch.Tensor:
    """Wav2Vec2Processor's per-utterance normalisation: zero mean, unit (population) variance."""
    return (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)


def align(features: torch.Tensor, num_frames: int, tokens_per_frame: int) -> torch.Tensor:
    """One sequence's CNN features (L50, C) -> (r * T', C), T' <= num_frames (FaceFormer).

    r = 1 (30 fps): linear interpolation, align_corners=True, to exactly ``num_frames``.
    r = 2 (25 fps): even count, at most 2 * num_frames; T' = tokens // 2 may fall short.
    """
    if tokens_per_frame == 1:
        x = features.t()[None]
        return F.interpolate(x, size=num_frames, mode="linear", align_corners=True)[0].t()
    usable = features.shape[0] - features.shape[0] % tokens_per_frame
    return features[: min(usable, tokens_per_frame * num_frames)]


def samples_for_features(num_features: int, config: Wav2Vec2Config) -> int:
    """The fewest samples from which the CNN gives ``num_features`` features (inverse of
    :func:`cnn_length`): its receptive field plus a stride per further feature."""
    length = num_features
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
        length = (length - 1) * stride + kernel
    return length


def spec_augment(
    hidden: torch.Tensor, lengths: torch.Tensor, config, embed: torch.Tensor
) -> torch.Tensor:
    """SpecAugment along time as wav2vec 2.0 trains (spans of ``mask_time_length`` frames covering
    about ``mask_time_prob`` of each sequence, at least ``mask_time_min_masks`` spans, filled with
    ``masked_spec_embed``), drawn from torch's generator so a seed reproduces it."""
    span, prob = config.mask_time_length, config.mask_time_prob
    mask = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    for b, length in enumerate(lengths.tolist()):
        if length < span:
            continue
        spans = int(prob * length / span + float(torch.rand(())))
        spans = min(max(spans, config.mask_time_min_masks), length // span)
        starts = torch.randperm(length - span + 1, device=hidden.device)[:spans]
        index = (starts[:, None] + torch.arange(span, device=hidden.device)).flatten()
        mask[b, index] = True
    return torch.where(mask[..., None], embed.to(hidden.dtype), hidden)


def first_conv_moments(conv: nn.Conv1d, x: torch.Tensor, chunk_samples: int):
    """Per-channel mean and (population) variance over time, in float64, of the first
    convolution's output on the one-channel signal x (S,), without computing that output.

    The convolution is linear in its input windows w_t = x[s t : s t + k]: y_t = W w_t + b. So
    mean_t y_t = W m + b and mean_t y_t^2 = diag(W G W^T) + 2 b W m + b^2, with m the windows'
    mean and G = mean_t w_t w_t^T (k x k; k = 10 for wav2vec 2.0): O(S k) work instead of the
    O(S C k / s) of the convolution (C = 512 channels) and no (C, S / s) output."""
    kernel, step = conv.kernel_size[0], conv.stride[0]
    count = (x.shape[-1] - kernel) // step + 1
    total, gram = x.new_zeros(kernel, dtype=torch.float64), 0.0
    per_chunk = max(1, chunk_samples // step)
    for j in range(0, count, per_chunk):
        n = min(per_chunk, count - j)
        windows = x[step * j : step * (j + n - 1) + kernel].unfold(0, kernel, step).double()
        total = total + windows.sum(0)
        gram = gram + windows.t() @ windows
    m, g = total / count, gram / count
    w = conv.weight.double()[:, 0]  # (C, k)
    b = conv.bias.double() if conv.bias is not None else torch.zeros_like(w[:, 0])
    mean = w @ m + b
    square = ((w @ g) * w).sum(1) + 2 * b * (w @ m) + b.square()
    return mean, (square - mean.square()).clamp_min(0)


def frozen_cnn(extractor: nn.Module, x: torch.Tensor, config, chunk: int) -> torch.Tensor:
    """The CNN's (C, L50) features of one normalised sequence x (1, S), ``chunk`` features at a
    time when longer: the first layer's output is 512 channels at 3.2 kHz (4 GB for 10 minutes),
    and on the CPU small outputs are reused by the allocator instead of faulted in afresh.

    Exact, not windowed: chunk [a, b) reads samples [a P, (b - 1) P + R) (P the total stride, R
    the receptive field); the convolutions are local and P is a multiple of every layer's
    stride, so each chunk gives exactly features a ... b - 1. The one non-local operation, the
    first layer's GroupNorm over time (wav2vec2-base), needs each channel's mean and variance
    over the whole sequence first: :func:`first_conv_moments`."""
    total = cnn_length(x.shape[1], config)
    first, rest = extractor.conv_layers[0], list(extractor.conv_layers)[1:]
    norm = getattr(first, "layer_norm", None)
    per_channel = isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels
    if total <= chunk or not (per_channel or isinstance(norm, nn.LayerNorm) or norm is None):
        return extractor(x)[0]
    receptive = samples_for_features(1, config)
    stride = samples_for_features(2, config) - receptive
    x = x[:, None]  # (1, 1, S): the convolutions' channel axis, as the extractor adds it
    if per_channel:  # wav2vec2-base: GroupNorm statistics over the whole sequence first
        mean, var = first_conv_moments(first.conv, x[0, 0], chunk * stride)
        scale = norm.weight.double() / torch.sqrt(var + norm.eps)
        shift = norm.bias.double() - mean * scale
    pieces = []
    for a in range(0, total, chunk):
        b = min(a + chunk, total)
        segment = x[..., stride * a : stride * (b - 1) + receptive]
        if per_channel:
            h = first.conv(segment)
            h = first.activation(h * scale[:, None].to(h.dtype) + shift[:, None].to(h.dtype))
        else:  # no norm, or a LayerNorm over the channels of each step: local
            h = first(segment)
        for layer in rest:
            h = layer(h)
        pieces.append(h[0])
    return torch.cat(pieces, dim=-1)


class AudioEncoder(nn.Module):
    """wav2vec 2.0 with frozen CNN and frame alignment, then Linear(hidden -> d).

    ``forward`` returns the memory tokens (B, r * T, d) and the number of frames each sequence
    keeps (B,) (T for 30 fps; at most T for 25 fps, where the audio may be shorter).

    ``tokens_per_frame`` r is the data set's alignment (1: VOCA's interpolation, 2: BIWI's two
    50 Hz features per frame). The CNN runs in exact chunks of ``CNN_CHUNK_FEATURES`` for the
    device (``cnn_chunk_features`` overrides it); the transformer, whose attention is
    quadratic, runs on the whole sequence when it is at most ``window_s + 2 context_s``
    seconds long (every training sequence of VOCASET and BIWI), otherwise in windows of
    ``window_s`` seconds each seeing ``context_s`` seconds more on both sides
    (docs/dualtalker.md, "Long audio").
    """

    def __init__(
        self,
        spec: str,
        dim: int,
        fps: int,
        tokens_per_frame: int,
        spec_augment: bool = True,
        feature_cache_mb: float = 0.0,
        window_s: float = 20.0,
        context_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.wav2vec = load_wav2vec(spec)
        self.wav2vec.freeze_feature_encoder()
        self.config = self.wav2vec.config
        self.proj = nn.Linear(self.config.hidden_size, dim)
        self.fps, self.tokens_per_frame = fps, tokens_per_frame
        self.use_spec_augment = spec_augment and hasattr(self.wav2vec, "masked_spec_embed")
        self.window_s, self.context_s = window_s, context_s
        self.cnn_chunk_features: int | None = None  # None: CNN_CHUNK_FEATURES of the device
        # name, samples -> CPU features; least recently used first; not in the state dict
        self.cache: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()
        self.cache_limit, self.cache_bytes = int(feature_cache_mb * 2**20), 0

    @property
    def feature_cache(self) -> bool:
        return self.cache_limit > 0

    def _remember(self, key: tuple[str, int], features: torch.Tensor) -> None:
        """Keep ``features`` on the CPU, dropping the least recently used beyond the bound."""
        size = features.numel() * features.element_size()
        if size > self.cache_limit:
            return
        self.cache[key] = features.cpu()
        self.cache_bytes += size
        while self.cache_bytes > self.cache_limit:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= old.numel() * old.element_size()

    @torch.no_grad()
    def cnn_features(
        self, audio: torch.Tensor, length: int, name: str | None = None
    ) -> torch.Tensor:
        """The frozen CNN's (L50, C) features of one sequence's first ``length`` samples.

        The normalised audio is zero-padded (silence, after the normalisation, so its
        statistics are the real samples') until the CNN gives r x :func:`audio_frames`
        features: the last frame of the audio gets its tokens too (wav2vec's framing floors
        twice at 25 fps; FaceFormer's predictions fall one frame short there)."""
        key = (name, length)
        if name is not None and key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key].to(audio.device)
        x = normalise(audio[:length].float())
        needed = samples_for_features(
            self.tokens_per_frame * audio_frames(length, self.fps), self.config
        )
        x = F.pad(x, (0, max(0, needed - length)))[None]
        features = frozen_cnn(
            self.wav2vec.feature_extractor, x, self.config, self._chunk(x.device)
        ).t()
        if name is not None and self.feature_cache:
            self._remember(key, features)
        return features

    def _chunk(self, device: torch.device) -> int:
        if self.cnn_chunk_features is not None:
            return self.cnn_chunk_features
        return CNN_CHUNK_FEATURES.get(device.type, CNN_CHUNK_FEATURES["default"])

    def transformer(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """wav2vec 2.0's transformer on (B, N, hidden): whole, or in overlapping windows."""
        total, rate = hidden.shape[1], self.tokens_per_frame * self.fps
        window = max(1, round(self.window_s * rate))
        context = max(0, round(self.context_s * rate))
        if total <= window + 2 * context:
            return self._run(hidden, mask)
        pieces = []
        for start in range(0, total, window):
            lo, hi = max(0, start - context), min(total, start + window + context)
            part = None if mask is None else mask[:, lo:hi].clone()
            if part is not None:
                part[~part.any(1)] = True  # a window all padding: any finite, ignored output
            out = self._run(hidden[:, lo:hi], part)
            pieces.append(out[:, start - lo : min(start + window, total) - lo])
        return torch.cat(pieces, dim=1)

    def _run(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        mask = None if mask is None or bool(mask.all()) else mask
        return self.wav2vec.encoder(hidden, attention_mask=mask).last_hidden_state

    def encode(self, aligned: list[torch.Tensor], num_tokens: int) -> torch.Tensor:
        """Pad aligned CNN features to ``num_tokens``; projection, SpecAugment, transformer."""
        lengths = torch.tensor([a.shape[0] for a in aligned], device=aligned[0].device)
        padded = torch.stack([F.pad(a, (0, 0, 0, num_tokens - a.shape[0])) for a in aligned])
        hidden, _ = self.wav2vec.feature_projection(padded.to(self.proj.weight.dtype))
        if self.training and self.use_spec_augment and self.config.mask_time_prob > 0:
            hidden = spec_augment(hidden, lengths, self.config, self.wav2vec.masked_spec_embed)
        token_mask = torch.arange(num_tokens, device=hidden.device)[None] < lengths[:, None]
        return self.proj(self.transformer(hidden, token_mask))

    def forward(
        self,
        audio,
        audio_mask,
        num_frames: torch.Tensor | None,
        names=None,
        pad_to: int | None = None,
    ):
        """audio (B, S) raw, audio_mask (B, S) bool; num_frames (B,) motion frames per sequence
        (training), or None for :func:`audio_frames` of the audio (inference); the tokens are
        padded to ``pad_to`` frames (default: the longest)."""
        r = self.tokens_per_frame
        aligned, frames = [], []
        for b in range(audio.shape[0]):
            length = int(audio_mask[b].sum()) if audio_mask is not None else audio.shape[1]
            features = self.cnn_features(audio[b], length, names[b] if names else None)
            target = (
                int(num_frames[b]) if num_frames is not None else audio_frames(length, self.fps)
            )
            tokens = align(features, target, r)
            aligned.append(tokens)
            frames.append(tokens.shape[0] // r)
        frames = torch.tensor(frames, device=audio.device)
        if pad_to is None:
            pad_to = int(num_frames.max()) if num_frames is not None else int(frames.max())
        return self.encode(aligned, r * pad_to), frames
