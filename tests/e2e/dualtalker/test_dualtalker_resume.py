"""Resuming a DualTalker run is exact: 1 epoch + ``resume=last`` to 2 epochs == 2 straight.

Trained autoregressively (FaceFormer's mode) with dropout and wav2vec 2.0's SpecAugment and
LayerDrop active and shuffled batches, so this holds only when the checkpoint restores the RNG
states, the optimiser state and the data order; the CNN feature cache is rebuilt, not saved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.run import train
from tests.e2e.textnas.test_textnas_resume import _assert_same, _load
from tests.helpers.face import synthetic_voca, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_voca(tmp_path_factory)


def test_resume_is_bit_identical_to_uninterrupted(voca, tmp_path):
    common = [
        "model.teacher_forcing=false",
        "trainer.limit_train_batches=2",
        "evaluation.metrics_every_n_epochs=0",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    first = train("dualtalker_synthetic", tiny(a, voca, *common))
    w_first = _load(first.run_dir / "checkpoints/last.ckpt")
    resumed = train(
        "dualtalker_synthetic", tiny(a, voca, *common, "trainer.max_epochs=2", "resume=last")
    )
    straight = train("dualtalker_synthetic", tiny(b, voca, *common, "trainer.max_epochs=2"))

    assert resumed.run_dir == first.run_dir
    assert resumed.metrics["fit"]["global_step"] == straight.metrics["fit"]["global_step"] == 4
    r = _load(resumed.run_dir / "checkpoints/last.ckpt")
    s = _load(straight.run_dir / "checkpoints/last.ckpt")
    assert r["epoch"] == s["epoch"]
    _assert_same(r["state_dict"], s["state_dict"], "state_dict")
    _assert_same(r["optimizer_states"], s["optimizer_states"], "optimizer_states")
    assert resumed.metrics["fit"]["val/loss"] == straight.metrics["fit"]["val/loss"]
    assert any(
        not torch.equal(w_first["state_dict"][k], s["state_dict"][k]) for k in s["state_dict"]
    )
    assert r["suite"]["config"]["model"]["teacher_forcing"] is False
