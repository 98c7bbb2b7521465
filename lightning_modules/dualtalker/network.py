"""DualTalker: FaceFormer's speech-to-motion network plus lip reading as the dual task, sharing the
audio and motion encoders (docs/dualtalker.md, "The model").

    audio -> AudioEncoder (wav2vec 2.0, frozen CNN, aligned to frames) -> memory tokens (B, rT, d)
    GT offsets -> MotionEncoder (shared) -> motion embeddings (B, T, d)
    decoder input: [style | E_m(y_1 - tpl) + style | ...] + periodic PE  (teacher forcing), or
                   the model's own previous outputs re-encoded (autoregressive)
      -> biased causal decoder (periodic ALiBi, alignment mask) -> zero-initialised head -> offsets
    lip reader: E_m(GT offsets) -> audio features at frame rate (+ CTC over characters)

Plain ``nn.Module``s only; ``losses.compute_losses`` forms the terms and their total.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .audio_encoder import TOKENS_PER_FRAME, AudioEncoder
from .lip_reader import CharVocab, LipReader
from .motion import MotionDecoder, MotionEncoder, PeriodicPositionalEncoding

DUAL_TARGETS = ("features", "ctc", "both", "none")
CONSISTENCY_TERMS = ("cosine", "infonce", "cycle", "duality")


@dataclass
class DualTalkerOptions:
    """Every model and loss key with its default (the ``model`` section of the config)."""

    # tiny | faceformer-bench | a local save_pretrained folder | a hub id
    audio_encoder: str = "facebook/wav2vec2-base-960h"
    feature_dim: int = 64  # d: FaceFormer's 64 (VOCA); BIWI used 128
    num_layers: int = 1
    num_heads: int = 4
    ffn_dim: int = 0  # 0 -> 2 d, as FaceFormer
    dropout: float = 0.1
    period: int = 0  # 0 -> the frame rate (30 VOCA, 25 BIWI)
    teacher_forcing: bool = False  # FaceFormer trains autoregressively
    spec_augment: bool = True  # wav2vec's SpecAugment in train mode (as FaceFormer)
    feature_cache: bool = True  # keep the frozen CNN's features per sequence name (CPU)
    feature_cache_mb: float = 2048.0  # the cache's bound; least recently used dropped beyond
    audio_window_s: float = 20.0  # longer audio: wav2vec's transformer in windows of this
    audio_context_s: float = 5.0  # ... each seeing this much more audio on both sides
    lip_reader_layers: int = 1
    dual_target: str = "features"  # features | ctc | both | none
    dual_detach_target: bool = True  # stop-gradient on the audio-feature target
    consistency: str = "cosine"  # none, or "+"-joined terms of: cosine, infonce, cycle, duality
    infonce_temperature: float = 0.1
    duality_sigma_vertex: float = 1e-3  # duality: std of the vertex residual (VOCA: ~1 mm)
    duality_sigma_feature: float = 1.0  # duality: std of the audio-feature residual
    ctc_upsample: int = 2  # CTC frames per motion frame (60 Hz at 30 fps)
    lambda_vel: float = 0.0  # L_rec = MSE(v) + lambda_vel MSE(dv/dt)
    # Auxiliary weights, relative to each sequence's motion energy (losses.compute_losses): the
    # same share of L_rec on every data set; 1 = the earlier absolute 1e-6 where E ~ 1e-6 (VOCA)
    lambda_dual: float = 1.0  # L_dual = feature MSE + ctc_weight CTC
    ctc_weight: float = 0.1
    lambda_cons: float = 1.0
    unseen_condition: str = "all"  # VOCA-Test, unseen subjects: all | mean | <training subject>

    def __post_init__(self) -> None:
        if self.dual_target not in DUAL_TARGETS:
            raise ValueError(
                f"model.dual_target must be one of {', '.join(DUAL_TARGETS)}, "
                f"got {self.dual_target!r}"
            )
        unknown = [t for t in self.consistency_terms if t not in CONSISTENCY_TERMS]
        if unknown:
            raise ValueError(
                f"model.consistency: unknown term {unknown[0]!r}; use none or "
                f"'+'-joined terms of {', '.join(CONSISTENCY_TERMS)}"
            )
        for term in ("cycle", "duality"):
            if term in self.consistency_terms and not self.uses_features:
                raise ValueError(
                    f"model.consistency={term} needs the lip reader's feature target "
                    "(model.dual_target=features or both)"
                )
        if self.audio_window_s <= 0 or self.audio_context_s < 0 or self.feature_cache_mb < 0:
            raise ValueError(
                "model.audio_window_s must be > 0, model.audio_context_s and "
                "model.feature_cache_mb >= 0"
            )
        for key in ("feature_dim", "num_layers", "num_heads", "ctc_upsample"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be >= 1, got {getattr(self, key)}")
        if self.feature_dim % self.num_heads:
            raise ValueError(
                f"model.feature_dim={self.feature_dim} must be divisible by "
                f"model.num_heads={self.num_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")

    @property
    def consistency_terms(self) -> tuple[str, ...]:
        if self.consistency.strip() in ("", "none"):
            return ()
        return tuple(t.strip() for t in self.consistency.split("+"))

    @property
    def uses_features(self) -> bool:
        return self.dual_target in ("features", "both")

    @property
    def uses_ctc(self) -> bool:
        return self.dual_target in ("ctc", "both")


@dataclass
class DualTalkerOutput:
    """What one forward pass gives the losses and metrics. ``frame_mask`` is the effective one
    (25 fps: frames beyond the audio are dropped): use it, not the batch's."""

    vertices: torch.Tensor  # (B, T, V*3) predicted, absolute
    target: torch.Tensor  # (B, T, V*3) ground truth
    template: torch.Tensor  # (B, V*3)
    frame_mask: torch.Tensor  # (B, T) bool
    audio_features: torch.Tensor  # (B, T, d) shared audio encoder, frame rate, deterministic pass
    motion_embeddings: torch.Tensor | None  # (B, T, d) shared motion encoder on GT offsets
    lip_features: torch.Tensor | None = None  # (B, T, d) lip reader's regression output
    lip_log_probs: torch.Tensor | None = None  # (B, u T, C) CTC log-probabilities
    ctc_targets: torch.Tensor | None = None  # (B, S) character ids, 0-padded
    ctc_target_lengths: torch.Tensor | None = None  # (B,), 0 = no transcript
    ctc_input_lengths: torch.Tensor | None = None  # (B,)
    cycle_features: torch.Tensor | None = None  # (B, T, d) lip reader on the predicted motion


