"""DualTalker's losses: L = L_rec + lambda_dual L_dual + lambda_cons L_cons.

Weights and their reasons: docs/dualtalker.md, "The model", "Losses and their default weights".

- L_rec: FaceFormer's MSE on absolute vertices (+ lambda_vel x MSE of the frame-to-frame
  velocity, VOCA/SelfTalk's term, 0 by default as in FaceFormer).
- L_dual: lip reading, the dual task: MSE between the lip reader's output and the shared audio
  encoder's frame features (stop-gradient on the target by default), + ctc_weight x CTC over
  characters for sequences with a transcript.
- L_cons: the switchable cross-modal consistency terms, summed: ``cosine`` (1 - cos between
  the per-frame audio features and motion embeddings), ``infonce`` (each motion frame must pick
  its own audio frame among the sequence's frames, both directions), ``cycle`` (the lip reader
  applied to the *predicted* motion must give the audio features back: the dual-learning loop),
  ``duality`` (dual supervised learning's probabilistic-duality regularizer, Xia et al. 2017,
  arXiv:1707.00415, with Gaussian likelihoods).

Every term is a masked mean per sequence (real frames only), then a mean over sequences: a
batch of B sequences gives the mean of the B per-sequence losses (FaceFormer trains one sequence
per step), whatever the padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .network import DualTalkerOptions, DualTalkerOutput


def per_sequence_mean(values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """values (B, T, ...) -> (B,) mean over each sequence's real frames (and trailing dims)."""
    values = values.reshape(*frame_mask.shape, -1)
    mask = frame_mask[..., None].to(values.dtype)
    return (values * mask).sum((1, 2)) / (mask.sum((1, 2)) * values.shape[-1]).clamp_min(1)


