"""Training fixes: deterministic lip-reading targets, auxiliary weights that mean the same share
on every data set, audio/vertex length differences cut within a tolerance, the alignment taken
from the data set, a bounded CPU feature cache, the LVE/FDD vertex sets kept in checkpoints."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.errors import DataError
from datamodules.face.datamodule import FaceDataModule
from datamodules.face.readers import read_wav_info
from lightning_modules.dualtalker import DualTalker, DualTalkerOptions, compute_losses
from lightning_modules.dualtalker.module import REGIONS_KEY, DualTalkerModule
from lightning_modules.dualtalker.network import DualTalkerOutput
from tests.helpers.face_data import biwi, copy_of

pytestmark = pytest.mark.usefixtures("one_thread")

V, SUBJECTS = 20, ["s0", "s1"]


def make_net(**overrides) -> DualTalker:
    torch.manual_seed(0)
    options = DualTalkerOptions(**{"audio_encoder": "tiny", "feature_dim": 16, **overrides})
    return DualTalker(options, V, len(SUBJECTS), 30)


def make_batch(frames: int = 24, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    samples = int(frames / 30 * 16000)
    template = torch.randn(1, 3 * V, generator=g)
    return dict(
        audio=torch.randn(1, samples, generator=g),
        audio_mask=torch.ones(1, samples, dtype=torch.bool),
        vertices=template[:, None] + 0.01 * torch.randn(1, frames, 3 * V, generator=g),
        frame_mask=torch.ones(1, frames, dtype=torch.bool),
        template=template,
        style=torch.tensor([1]),
        teacher_forcing=True,
    )


@pytest.mark.parametrize("consistency", ["none", "cosine"])
def test_lip_reading_targets_come_from_a_deterministic_pass(consistency: str) -> None:
    """SpecAugment (masking half the frames), LayerDrop and dropout stay on the decoder's
    memory in training, not on the lip reader's and consistency terms' target."""
    net = make_net(consistency=consistency)
    net.audio_encoder.config.mask_time_prob = 0.5
    net.audio_encoder.wav2vec.config.layerdrop = 0.5
    batch = make_batch()
    reference = net.eval()(**batch).audio_features
    net.train()
    targets, memories = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        targets.append(net(**batch).audio_features)
        torch.manual_seed(seed)
        memories.append(net.audio_encoder(batch["audio"], None, torch.tensor([24]))[0])
    assert torch.allclose(targets[0], reference, atol=1e-6)
    assert torch.allclose(targets[1], reference, atol=1e-6)
    assert not torch.allclose(memories[0], memories[1])  # the decoder's memory is augmented
    assert net.training and net.audio_encoder.training  # the mode is restored
    # gradients into the audio encoder only where a term needs them (cosine, no detach)
    assert targets[0].requires_grad == (consistency == "cosine")


def output(scale: float) -> DualTalkerOutput:
    g = torch.Generator().manual_seed(5)
    b, t, d = 3, 7, 8
    mask = torch.arange(t)[None] < torch.tensor([7, 5, 2])[:, None]
    template = torch.randn(b, 3 * V, generator=g)
    return DualTalkerOutput(
        vertices=scale * (template[:, None] + 0.1 * torch.randn(b, t, 3 * V, generator=g)),
        target=scale * (template[:, None] + 0.1 * torch.randn(b, t, 3 * V, generator=g)),
        template=scale * template,
        frame_mask=mask,
        audio_features=torch.randn(b, t, d, generator=g),
        motion_embeddings=torch.randn(b, t, d, generator=g),
        lip_features=torch.randn(b, t, d, generator=g),
    )


def test_auxiliary_weights_mean_the_same_share_in_any_units() -> None:
    """Coordinates in metres (VOCA) or area-normalised units (BIWI): rescaling them scales
    L_rec by c^2 and the weighted auxiliary terms too, so the total is c^2 times the same."""
    options = DualTalkerOptions(consistency="cosine+infonce", lambda_dual=0.3, lambda_cons=0.2)
    metres, other = compute_losses(output(1.0), options), compute_losses(output(1e3), options)
    assert torch.allclose(other["rec"], 1e6 * metres["rec"], rtol=1e-4)
    assert torch.allclose(other["dual"], metres["dual"]) and "aux_scale" in metres
    share = [(x["loss"] - x["rec"]) / x["rec"] for x in (metres, other)]
    assert torch.allclose(share[0], share[1], rtol=1e-4) and float(share[0]) > 0.01


def test_the_alignment_comes_from_the_data_set() -> None:
    options = DualTalkerOptions(audio_encoder="tiny", feature_dim=16)
    assert DualTalker(options, V, 2, 25, dataset="biwi").tokens_per_frame == 2
    assert DualTalker(options, V, 2, 25, dataset="vocaset").tokens_per_frame == 1
    assert DualTalker(options, V, 2, 30).tokens_per_frame == 1
    with pytest.raises(ValueError, match="dataset must be one of vocaset, biwi"):
        DualTalker(options, V, 2, 25, dataset="biwi25")


def test_the_feature_cache_is_bounded_and_on_the_cpu() -> None:
    net = make_net().eval()
    encoder = net.audio_encoder
    one = encoder.cnn_features(torch.randn(16000), 16000)  # (49, 32) float32: 6272 bytes
    size = one.numel() * one.element_size()
    encoder.cache_limit = 2 * size + 10  # room for two sequences of 1 s
    calls = []
    encoder.wav2vec.feature_extractor.register_forward_hook(lambda *_: calls.append(1))
    audio = torch.randn(16000)
    for name in ("a", "b", "a", "c", "a", "b"):
        encoder.cnn_features(audio, 16000, name)
    # a, b computed; a from the cache; c evicts b (a was used last); a cached; b again
    assert len(calls) == 4 and list(encoder.cache) == [("a", 16000), ("b", 16000)]
    assert encoder.cache_bytes <= encoder.cache_limit
    assert all(t.device.type == "cpu" for t in encoder.cache.values())
    assert not make_net(feature_cache=False).audio_encoder.feature_cache


def module(lips=None, upper=None) -> DualTalkerModule:
    torch.manual_seed(0)
    options = {"audio_encoder": "tiny", "feature_dim": 16}
    return DualTalkerModule(options, V, SUBJECTS, 30, lip_vertices=lips, upper_face_vertices=upper)


def test_vertex_sets_are_kept_in_checkpoints() -> None:
    saved = module(lips=[0, 1, 2], upper=[5, 6])
    checkpoint = {"state_dict": saved.state_dict()}
    saved.on_save_checkpoint(checkpoint)
    assert REGIONS_KEY in checkpoint and not any("vertices" in k for k in checkpoint["state_dict"])
    # a module built without the sets (a test folder without region files) gets them back
    bare = module()
    bare.load_state_dict(checkpoint["state_dict"], strict=True)
    bare.on_load_checkpoint(checkpoint)
    assert bare.lips.tolist() == [0, 1, 2] and bare.upper.tolist() == [5, 6]
    assert set(bare.scores["test"]) == {"vertex_error", "lve", "fdd"}
    # a checkpoint from before the entry loads strictly and keeps the sets given
    old = {"state_dict": saved.state_dict()}
    given = module(lips=[3, 4])
    given.load_state_dict(old["state_dict"], strict=True)
    given.on_load_checkpoint(old)
    assert given.lips.tolist() == [3, 4] and given.upper is None
    # the data's set wins over a different stored one, with a warning
    with pytest.warns(UserWarning, match="lip_vertices: the checkpoint's set"):
        given.on_load_checkpoint(checkpoint)
    assert given.lips.tolist() == [3, 4] and given.upper.tolist() == [5, 6]


def test_one_frame_of_difference_is_cut_without_a_warning(tmp_path: Path) -> None:
    """A frame more or less is the rate conversion's rounding (half of VOCASET's 60 fps files
    have an odd frame count): cut to the shorter, no warning."""
    root = copy_of(biwi(), tmp_path / "biwi")
    path = root / "vertices_npy" / "M3_e01.npy"
    stored = np.load(path)
    audio_frames = round(read_wav_info(root / "wav" / "M3_e01.wav").seconds * 25)
    assert len(stored) == audio_frames
    np.save(path, np.concatenate([stored, stored[:1]]))
    dm = FaceDataModule("biwi", root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    assert not [w for w in caught if "M3_e01" in str(w.message)]
    sequence = next(s for s in dm.folder.sequences(["M3"], [1], "train") if s.name == "M3_e01")
    assert sequence.frames == audio_frames


def test_audio_and_vertices_are_cut_to_the_shorter_within_the_tolerance(tmp_path: Path) -> None:
    root = copy_of(biwi(), tmp_path / "biwi")
    path = root / "vertices_npy" / "M3_e01.npy"
    stored = np.load(path)
    seconds = read_wav_info(root / "wav" / "M3_e01.wav").seconds
    audio_frames = round(seconds * 25)
    np.save(path, np.concatenate([stored, stored[:4]]))  # 4 frames (0.16 s) longer
    dm = FaceDataModule("biwi", root, length_tolerance_s=0.25)
    with pytest.warns(UserWarning, match=r"sequence M3_e01: audio .* both cut to") as caught:
        dm.setup("fit")
    assert sum("M3_e01" in str(w.message) for w in caught) == 1  # one warning
    sequence = next(s for s in dm.folder.sequences(["M3"], [1], "train") if s.name == "M3_e01")
    assert sequence.frames == audio_frames and len(sequence.audio) <= round(seconds * 16000)
    with pytest.raises(DataError, match=r"data.length_tolerance_s=0.1 s"):
        FaceDataModule("biwi", root, length_tolerance_s=0.1).setup("fit")
    # a config stored before the key (data.length_tolerance, frames) still loads: 5 / 25 s
    assert FaceDataModule("biwi", root, length_tolerance=5).length_tolerance_s == 0.2
    # vertices shorter than the audio: the audio is cut to the vertices' frames
    np.save(path, stored[:-3])
    dm = FaceDataModule("biwi", root)
    with pytest.warns(UserWarning, match="M3_e01"):
        dm.setup("fit")
    sequence = next(s for s in dm.folder.sequences(["M3"], [1], "train") if s.name == "M3_e01")
    assert sequence.frames == len(stored) - 3 and len(sequence.audio) == sequence.frames * 640
