"""DualTalker inference from audio alone: the key/value cache against FaceFormer's prefix re-run,
any length (beyond FaceFormer's 600-frame table, linear memory), wav2vec 2.0 on long audio
(exact CNN chunks, transformer windows), frames covering the audio at 25 and 30 fps, and
``predict_step`` / ``trainer.predict`` without ground truth; CodeTalker's ``cal_metric.py``
formula (numpy, written here from its description) on the suite's prediction files."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import Wav2Vec2Config, Wav2Vec2Model

from lightning_modules.dualtalker import DualTalker, DualTalkerOptions
from lightning_modules.dualtalker.audio_encoder import (
    NAMED_CONFIGS,
    audio_frames,
    cnn_length,
    first_conv_moments,
    frozen_cnn,
    normalise,
)
from lightning_modules.dualtalker.module import DualTalkerModule

pytestmark = pytest.mark.usefixtures("one_thread")

V, SUBJECTS, RATE = 20, 3, 16_000


def make_net(fps: int = 30, **overrides) -> DualTalker:
    torch.manual_seed(0)
    options = DualTalkerOptions(
        **{"audio_encoder": "tiny", "feature_dim": 16, "dual_target": "none", **overrides}
    )
    dataset = "biwi" if fps == 25 else "vocaset"
    net = DualTalker(options, V, SUBJECTS, fps, dataset=dataset).eval()
    with torch.no_grad():  # a trained (non-zero) head: outputs depend on the feedback
        net.head.weight.normal_(0, 0.05)
        net.head.bias.normal_(0, 0.01)
    return net


def faceformer_predict(net: DualTalker, tokens: torch.Tensor, style: torch.Tensor, frames: int):
    """FaceFormer's ``predict``: re-run the whole decoder on the prefix at every step."""
    mask = torch.ones(tokens.shape[0], frames, dtype=torch.bool)
    inputs = style[:, None]
    for _ in range(frames):
        out = net.head(net.decoder(net.ppe(inputs), tokens, mask[:, : inputs.shape[1]]))
        inputs = torch.cat([inputs, net.motion_encoder(out[:, -1:]) + style[:, None]], dim=1)
    return out


@pytest.mark.parametrize("fps", [30, 25])
def test_cached_inference_equals_faceformers_uncached_loop(fps: int) -> None:
    net = make_net(fps)
    audio = torch.randn(2, 16000)
    style_ids = torch.tensor([0, 2])
    with torch.no_grad():
        tokens, frames = net.audio_encoder(audio, None, None)
        style = net.style(torch.nn.functional.one_hot(style_ids, SUBJECTS).float())
        reference = faceformer_predict(net, tokens, style, int(frames[0]))
        cached = net.autoregress(tokens, style, int(frames[0]))  # preallocated cache
    vertices, mask = net.predict(audio, torch.zeros(2, 3 * V), style_ids)
    assert torch.allclose(cached, reference, atol=1e-5)
    assert torch.allclose(vertices, reference, atol=1e-5) and bool(mask.all())


@pytest.mark.parametrize("fps", [30, 25])
@pytest.mark.parametrize("seconds", [0.7, 1.0, 2.01, 3.33])
def test_a_prediction_covers_its_audio(fps: int, seconds: float) -> None:
    """round(seconds x fps) frames (FaceFormer's 25 fps path floors twice: one short)."""
    net = make_net(fps)
    samples = int(seconds * RATE)
    vertices, mask = net.predict(torch.randn(1, samples), torch.zeros(1, 3 * V), torch.tensor([1]))
    expected = math.floor(samples * fps / RATE + 0.5)
    assert audio_frames(samples, fps) == expected
    assert vertices.shape == (1, expected, 3 * V) and bool(mask.all())
    if fps == 25 and seconds == 1.0:  # the case FaceFormer gets wrong
        assert cnn_length(samples, net.audio_encoder.config) // 2 == expected - 1


