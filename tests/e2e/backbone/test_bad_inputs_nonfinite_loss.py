"""A training loss that becomes NaN or infinite stops the run: one ``error:`` line naming the
step, exit code 2, no checkpoint after it (a fresh run's folder is removed); with
``allow_nonfinite_loss=true`` the run goes on and metrics.json keeps the non-finite values.
The stop also covers manual-optimization modules, which log their losses themselves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from experiments import registry
from experiments.__main__ import cli
from experiments.callbacks import NonFiniteLossError, NonFiniteLossStop
from tests.helpers import toy_system

QUIET = ["logger.wandb.mode=disabled", "trainer.enable_progress_bar=false"]
# SGD with lr 1e30 on the toy regression: step 0's loss is finite, step 1's overflows to inf.
DIVERGE = ["optim.lr=1e30", "trainer.max_epochs=1", *QUIET]


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "toy_nan.yaml").write_text("system: toy\ndefaults: [trainer/cpu]\n")
    monkeypatch.setenv("SUITE_CONFIG_PATH", str(configs))
    registry.register_system(toy_system.SPEC)
    return tmp_path / "out"


def test_a_nonfinite_loss_stops_training(toy: Path, capsys) -> None:
    assert cli(["train", "toy_nan", *DIVERGE, f"output_dir={toy}"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: training stopped at step 1 (epoch 0, batch 1): train/loss = inf; "
        "no checkpoint is saved from here on. Check the data (the data command reads every "
        "file) and the learning rate, or set allow_nonfinite_loss=true to go on regardless"
    ]
    assert "Traceback" not in err
    assert not [p for p in toy.rglob("*") if p.is_file()]  # no run folder, no checkpoint


def test_allow_nonfinite_loss_goes_on_and_keeps_the_values(toy: Path) -> None:
    with pytest.warns(UserWarning, match=r"non-finite training loss at step 1 .*goes on"):
        code = cli(["train", "toy_nan", *DIVERGE, "allow_nonfinite_loss=true", f"output_dir={toy}"])
    assert code == 0
    (metrics,) = toy.rglob("metrics.json")
    fit = json.loads(metrics.read_text())["fit"]
    assert not math.isfinite(float(fit["train/loss_epoch"]))  # "nan" or "inf", not left out
    assert list(toy.rglob("last.ckpt"))


class ManualGAN(L.LightningModule):
    """Two optimizers stepped by hand (as alphaGAN does); its D loss turns NaN at batch 3."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.d, self.g = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx: int) -> None:
        opt_d, opt_g = self.optimizers()
        for opt, net, name in ((opt_d, self.d, "train/d_loss"), (opt_g, self.g, "train/g_loss")):
            loss = net(batch[0]).pow(2).mean()
            if name == "train/d_loss" and batch_idx == 3:
                loss = loss * float("nan")
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            self.log(name, loss.detach())

    def configure_optimizers(self):
        return torch.optim.SGD(self.d.parameters(), 0.1), torch.optim.SGD(self.g.parameters(), 0.1)


def test_manual_optimization_is_stopped_too(tmp_path: Path) -> None:
    saved = ModelCheckpoint(tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        callbacks=[NonFiniteLossStop(), saved],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = DataLoader(TensorDataset(torch.randn(16, 2)), batch_size=2)
    with pytest.raises(
        NonFiniteLossError, match=r"at step 3 \(epoch 0, batch 3\): train/d_loss = nan;"
    ):
        trainer.fit(ManualGAN(), data)
    # checkpoints after batches 0-2 (steps 2, 4, 6: two optimizer steps a batch), none later
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == [f"step={s}.ckpt" for s in (2, 4, 6)]
