"""The DualTalker LightningModule's pieces, without a Trainer: the loss sum, FaceFormer's
validation over conditions, the conditioning policy at test, the prediction files, the
per-vertex error and its plot, the optimiser's parameters, and the system's config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from experiments.config import ConfigError
from experiments.run import resolve
from lightning_modules.dualtalker import compute_losses
from lightning_modules.dualtalker.module import DualTalkerModule
from lightning_modules.dualtalker.plots import PerVertexError, vertex_error_figure

pytestmark = pytest.mark.usefixtures("one_thread")

SUBJECTS = ["s0", "s1", "s2"]
V = 12


def module(**model) -> DualTalkerModule:
    torch.manual_seed(0)
    options = {
        "audio_encoder": "tiny",
        "feature_dim": 16,
        "teacher_forcing": True,
        "lambda_dual": 0.5,
        "lambda_cons": 0.25,
        **model,
    }
    m = DualTalkerModule(
        options, V, SUBJECTS, fps=30, lip_vertices=[0, 1, 2], upper_face_vertices=[6, 7, 8]
    )
    # a non-zero head, so that predictions depend on the condition
    torch.nn.init.normal_(m.net.head.weight, std=0.01)
    return m.eval()


def batch(style: list[int], frames: int = 9) -> dict:
    g = torch.Generator().manual_seed(1)
    b = len(style)
    samples = int(frames / 30 * 16000)
    template = torch.randn(b, V * 3, generator=g) * 0.1
    return {
        "audio": torch.randn(b, samples, generator=g),
        "audio_mask": torch.ones(b, samples, dtype=torch.bool),
        "vertices": template[:, None] + 0.01 * torch.randn(b, frames, V * 3, generator=g),
        "frame_mask": torch.ones(b, frames, dtype=torch.bool),
        "template": template,
        "style": torch.tensor(style),
        "subject": [f"u{i}" if s < 0 else SUBJECTS[s] for i, s in enumerate(style)],
        "text": [""] * b,
        "name": [
            f"{'u' if s < 0 else SUBJECTS[s]}_sentence{21 + i:02d}" for i, s in enumerate(style)
        ],
    }


def test_loss_is_rec_plus_weighted_dual_and_consistency():
    m = module()
    b = batch([0, 1])
    out = m(b)
    parts = m.losses(out)
    # the auxiliary terms weighted by the batch's motion energy (one sequence: a scalar)
    single = [m.losses(m({k: v[i : i + 1] for k, v in b.items()})) for i in range(2)]
    for p in single:
        expected = p["rec"] + p["aux_scale"] * (0.5 * p["dual"] + 0.25 * p["cons"])
        assert torch.allclose(p["loss"], expected)
    assert torch.allclose(parts["loss"], (single[0]["loss"] + single[1]["loss"]) / 2)
    assert torch.equal(parts["loss"], compute_losses(out, m.options)["loss"])  # one place
    off = module(dual_target="none", consistency="none")  # the FaceFormer baseline
    parts = off.losses(off(b))
    assert "dual" not in parts and "cons" not in parts
    assert torch.equal(parts["loss"], parts["rec"])


def test_validation_loss_of_an_unseen_subject_is_the_mean_over_conditions():
    m = module()
    b = batch([-1, 1])
    with torch.no_grad():
        got = m.teacher_forced_losses(b)
        per_condition = []
        for c in range(len(SUBJECTS)):
            style = torch.tensor([c, 1])
            per_condition.append(m.losses(m(b, style=style, teacher_forcing=True))["rec"])
        seen_only = m.teacher_forced_losses({k: v[1:] for k, v in b.items()})["rec"]
    assert torch.allclose(got["rec"], torch.stack(per_condition).mean())
    assert not torch.allclose(per_condition[0], per_condition[1])  # the condition matters
    # a batch of seen subjects only: one pass, the subject's own condition
    assert torch.allclose(seen_only, m.losses(m({k: v[1:] for k, v in b.items()}))["rec"])


@pytest.mark.parametrize("policy,expected", [("all", SUBJECTS), ("mean", ["mean"]), ("s2", ["s2"])])
def test_unseen_conditioning_policy(policy, expected):
    m = module(unseen_condition=policy)
    b = batch([-1, 2])
    groups = m.conditioned_predictions(b)
    seen = [g for g in groups if g[0].tolist() == [1]]
    assert len(seen) == 1 and seen[0][1] == ["s2"]  # a training subject: its own condition
    unseen = [g for g in groups if g[0].tolist() == [0]]
    assert [g[1][0] for g in unseen] == expected
    for _, _, vertices, mask in groups:
        assert vertices.shape == (1, 9, V * 3) and mask.all()
    if policy == "mean":
        runs = [
            m.net.predict(
                b["audio"][:1],
                b["template"][:1],
                torch.tensor([c]),
                audio_mask=b["audio_mask"][:1],
                num_frames=torch.tensor([9]),
            )[0]
            for c in range(3)
        ]
        assert torch.allclose(unseen[0][2], torch.stack(runs).mean(0))


def test_prediction_files_follow_codetalker(tmp_path):
    vertices = torch.randn(2, 5, V * 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    DualTalkerModule.write_predictions(
        tmp_path, ["subjA_sentence21", "subjB_sentence22"], ["s0", "subjB"], vertices, mask
    )
    a = np.load(tmp_path / "subjA_sentence21_condition_s0.npy")
    b = np.load(tmp_path / "subjB_sentence22_condition_subjB.npy")
    assert a.shape == (3, V * 3) and b.shape == (5, V * 3) and a.dtype == np.float32
    np.testing.assert_allclose(a, vertices[0, :3].numpy())


def test_per_vertex_error_against_numpy_and_chunked_updates():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 7, V * 3, generator=g), torch.randn(3, 7, V * 3, generator=g)
    mask = torch.rand(3, 7, generator=g) > 0.3
    metric = PerVertexError(V)
    metric.update(pred[:1], target[:1], mask[:1])
    metric.update(pred[1:], target[1:], mask[1:])
    p, t, k = (
        pred.double().numpy().reshape(3, 7, V, 3),
        target.double().numpy().reshape(3, 7, V, 3),
        mask.numpy(),
    )
    expected = ((p - t) ** 2).sum(-1)[k].mean(0)
    np.testing.assert_allclose(metric.compute().numpy(), expected, rtol=1e-10)
    fig = vertex_error_figure(np.random.rand(V, 3), expected, lip_vertices=[0, 1], title="t")
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="errors for a template"):
        vertex_error_figure(np.random.rand(V + 1, 3), expected)


def test_optimiser_leaves_the_frozen_cnn_out():
    m = module()
    optimiser = m.configure_optimizers()
    params = {id(p) for group in optimiser.param_groups for p in group["params"]}
    cnn = list(m.net.audio_encoder.wav2vec.feature_extractor.parameters())
    assert cnn and not any(id(p) in params for p in cnn)
    assert id(m.net.head.weight) in params
    assert optimiser.param_groups[0]["lr"] == 1e-4


@pytest.mark.parametrize(
    "experiment",
    [
        "dualtalker_voca",
        "dualtalker_biwi",
        "faceformer_voca",
        "faceformer_biwi",
        "dualtalker_synthetic",
    ],
)
def test_experiments_compose_with_the_papers_settings(experiment):
    _, cfg = resolve(experiment)
    assert cfg.optim.lr == (1e-3 if experiment.endswith("synthetic") else 1e-4)
    baseline = experiment.startswith("faceformer")
    assert (cfg.model.dual_target == "none") == baseline
    assert (cfg.model.consistency == "none") == baseline
    if not experiment.endswith("synthetic"):
        assert cfg.trainer.max_epochs == 100 and cfg.checkpoint.every_n_epochs == 25
        assert cfg.checkpoint.save_top_k == -1 and cfg.checkpoint.monitor is None
        assert cfg.model.feature_dim == (128 if experiment.endswith("biwi") else 64)
        assert cfg.model.teacher_forcing is False  # FaceFormer trains autoregressively


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.dual_target=lips", "model.dual_target must be one of"),
        ("model.consistency=cosine+nce", "model.consistency: unknown term 'nce'"),
        ("data.dataset=biwi2", "data.dataset: expected one of vocaset, biwi"),
        ("model.unseen_condition=nobody", "model.unseen_condition='nobody'"),
        ("optim.lr=0", "optim.lr must be positive"),
    ],
)
def test_bad_config_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")) as info:
        resolve("dualtalker_synthetic", [override])
    assert "\n" not in str(info.value)