def test_audio_beyond_the_positional_table() -> None:
    """FaceFormer's table stops at 600 frames (20 s at 30 fps, FaceFormer issue #48): 21 s runs,
    and the causal decoder's first frames equal a run on the first frames' tokens alone."""
    net = make_net(30)
    audio = torch.randn(1, 21 * RATE)
    vertices, mask = net.predict(audio, torch.zeros(1, 3 * V), torch.tensor([0]))
    assert vertices.shape[1] == 630 > 600 and bool(torch.isfinite(vertices).all())
    with torch.no_grad():
        tokens, _ = net.audio_encoder(audio, None, None)
        style = net.style(torch.nn.functional.one_hot(torch.tensor([0]), SUBJECTS).float())
        short = net.autoregress(tokens[:, :90], style, 90)
    assert torch.allclose(vertices[:, :90], short, atol=1e-5)
    assert torch.allclose(vertices[:, 600:630], vertices[:, 600:630])  # finite, compared


class LargestTensor(TorchDispatchMode):
    """The largest tensor any op creates (bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def test_long_audio_runs_in_linear_memory() -> None:
    """Quadrupling the audio at most quadruples the largest tensor: no T x T mask, the wav2vec
    transformer in windows, the CNN in chunks (a T x T bias would grow 16x)."""
    net = make_net(30, audio_window_s=2.0, audio_context_s=1.0)
    net.audio_encoder.cnn_chunk_features = 20  # then the largest tensor is the audio itself
    largest = []
    for seconds in (6, 24):
        with LargestTensor() as probe:
            vertices, _ = net.predict(
                torch.randn(1, seconds * RATE), torch.zeros(1, 3 * V), torch.tensor([0])
            )
        assert vertices.shape[1] == seconds * 30
        largest.append(probe.largest)
    assert largest[1] <= 4.2 * largest[0], largest


def test_the_cnn_in_chunks_equals_one_pass() -> None:
    """Exact: the first layer's GroupNorm (wav2vec2-base) gets whole-sequence statistics; a
    LayerNorm CNN (wav2vec2-large-lv60) is local."""
    torch.manual_seed(0)
    x = normalise(torch.randn(37_000))[None]
    for norm in ("group", "layer"):
        config = Wav2Vec2Config(**{**NAMED_CONFIGS["tiny"], "feat_extract_norm": norm})
        cnn = Wav2Vec2Model(config).feature_extractor.eval()
        with torch.no_grad():
            whole = cnn(x)[0]
            for chunk in (7, 40, 1000):
                chunked = frozen_cnn(cnn, x, config, chunk)
                assert chunked.shape == whole.shape == (32, cnn_length(37_000, config))
                assert torch.allclose(chunked, whole, atol=1e-5), (norm, chunk)


@pytest.mark.parametrize("bias", [False, True])
def test_first_conv_moments_from_the_windows(bias: bool) -> None:
    """Each channel's mean and variance over time of the first convolution's output, from the
    windows' mean and Gram matrix, equal those of the output itself (float64), in any chunks."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 24, kernel_size=10, stride=5, bias=bias)
    x = normalise(torch.randn(12_347)) * torch.linspace(0.2, 3, 12_347) + 0.1  # not stationary
    with torch.no_grad():
        out = F.conv1d(
            x.double()[None, None],
            conv.weight.double(),
            None if conv.bias is None else conv.bias.double(),
            stride=5,
        )[0]
        var, mean = torch.var_mean(out, dim=-1, correction=0)
        for chunk in (5, 333, 100_000):
            got_mean, got_var = first_conv_moments(conv, x, chunk)
            assert torch.allclose(got_mean, mean, rtol=1e-9, atol=1e-12), chunk
            assert torch.allclose(got_var, var, rtol=1e-9, atol=1e-12), chunk


def test_conditions_share_one_audio_encoding() -> None:
    """K conditions of a batch at once: the audio is encoded once, and each condition's
    vertices equal its own ``predict``."""
    net = make_net()
    audio, template = torch.randn(2, 16_000), torch.randn(2, 3 * V) * 0.1
    styles = torch.tensor([[0, 2], [1, 1], [2, 0]])  # (K=3, B=2)
    calls = []
    original = net.audio_encoder.forward
    net.audio_encoder.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    together, mask = net.predict_conditions(audio, template, styles)
    assert len(calls) == 1 and together.shape == (3, 2, 30, 3 * V) and mask.all()
    for k in range(3):
        alone, _ = net.predict(audio, template, styles[k])
        torch.testing.assert_close(together[k], alone, atol=1e-5, rtol=1e-5)
    mixed = torch.tensor([[0.5, 0.5, 0.0]]).expand(1, 2, 3)  # weights over the subjects
    assert net.predict_conditions(audio, template, mixed)[0].shape == (1, 2, 30, 3 * V)


