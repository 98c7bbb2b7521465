"""Resuming a TextNAS run is exact: 1 epoch + ``resume=last`` to 2 epochs == 2 straight epochs.

Dropout is on (keep 0.8 everywhere, the defaults) and batches are shuffled, so this only holds
when the checkpoint restores the RNG states (``experiments.callbacks.RNGState``), the optimizer
and scheduler states and the data order.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.run import train
from tests.e2e.conftest import tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same(a, b, where: str) -> None:
    """Exact equality of nested checkpoint parts (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("schedule", ["cosine_restarts", "constant"])
def test_resume_is_bit_identical_to_uninterrupted(schedule, sst_dir, tiny_arch, tmp_path):
    common = [
        f"data.root={sst_dir}",
        f"model.architecture={tiny_arch}",
        f"optim.schedule={schedule}",
        "optim.t0=2",  # cosine_restarts: epoch 1 runs at half the lr, so a wrong restore shows
        "trainer.limit_train_batches=5",
    ]
    a, b = tmp_path / "a", tmp_path / "b"
    first = train("textnas_train_synthetic", tiny(a, *common, "trainer.max_epochs=1"))
    w_first = _load(first.run_dir / "checkpoints/last.ckpt")
    resumed = train(
        "textnas_train_synthetic", tiny(a, *common, "trainer.max_epochs=2", "resume=last")
    )
    straight = train("textnas_train_synthetic", tiny(b, *common, "trainer.max_epochs=2"))

    assert resumed.run_dir == first.run_dir  # continued in its own folder
    assert [p.name for p in (a / "textnas_train_synthetic").iterdir()] == [first.run_dir.name]
    assert resumed.metrics["fit"]["global_step"] == straight.metrics["fit"]["global_step"] == 10
    r = _load(resumed.run_dir / "checkpoints/last.ckpt")
    s = _load(straight.run_dir / "checkpoints/last.ckpt")
    assert r["global_step"] == s["global_step"] == 10 and r["epoch"] == s["epoch"]
    _assert_same(r["state_dict"], s["state_dict"], "state_dict")  # every weight and BN buffer
    _assert_same(r["optimizer_states"], s["optimizer_states"], "optimizer_states")
    _assert_same(r["lr_schedulers"], s["lr_schedulers"], "lr_schedulers")
    assert resumed.metrics["fit"]["val/loss"] == straight.metrics["fit"]["val/loss"]
    # it did train on after the resume, and with dropout active
    assert any(
        not torch.equal(w_first["state_dict"][k], s["state_dict"][k]) for k in s["state_dict"]
    )
    assert r["suite"]["config"]["model"]["cnn_keep"] == 0.8


def test_resume_with_more_epochs_keeps_a_cosine_schedule_annealed(sst_dir, tiny_arch, tmp_path):
    """optim.schedule=cosine, 1 epoch, then resume=last with max_epochs=4: the restored
    CosineAnnealingLR follows the new max_epochs instead of climbing back up past its old T_max
    (a cosine with T_max=1 is periodic: back at the full learning rate after epochs 2 and 4)."""
    common = [
        f"data.root={sst_dir}",
        f"model.architecture={tiny_arch}",
        "optim.schedule=cosine",
        "trainer.limit_train_batches=3",
    ]
    train("textnas_train_synthetic", tiny(tmp_path, *common, "trainer.max_epochs=1"))
    resumed = train(
        "textnas_train_synthetic", tiny(tmp_path, *common, "trainer.max_epochs=4", "resume=last")
    )
    ckpt = _load(resumed.run_dir / "checkpoints/last.ckpt")
    sched = ckpt["lr_schedulers"][0]
    assert sched["T_max"] == 4
    lr = ckpt["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(sched["eta_min"]), (lr, sched)
