"""DualTalker's losses: masked values by hand, and every dual/consistency term reaching the
shared encoders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.dualtalker import CharVocab, DualTalker, DualTalkerOptions, compute_losses
from lightning_modules.dualtalker.losses import infonce_consistency, sequence_mean
from lightning_modules.dualtalker.network import DualTalkerOutput

V = 30


def output(frames: list[int], dim: int = 8, seed: int = 0) -> DualTalkerOutput:
    g = torch.Generator().manual_seed(seed)
    b, t = len(frames), max(frames)
    mask = torch.arange(t)[None] < torch.tensor(frames)[:, None]
    return DualTalkerOutput(
        vertices=torch.randn(b, t, 3 * V, generator=g),
        target=torch.randn(b, t, 3 * V, generator=g),
        template=torch.zeros(b, 3 * V),
        frame_mask=mask,
        audio_features=torch.randn(b, t, dim, generator=g),
        motion_embeddings=torch.randn(b, t, dim, generator=g),
        lip_features=torch.randn(b, t, dim, generator=g),
    )


def test_reconstruction_is_the_mean_of_per_sequence_mses() -> None:
    out = output([6, 3])
    out.vertices[1, 3:] = 1e6  # padding must not count
    options = DualTalkerOptions(dual_target="none", consistency="none", lambda_vel=2.0)
    losses = compute_losses(out, options)
    per_seq, velocity = [], []
    for b, n in enumerate([6, 3]):
        p, y = out.vertices[b, :n], out.target[b, :n]
        per_seq.append(((p - y) ** 2).mean())
        velocity.append((((p[1:] - p[:-1]) - (y[1:] - y[:-1])) ** 2).mean())
    expected = torch.stack(per_seq).mean() + 2.0 * torch.stack(velocity).mean()
    assert torch.allclose(losses["rec"], expected)
    assert torch.equal(losses["loss"], losses["rec"]) and set(losses) == {"rec", "loss"}


def test_total_is_rec_plus_weighted_dual_and_consistency() -> None:
    out = output([5, 4])
    options = DualTalkerOptions(consistency="cosine+infonce", lambda_dual=0.3, lambda_cons=0.7)
    losses = compute_losses(out, options)
    dual = sequence_mean((out.lip_features - out.audio_features) ** 2, out.frame_mask)
    cosine = sequence_mean(
        1 - F.cosine_similarity(out.audio_features, out.motion_embeddings, dim=-1), out.frame_mask
    )
    assert torch.allclose(losses["dual"], dual)
    assert torch.allclose(losses["cons_cosine"], cosine)
    assert torch.allclose(losses["cons"], losses["cons_cosine"] + losses["cons_infonce"])
    # each sequence's auxiliary terms weighted by its motion energy E_i (mean squared GT offset)
    aux = []
    for i, n in enumerate([5, 4]):
        energy = (out.target[i, :n] - out.template[i]).square().mean()
        one = {
            k: v[i : i + 1, :n] for k, v in vars(out).items() if k != "template" and v is not None
        }
        terms = compute_losses(DualTalkerOutput(template=out.template[i : i + 1], **one), options)
        assert torch.allclose(terms["aux_scale"], energy)
        aux.append(energy * (0.3 * terms["dual"] + 0.7 * terms["cons"]))
    expected = losses["rec"] + torch.stack(aux).mean()
    assert torch.allclose(losses["loss"], expected)


def test_duality_regularizer_is_the_squared_gap_of_scaled_residual_energies() -> None:
    out = output([5, 2], seed=4)
    options = DualTalkerOptions(
        consistency="duality", duality_sigma_vertex=2.0, duality_sigma_feature=0.5
    )
    got = compute_losses(out, options)["cons_duality"]
    gaps = []
    for b, n in enumerate([5, 2]):
        primal = ((out.vertices[b, :n] - out.target[b, :n]) ** 2).mean() / 4.0
        dual = ((out.lip_features[b, :n] - out.audio_features[b, :n]) ** 2).mean() / 0.25
        gaps.append((primal - dual) ** 2)
    assert torch.allclose(got, torch.stack(gaps).mean())


def test_infonce_is_cross_entropy_over_each_sequences_own_frames() -> None:
    out = output([5, 3], seed=2)
    got = infonce_consistency(out.audio_features, out.motion_embeddings, out.frame_mask, 0.2)
    per_seq = []
    for b, n in enumerate([5, 3]):
        a = F.normalize(out.audio_features[b, :n], dim=-1)
        m = F.normalize(out.motion_embeddings[b, :n], dim=-1)
        logits = m @ a.t() / 0.2
        labels = torch.arange(n)
        per_seq.append(
            0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))
        )
    assert torch.allclose(got, torch.stack(per_seq), atol=1e-6)  # (B,): one per sequence


def test_ctc_is_per_character_and_zero_without_a_transcript() -> None:
    vocab = CharVocab()
    out = output([8, 8])
    out.lip_log_probs = torch.randn(2, 16, len(vocab)).log_softmax(-1)
    out.ctc_targets, out.ctc_target_lengths = vocab.batch(["abc", ""])
    out.ctc_input_lengths = torch.tensor([16, 16])
    losses = compute_losses(out, DualTalkerOptions(dual_target="ctc", consistency="none"))
    ref = F.ctc_loss(
        out.lip_log_probs[:1].transpose(0, 1),
        out.ctc_targets[:1, :3],
        torch.tensor([16]),
        torch.tensor([3]),
        reduction="sum",
    )
    assert torch.allclose(losses["dual_ctc"], ref / 3 / 2)
    assert torch.equal(losses["dual"], losses["dual_ctc"])  # dual_target=ctc: L_dual is the CTC


def shared_encoder_grads(options: DualTalkerOptions) -> dict[str, torch.Tensor]:
    """Gradients of the shared encoders' parameters under ``options``' total loss."""
    torch.manual_seed(0)
    net = DualTalker(options, num_vertices=V, num_subjects=2, fps=30, vocab=CharVocab()).eval()
    g = torch.Generator().manual_seed(1)
    frames, samples = 10, 6000
    template = torch.randn(1, 3 * V, generator=g)
    out = net(
        audio=torch.randn(1, samples, generator=g),
        audio_mask=torch.ones(1, samples, dtype=torch.bool),
        vertices=template[:, None] + 0.01 * torch.randn(1, frames, 3 * V, generator=g),
        frame_mask=torch.ones(1, frames, dtype=torch.bool),
        template=template,
        style=torch.tensor([1]),
        text=["speech"],
        teacher_forcing=True,
    )
    compute_losses(out, options)["loss"].backward()
    shared = {
        "motion": net.motion_encoder.proj.weight,
        "audio_proj": net.audio_encoder.proj.weight,
        "audio_transformer": net.audio_encoder.wav2vec.encoder.layers[
            0
        ].feed_forward.output_dense.weight,
    }
    return {
        k: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for k, p in shared.items()
    }


BASE = dict(audio_encoder="tiny", feature_dim=16, dual_target="none", consistency="none")
TERMS = {
    # name: (options with the term on at weight 1, encoders it must reach)
    "dual_features": (dict(dual_target="features", lambda_dual=1.0), ["motion"]),
    "dual_features_no_stopgrad": (
        dict(dual_target="features", lambda_dual=1.0, dual_detach_target=False),
        ["motion", "audio_proj", "audio_transformer"],
    ),
    "dual_ctc": (dict(dual_target="ctc", lambda_dual=1.0), ["motion"]),
    "cons_cosine": (
        dict(consistency="cosine", lambda_cons=1.0),
        ["motion", "audio_proj", "audio_transformer"],
    ),
    "cons_infonce": (
        dict(consistency="infonce", lambda_cons=1.0),
        ["motion", "audio_proj", "audio_transformer"],
    ),
    "cons_duality": (
        dict(dual_target="features", consistency="duality", lambda_dual=0.0, lambda_cons=1.0),
        ["motion"],
    ),
}
CYCLE = dict(dual_target="features", consistency="cycle", lambda_dual=0.0, lambda_cons=1.0)


@pytest.fixture(scope="module")
def rec_only_grads() -> dict[str, torch.Tensor]:
    return shared_encoder_grads(DualTalkerOptions(**BASE))


@pytest.mark.parametrize("term", list(TERMS))
def test_each_term_changes_the_gradient_of_the_shared_encoders(term, rec_only_grads) -> None:
    extra, reached = TERMS[term]
    grads = shared_encoder_grads(DualTalkerOptions(**{**BASE, **extra}))
    for name in reached:
        assert not torch.allclose(grads[name], rec_only_grads[name]), (term, name)
    if term == "dual_features":  # stop-gradient: the audio side is untouched
        assert torch.equal(grads["audio_proj"], rec_only_grads["audio_proj"])


def test_cycle_term_reaches_the_decoder_and_audio_encoder() -> None:
    """The closed loop: LR(E_m(y_hat)) -> audio features; y_hat depends on the decoder and on
    the audio encoder, so (with a trained, i.e. non-zero, head) the gradient reaches both."""
    torch.manual_seed(0)
    options = DualTalkerOptions(**{**BASE, **CYCLE})
    net = DualTalker(options, num_vertices=V, num_subjects=2, fps=30).eval()
    with torch.no_grad():
        net.head.weight.normal_(0, 0.1)
    template = torch.zeros(1, 3 * V)
    args = dict(
        audio=torch.randn(1, 6000),
        audio_mask=torch.ones(1, 6000, dtype=torch.bool),
        vertices=0.01 * torch.randn(1, 10, 3 * V),
        frame_mask=torch.ones(1, 10, dtype=torch.bool),
        template=template,
        style=torch.tensor([0]),
        teacher_forcing=True,
    )
    out = net(**args)
    losses = compute_losses(out, options)
    assert out.cycle_features is not None and "cons_cycle" in losses
    grads = torch.autograd.grad(
        losses["cons_cycle"],
        [net.head.weight, net.audio_encoder.proj.weight, net.motion_encoder.proj.weight],
    )
    assert all(bool(g.abs().sum() > 0) for g in grads)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dual_target="lips"), "model.dual_target"),
        (dict(consistency="cosine+mse"), "unknown term 'mse'"),
        (dict(consistency="cycle", dual_target="ctc"), "needs the lip reader's feature target"),
        (dict(feature_dim=30, num_heads=4), "divisible"),
    ],
)
def test_bad_options_name_the_key(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        DualTalkerOptions(**overrides)