def test_wav2vec_windows() -> None:
    """One pass where the file fits a window (window + 2 x context); beyond it, each window's
    tokens are exactly the whole-file encoder's on the window's span with its context."""
    net = make_net(30)
    encoder = net.audio_encoder
    hidden = torch.randn(2, 100, encoder.config.hidden_size)
    mask = torch.ones(2, 100, dtype=torch.bool)
    mask[1, 70:] = False
    with torch.no_grad():
        whole = encoder._run(hidden, mask)
        encoder.window_s, encoder.context_s = 60 / 30, 20 / 30  # 60 + 2 x 20 tokens: fits
        assert torch.equal(encoder.transformer(hidden, mask), whole)
        encoder.window_s, encoder.context_s = 30 / 30, 10 / 30  # windows [0,30) [30,60) ...
        windowed = encoder.transformer(hidden, mask)
        assert windowed.shape == whole.shape
        for start, lo, hi in ((0, 0, 40), (30, 20, 70), (60, 50, 100), (90, 80, 100)):
            part = encoder._run(hidden[:, lo:hi], mask[:, lo:hi].clone().fill_(True))
            own = encoder._run(hidden[:1, lo:hi], mask[:1, lo:hi])
            end = min(start + 30, 100)
            assert torch.allclose(windowed[0, start:end], own[0, start - lo : end - lo], atol=1e-5)
            if hi <= 70:  # sequence 1 is real there
                assert torch.allclose(
                    windowed[1, start:end], part[1, start - lo : end - lo], atol=1e-5
                )
        assert bool(torch.isfinite(windowed).all())  # a window all padding stays finite
        assert not torch.allclose(windowed, whole, atol=1e-3)  # context is cut: documented


# ------------------------------------------------------------------ the LightningModule

TRAIN = ["F2", "F3", "M3"]
LIPS, UPPER = [0, 1, 2, 3], [10, 11, 12, 13, 14]


def biwi_module() -> DualTalkerModule:
    torch.manual_seed(0)
    options = {"audio_encoder": "tiny", "feature_dim": 16, "dual_target": "none"}
    module = DualTalkerModule(
        options,
        V,
        TRAIN,
        fps=25,
        dataset="biwi",
        lip_vertices=LIPS,
        upper_face_vertices=UPPER,
        evaluation={"plots": False},
    )
    torch.nn.init.normal_(module.net.head.weight, std=0.01)
    return module.eval()


def biwi_batch(seconds: list[float], style: list[int], with_truth: bool = True) -> dict:
    """A padded batch; each ground truth exactly round(seconds x 25) frames long."""
    g = torch.Generator().manual_seed(3)
    samples = [int(s * RATE) for s in seconds]
    frames = [audio_frames(n, 25) for n in samples]
    b, s, t = len(samples), max(samples), max(frames)
    template = torch.randn(b, 3 * V, generator=g) * 0.1
    batch = {
        "audio": torch.randn(b, s, generator=g),
        "audio_mask": torch.arange(s)[None] < torch.tensor(samples)[:, None],
        "template": template,
        "style": torch.tensor(style),
        "name": [f"{TRAIN[i] if i >= 0 else 'F1'}_e{37 + k}" for k, i in enumerate(style)],
    }
    if with_truth:
        batch["frame_mask"] = torch.arange(t)[None] < torch.tensor(frames)[:, None]
        batch["vertices"] = template[:, None] + 0.02 * torch.randn(b, t, 3 * V, generator=g)
        batch["text"] = [""] * b
    return batch


