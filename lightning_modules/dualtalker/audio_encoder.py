"""The shared audio encoder: wav2vec 2.0 (transformers' ``Wav2Vec2Model``) with its CNN frozen,
the features aligned to the motion frame rate between the CNN and the feature projection, as
FaceFormer's ``wav2vec.py`` does (reference sheet §3), then Linear(hidden -> d).

    raw 16 kHz audio -> per-sequence zero mean / unit variance (Wav2Vec2Processor's normalisation)
      -> frozen CNN (50 Hz, one call per sequence: the first conv's GroupNorm would otherwise see
         the padding) -> optional cache keyed by sequence name
      -> align: 30 fps: linear interpolation (align_corners=True) to exactly the frame count;
                25 fps: drop the last feature if the count is odd, cut to 2 x frames (2 tokens
                per frame); the frames beyond the audio are dropped
      -> pad -> feature projection -> SpecAugment (train) -> transformer (attention mask)
      -> Linear(hidden -> d): the decoder's memory tokens.

``audio_encoder`` names the model: ``tiny`` (random, seeded, small CNN: tests and the demo),
``faceformer-bench`` (wav2vec2-base's config shrunk to hidden 64, 2 layers, 2 heads, FFN 128, with the full
7 x 512 CNN: the speed reference), a local folder written by ``save_pretrained``, or a hub id.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from datamodules.errors import DataError

SAMPLE_RATE = 16_000
FEATURE_RATE = 50  # the CNN's stride is 320 samples at 16 kHz
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
            f"model.audio_encoder={spec!r}: could not load a wav2vec 2.0 model from {where}: {first}"
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
    """One sequence's CNN features (L50, C) -> (r * T', C), T' <= num_frames (§3).

    r = 1 (30 fps): linear interpolation, align_corners=True, to exactly ``num_frames``.
    r = 2 (25 fps): even count, at most 2 * num_frames; T' = tokens // 2 may fall short.
    """
    if tokens_per_frame == 1:
        x = features.t()[None]
        return F.interpolate(x, size=num_frames, mode="linear", align_corners=True)[0].t()
    usable = features.shape[0] - features.shape[0] % tokens_per_frame
    return features[: min(usable, tokens_per_frame * num_frames)]


def frames_for_audio(num_features: int, fps: int, tokens_per_frame: int) -> int:
    """Frames generated for audio at inference: VOCA int(seconds * fps), BIWI features // 2."""
    if tokens_per_frame == 1:
        return int(num_features / FEATURE_RATE * fps)
    return num_features // tokens_per_frame


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


class AudioEncoder(nn.Module):
    """wav2vec 2.0 with frozen CNN and frame alignment, then Linear(hidden -> d).

    ``forward`` returns the memory tokens (B, r * T, d) and the number of frames each sequence
    keeps (B,) (T for 30 fps; at most T for 25 fps, where the audio may be shorter).
    """

    def __init__(
        self, spec: str, dim: int, fps: int, spec_augment: bool = True, feature_cache: bool = True
    ) -> None:
        super().__init__()
        self.wav2vec = load_wav2vec(spec)
        self.wav2vec.freeze_feature_encoder()
        self.config = self.wav2vec.config
        self.proj = nn.Linear(self.config.hidden_size, dim)
        self.fps = fps
        self.tokens_per_frame = 2 if fps == 25 else 1
        self.use_spec_augment = spec_augment and hasattr(self.wav2vec, "masked_spec_embed")
        self.feature_cache = feature_cache
        self.cache: dict[tuple[str, int], torch.Tensor] = {}  # not in the state dict

    @torch.no_grad()
    def cnn_features(
        self, audio: torch.Tensor, length: int, name: str | None = None
    ) -> torch.Tensor:
        """The frozen CNN's (L50, C) features of one sequence's first ``length`` samples."""
        key = (name, length)
        if name is not None and self.feature_cache and key in self.cache:
            return self.cache[key].to(audio.device)
        x = normalise(audio[:length].float())[None]
        features = self.wav2vec.feature_extractor(x)[0].t()
        if name is not None and self.feature_cache:
            self.cache[key] = features
        return features

    def encode(self, aligned: list[torch.Tensor], num_tokens: int) -> torch.Tensor:
        """Pad aligned CNN features to ``num_tokens`` and run projection, SpecAugment, transformer."""
        lengths = torch.tensor([a.shape[0] for a in aligned], device=aligned[0].device)
        padded = torch.stack([F.pad(a, (0, 0, 0, num_tokens - a.shape[0])) for a in aligned])
        hidden, _ = self.wav2vec.feature_projection(padded.to(self.proj.weight.dtype))
        if self.training and self.use_spec_augment and self.config.mask_time_prob > 0:
            hidden = spec_augment(hidden, lengths, self.config, self.wav2vec.masked_spec_embed)
        token_mask = torch.arange(num_tokens, device=hidden.device)[None] < lengths[:, None]
        mask = None if bool(token_mask.all()) else token_mask
        hidden = self.wav2vec.encoder(hidden, attention_mask=mask).last_hidden_state
        return self.proj(hidden)

    def forward(
        self,
        audio,
        audio_mask,
        num_frames: torch.Tensor | None,
        names=None,
        pad_to: int | None = None,
    ):
        """audio (B, S) raw, audio_mask (B, S) bool; num_frames (B,) motion frames per sequence
        (training), or None to derive them from the audio (inference); the tokens are padded
        to ``pad_to`` frames (default: the longest)."""
        r = self.tokens_per_frame
        aligned, frames = [], []
        for b in range(audio.shape[0]):
            length = int(audio_mask[b].sum()) if audio_mask is not None else audio.shape[1]
            features = self.cnn_features(audio[b], length, names[b] if names else None)
            target = (
                int(num_frames[b])
                if num_frames is not None
                else frames_for_audio(features.shape[0], self.fps, r)
            )
            tokens = align(features, target, r)
            aligned.append(tokens)
            frames.append(tokens.shape[0] // r)
        frames = torch.tensor(frames, device=audio.device)
        if pad_to is None:
            pad_to = int(num_frames.max()) if num_frames is not None else int(frames.max())
        return self.encode(aligned, r * pad_to), frames