def style_weights(style: torch.Tensor, num_subjects: int) -> torch.Tensor:
    """(B,) training-subject index or (B, S) one-hot / weights -> (B, S) float."""
    if style.dtype.is_floating_point:
        return style
    if bool((style < 0).any()) or bool((style >= num_subjects).any()):
        raise ValueError(
            "style index outside the training subjects (an unseen subject needs a "
            "training-subject condition: see metrics.condition_indices)"
        )
    return F.one_hot(style, num_subjects).float()


class DualTalker(nn.Module):
    def __init__(
        self,
        options: DualTalkerOptions,
        num_vertices: int,
        num_subjects: int,
        fps: int,
        vocab: CharVocab | None = None,
        dataset: str = "vocaset",
    ) -> None:
        super().__init__()
        o = options
        if dataset not in TOKENS_PER_FRAME:
            raise ValueError(
                f"dataset must be one of {', '.join(TOKENS_PER_FRAME)}, got {dataset!r}"
            )
        d, ffn = o.feature_dim, o.ffn_dim or 2 * o.feature_dim
        period = o.period or fps
        self.options, self.num_subjects, self.fps = o, num_subjects, fps
        self.vocab = vocab if o.uses_ctc else None
        if o.uses_ctc and vocab is None:
            raise ValueError("model.dual_target uses CTC: pass a CharVocab")
        self.audio_encoder = AudioEncoder(
            o.audio_encoder,
            d,
            fps,
            TOKENS_PER_FRAME[dataset],
            o.spec_augment,
            o.feature_cache_mb if o.feature_cache else 0.0,
            o.audio_window_s,
            o.audio_context_s,
        )
        self.tokens_per_frame = self.audio_encoder.tokens_per_frame
        self.motion_encoder = MotionEncoder(num_vertices, d)
        self.style = nn.Linear(num_subjects, d, bias=False)
        self.ppe = PeriodicPositionalEncoding(d, period, o.dropout)
        self.decoder = MotionDecoder(
            d, o.num_layers, o.num_heads, ffn, o.dropout, period, self.tokens_per_frame
        )
        self.head = nn.Linear(d, 3 * num_vertices)
        nn.init.zeros_(self.head.weight)  # the untrained model outputs the template
        nn.init.zeros_(self.head.bias)
        self.lip_reader = None
        if o.dual_target != "none":
            self.lip_reader = LipReader(
                d,
                o.lip_reader_layers,
                o.num_heads,
                ffn,
                o.dropout,
                period,
                len(vocab) if self.vocab else None,
                o.ctc_upsample,
            )

    def autoregress(self, audio_tokens: torch.Tensor, style: torch.Tensor, num_frames: int):
        """FaceFormer's loop with a key/value cache: step 0 reads the bare style embedding, step
        t > 0 the re-encoded output of step t - 1 plus style -> offsets (B, T, V*3).

        Re-encoding is E_m(head(y)) = W_m (W_h y + b_h) + b_m, two linear maps, so the loop uses
        their d x d product and the head runs once on all T outputs afterwards: the same values
        and gradients as mapping to V*3 and back at every step, without 2 T passes over the
        (V*3 x d) weights.
        """
        head, encoder = self.head, self.motion_encoder.proj
        feedback = encoder.weight @ head.weight  # (d, d)
        feedback_bias = encoder.weight @ head.bias + encoder.bias
        state = self.decoder.start(audio_tokens, num_frames)
        token, outputs = style[:, None], []
        for t in range(num_frames):
            y = self.decoder.step(self.ppe(token, start=t), t, state)
            outputs.append(y)
            token = F.linear(y, feedback, feedback_bias) + style[:, None]
        return head(torch.cat(outputs, dim=1))

    def teacher_forced(self, audio_tokens, style, motion_embeddings, frame_mask):
        """One pass: input t is E_m(y_{t-1} - tpl) + style, input 0 is E_m(0) + style."""
        b, _, d = motion_embeddings.shape
        start = self.motion_encoder.proj.bias.expand(b, 1, d)
        tokens = torch.cat([start, motion_embeddings[:, :-1]], dim=1) + style[:, None]
        return self.head(self.decoder(self.ppe(tokens), audio_tokens, frame_mask))

    def forward(
        self,
        audio,
        audio_mask,
        vertices,
        frame_mask,
        template,
        style,
        text=None,
        names=None,
        teacher_forcing: bool | None = None,
    ) -> DualTalkerOutput:
        """The batch of ``datamodules.face.datamodule``: audio (B, S) raw 16 kHz, audio_mask (B, S),
        vertices (B, T, V*3), frame_mask (B, T), template (B, V*3), style (B,) or (B, S);
        text: transcripts ("" = none) for CTC; names: CNN feature-cache keys."""
        o = self.options
        teacher_forcing = o.teacher_forcing if teacher_forcing is None else teacher_forcing
        b, length = frame_mask.shape
        vertices = vertices.reshape(b, length, -1)
        template = template.reshape(b, -1)
        encoder_args = (audio, audio_mask, frame_mask.sum(1), names)
        audio_tokens, frames = self.audio_encoder(*encoder_args, pad_to=length)
        frame_mask = frame_mask & (
            torch.arange(length, device=frames.device)[None] < frames[:, None]
        )
        style = self.style(style_weights(style, self.num_subjects).to(audio_tokens.dtype))
        motion_embeddings = None  # E_m(GT offsets): TF inputs, lip reader, consistency
        if teacher_forcing or self.lip_reader is not None or o.consistency_terms:
            offsets = (vertices - template[:, None]) * frame_mask[..., None]
            motion_embeddings = self.motion_encoder(offsets)
        if teacher_forcing:
            predicted = self.teacher_forced(audio_tokens, style, motion_embeddings, frame_mask)
        else:
            predicted = self.autoregress(audio_tokens, style, length)
        audio_features = self.target_features(audio_tokens, encoder_args, length)
        out = DualTalkerOutput(
            vertices=predicted + template[:, None],
            target=vertices,
            template=template,
            frame_mask=frame_mask,
            audio_features=audio_features,
            motion_embeddings=motion_embeddings,
        )
        if self.lip_reader is not None:
            want_ctc = self.vocab is not None and text is not None
            out.lip_features, out.lip_log_probs = self.lip_reader(
                motion_embeddings, frame_mask, want_ctc
            )
            if want_ctc:
                out.ctc_targets, out.ctc_target_lengths = self.vocab.batch(
                    list(text), frames.device
                )
                out.ctc_input_lengths = frame_mask.sum(1) * o.ctc_upsample
            if "cycle" in o.consistency_terms:
                own = self.motion_encoder(predicted * frame_mask[..., None])
                out.cycle_features, _ = self.lip_reader(own, frame_mask, ctc=False)
        return out

    def target_features(self, audio_tokens, encoder_args, length: int) -> torch.Tensor:
        """(B, T, d) frame-rate audio features, the lip reader's and consistency terms' target
        (the mean of a frame's tokens at 25 fps).

        In training the decoder's memory tokens come from a pass with SpecAugment masking,
        LayerDrop and dropout on; a target drawn that way would be noise the lip reader is
        asked to predict. So the target is a second, deterministic pass of the same shared
        encoder in eval mode (no masking, no LayerDrop, no dropout), without gradients when
        every term that reads it stops them (``dual_detach_target`` and no ``cosine`` or
        ``infonce`` term). In eval mode, or with no term reading it, the first pass is used."""
        o, encoder = self.options, self.audio_encoder
        b = audio_tokens.shape[0]
        if encoder.training and (self.lip_reader is not None or o.consistency_terms):
            needs_grad = not o.dual_detach_target or bool(
                {"cosine", "infonce"} & set(o.consistency_terms)
            )
            encoder.eval()
            try:
                with torch.set_grad_enabled(needs_grad and torch.is_grad_enabled()):
                    audio_tokens, _ = encoder(*encoder_args, pad_to=length)
            finally:
                encoder.train()
        return audio_tokens.view(b, length, self.tokens_per_frame, -1).mean(2)

    @torch.no_grad()
    def predict(self, audio, template, style, audio_mask=None, num_frames=None):
        """Autoregressive inference from audio alone -> (vertices (B, T, V*3), frame_mask (B, T)).

        audio (B, S) raw 16 kHz (any length), template (B, V*3), style (B,) training-subject
        indices or (B, S) weights over them, audio_mask (B, S) bool for a padded batch. Call it
        on an ``eval()`` network. T per sequence is ``audio_frames``: round(seconds x fps),
        the frames that cover the audio, unless ``num_frames`` (B,) fixes it (e.g. the ground
        truth's length, for the metrics). Memory grows linearly with T: the key/value cache is
        allocated once, each step builds its own bias row, and wav2vec 2.0 runs in windows on
        audio over ``audio_window_s + 2 audio_context_s``."""
        vertices, frame_mask = self.predict_conditions(
            audio, template, style[None], audio_mask, num_frames
        )
        return vertices[0], frame_mask

    @torch.no_grad()
    def predict_conditions(self, audio, template, styles, audio_mask=None, num_frames=None):
        """:meth:`predict` under K conditions at once -> (vertices (K, B, T, V*3), frame_mask).

        ``styles`` (K, B) training-subject indices or (K, B, S) weights: condition k of
        sequence b. The audio is encoded once (the frozen CNN is most of a prediction's cost)
        and the K x B sequences run one batched autoregressive loop: what FaceFormer's test
        does one condition at a time, re-encoding the audio each time."""
        audio_tokens, frames = self.audio_encoder(audio, audio_mask, num_frames)
        length = int(frames.max())
        audio_tokens = audio_tokens[:, : self.tokens_per_frame * length]
        k, b = styles.shape[:2]
        weights = style_weights(styles.flatten(0, 1), self.num_subjects)
        style = self.style(weights.to(audio_tokens.dtype))
        offsets = self.autoregress(audio_tokens.repeat(k, 1, 1), style, length)
        frame_mask = torch.arange(length, device=frames.device)[None] < frames[:, None]
        offsets = offsets.float().view(k, b, length, -1)  # in place below: one tensor, not two
        return offsets.add_(template.reshape(1, b, 1, -1)), frame_mask