def codetalker_metrics(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]):
    """``cal_metric.py`` (CodeTalker, main/cal_metric.py) in numpy: the prediction cut to the
    ground truth's length (it must be at least that long); LVE = the mean over all frames of
    the max over lip vertices of the squared L2 error; FDD = the mean over sequences of
    mean_U std_t ||m_gt||^2 - mean_U std_t ||m_pred||^2, m = vertices - template."""
    maxima, deviations = [], []
    for pred, gt, template in pairs:
        pred, gt = pred.reshape(len(pred), -1, 3), gt.reshape(len(gt), -1, 3)
        assert pred.shape[0] >= gt.shape[0], "cal_metric.py needs the whole ground truth"
        pred = pred[: gt.shape[0]]
        maxima.extend(((pred[:, LIPS] - gt[:, LIPS]) ** 2).sum(-1).max(1))
        template = template.reshape(-1, 3)
        spread = [((x - template)[:, UPPER] ** 2).sum(-1).std(0).mean() for x in (gt, pred)]
        deviations.append(spread[0] - spread[1])
    return np.mean(maxima), np.mean(deviations)


def test_codetalkers_formula_on_the_prediction_files(tmp_path) -> None:
    """BIWI at 25 fps, ground truth exactly as long as the audio: the files cover it, and
    cal_metric's LVE and FDD on them are the suite's."""
    module = biwi_module()
    batches = [biwi_batch([2.0, 1.52], [0, 2]), biwi_batch([1.0], [1])]
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    scores = trainer.test(module, dataloaders=torch.utils.data.DataLoader(batches, None))[0]
    pairs = []
    for batch in batches:
        for i, name in enumerate(batch["name"]):
            subject = TRAIN[int(batch["style"][i])]
            pred = np.load(tmp_path / "predictions" / f"{name}_condition_{subject}.npy")
            n = int(batch["frame_mask"][i].sum())
            assert pred.shape == (n, 3 * V)  # covers the audio; FaceFormer's is one short
            pairs.append((pred, batch["vertices"][i, :n].numpy(), batch["template"][i].numpy()))
    lve, fdd = codetalker_metrics(pairs)
    assert scores["test/lve"] == pytest.approx(lve / 1e-4, rel=1e-5)
    assert scores["test/fdd"] == pytest.approx(fdd / 1e-5, rel=1e-4, abs=1e-6)


def test_trainer_predict_without_ground_truth(tmp_path) -> None:
    """Seen speakers on their own condition, an unseen one (style -1) on every training
    condition (``model.unseen_condition=all``); frames from the audio; files written."""
    module = biwi_module()
    batches = [biwi_batch([1.2, 0.84], [1, -1], with_truth=False)]
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, default_root_dir=tmp_path
    )
    records = trainer.predict(module, dataloaders=torch.utils.data.DataLoader(batches, None))[0]
    got = {(r["name"], r["condition"]): r["vertices"] for r in records}
    assert set(got) == {("F3_e37", "F3")} | {("F1_e38", s) for s in TRAIN}
    assert got["F3_e37", "F3"].shape == (30, 3 * V)
    assert all(got["F1_e38", s].shape == (21, 3 * V) for s in TRAIN)
    assert not torch.allclose(got["F1_e38", "F2"], got["F1_e38", "M3"])
    saved = np.load(tmp_path / "predictions" / "F1_e38_condition_M3.npy")
    assert np.array_equal(saved, got["F1_e38", "M3"].numpy())
    # a single sequence alone gives the batched result
    alone = module.net.predict(
        batches[0]["audio"][1:, : int(0.84 * RATE)],
        batches[0]["template"][1:],
        torch.tensor([module.condition_index("M3")]),
    )[0][0]
    assert torch.allclose(alone, got["F1_e38", "M3"], atol=1e-5)
    with pytest.raises(ValueError, match="F2, F3, M3"):
        module.condition_index("F1")
    # without a Trainer (a render command): the same records, nothing written
    bare = biwi_module().predict_step(batches[0])
    assert [(r["name"], r["condition"]) for r in bare] == [
        (r["name"], r["condition"]) for r in records
    ]
    assert torch.allclose(bare[0]["vertices"], records[0]["vertices"], atol=1e-6)