def sequence_mean(values: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """The per-sequence means, averaged over the sequences that have any real frame."""
    return per_sequence_mean(values, frame_mask)[frame_mask.any(1)].mean()


def reconstruction_loss(out: DualTalkerOutput, lambda_vel: float = 0.0) -> torch.Tensor:
    loss = sequence_mean((out.vertices - out.target).square(), out.frame_mask)
    if lambda_vel:
        velocity_error = (out.vertices.diff(dim=1) - out.target.diff(dim=1)).square()
        pairs = out.frame_mask[:, 1:] & out.frame_mask[:, :-1]
        loss = loss + lambda_vel * sequence_mean(velocity_error, pairs)
    return loss


def motion_energy(out: DualTalkerOutput) -> torch.Tensor:
    """(B,) each sequence's mean squared GT offset from its template: the reconstruction loss
    of the untrained model (which outputs the template), in the data set's units squared."""
    return per_sequence_mean((out.target - out.template[:, None]).square(), out.frame_mask)


def feature_regression_loss(features, audio_features, frame_mask, detach: bool = True):
    """(B,) per-sequence MSE to the audio features (stop-gradient on them with ``detach``)."""
    target = audio_features.detach() if detach else audio_features
    return per_sequence_mean((features - target).square(), frame_mask)


def ctc_loss(out: DualTalkerOutput) -> torch.Tensor:
    """(B,) CTC (blank 0, infinities zeroed) per character of each sequence, 0 for a sequence
    without transcript (as a per-sequence step without text would be)."""
    has_text = out.ctc_target_lengths > 0
    per_sequence = F.ctc_loss(
        out.lip_log_probs.transpose(0, 1).float(),
        out.ctc_targets,
        out.ctc_input_lengths,
        out.ctc_target_lengths,
        blank=0,
        reduction="none",
        zero_infinity=True,
    )
    per_character = per_sequence / out.ctc_target_lengths.clamp_min(1)
    return torch.where(has_text, per_character, torch.zeros_like(per_character))


def cosine_consistency(audio_features, motion_embeddings, frame_mask) -> torch.Tensor:
    """(B,) per-sequence mean of 1 - cos(audio feature, motion embedding)."""
    cosine = F.cosine_similarity(audio_features, motion_embeddings, dim=-1, eps=1e-6)
    return per_sequence_mean(1.0 - cosine, frame_mask)


def infonce_consistency(audio_features, motion_embeddings, frame_mask, temperature: float):
    """(B,) symmetric InfoNCE over the frames of each sequence (other frames are negatives)."""
    a = F.normalize(audio_features, dim=-1, eps=1e-6)
    m = F.normalize(motion_embeddings, dim=-1, eps=1e-6)
    logits = m @ a.transpose(1, 2) / temperature  # (B, T motion, T audio)
    diagonal = torch.arange(logits.shape[1], device=logits.device)

    def own_frame_nll(x: torch.Tensor) -> torch.Tensor:
        # Padded columns are no negatives; padded rows get a finite row (dropped by the mean).
        x = x.masked_fill(~frame_mask[:, None, :], float("-inf"))
        x = torch.where(frame_mask[:, :, None], x, torch.zeros_like(x))
        return -x.log_softmax(-1)[:, diagonal, diagonal]

    motion_to_audio, audio_to_motion = own_frame_nll(logits), own_frame_nll(logits.transpose(1, 2))
    return per_sequence_mean(0.5 * (motion_to_audio + audio_to_motion), frame_mask)


def duality_regularizer(out: DualTalkerOutput, sigmas: tuple[float, float], detach: bool):
    """Dual supervised learning's regularizer (Xia et al. 2017), (log p(y|x) - log p(x|y))^2 with
    the marginals dropped and Gaussian likelihoods: per sequence (B,), the squared difference of
    the two tasks' residual energies, each scaled by its variance (sigma_vertex^2,
    sigma_feature^2)."""
    target = out.audio_features.detach() if detach else out.audio_features
    primal = per_sequence_mean((out.vertices - out.target).square(), out.frame_mask)
    dual = per_sequence_mean((out.lip_features - target).square(), out.frame_mask)
    return (primal / sigmas[0] ** 2 - dual / sigmas[1] ** 2).square()


def consistency_terms(out: DualTalkerOutput, o: DualTalkerOptions) -> dict[str, torch.Tensor]:
    """The switched-on consistency terms by name, each (B,)."""
    terms = {}
    for name in o.consistency_terms:
        if name == "cosine":
            terms[name] = cosine_consistency(
                out.audio_features, out.motion_embeddings, out.frame_mask
            )
        elif name == "infonce":
            terms[name] = infonce_consistency(
                out.audio_features, out.motion_embeddings, out.frame_mask, o.infonce_temperature
            )
        elif name == "duality" and out.lip_features is not None:
            sigmas = (o.duality_sigma_vertex, o.duality_sigma_feature)
            terms[name] = duality_regularizer(out, sigmas, o.dual_detach_target)
        elif name == "cycle" and out.cycle_features is not None:
            terms[name] = feature_regression_loss(
                out.cycle_features, out.audio_features, out.frame_mask, o.dual_detach_target
            )
    return terms


def compute_losses(out: DualTalkerOutput, options: DualTalkerOptions) -> dict[str, torch.Tensor]:
    """Every term by name (means over the sequences with a real frame); ``loss`` is the one to
    optimise, computed here only. Terms that are off are absent.

        loss = L_rec + mean_i E_i (lambda_dual L_dual,i + lambda_cons L_cons,i)

    E_i (:func:`motion_energy`, no gradient; logged as ``aux_scale``, its batch mean) carries
    the data set's units: L_rec scales with the square of the coordinates (VOCA metres, BIWI
    area-normalised), the auxiliary terms do not, so a weight means the same share of the
    reconstruction loss on every data set (docs/dualtalker.md, "Losses and their default
    weights"). Per sequence, so a batch's loss is still the mean of its sequences' losses.
    """
    o = options
    valid = out.frame_mask.any(1)
    losses = {"rec": reconstruction_loss(out, o.lambda_vel)}
    dual = None  # (B,)
    if out.lip_features is not None and o.uses_features:
        dual = feature_regression_loss(
            out.lip_features, out.audio_features, out.frame_mask, o.dual_detach_target
        )
        losses["dual_features"] = dual[valid].mean()
    if out.lip_log_probs is not None and out.ctc_targets is not None:
        ctc = ctc_loss(out)
        losses["dual_ctc"] = ctc[valid].mean()
        ctc = ctc if o.dual_target == "ctc" else o.ctc_weight * ctc
        dual = ctc if dual is None else dual + ctc
    terms = consistency_terms(out, o)
    losses.update({f"cons_{k}": v[valid].mean() for k, v in terms.items()})
    auxiliary = None
    if dual is not None:
        losses["dual"] = dual[valid].mean()
        auxiliary = o.lambda_dual * dual
    if terms:
        cons = sum(terms.values())
        losses["cons"] = cons[valid].mean()
        auxiliary = o.lambda_cons * cons if auxiliary is None else auxiliary + o.lambda_cons * cons
    loss = losses["rec"]
    if auxiliary is not None:
        energy = motion_energy(out).detach()
        losses["aux_scale"] = energy[valid].mean()
        loss = loss + (energy * auxiliary)[valid].mean()
    losses["loss"] = loss
    return losses
