"""The retrain loop's schedule, on a real Trainer: one G step per n_critic D steps by the global
D-step counter (the first at D step 0), the run stopping after ``g_iters`` G steps whatever the
epochs, one EMA update per G step, and different noise on every rank."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.alphagan.retrain import AlphaGANRetrain
from search_spaces.gan import load_genotype

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(AlphaGANRetrain):
    def on_fit_start(self) -> None:
        self.g_at: list[int] = []
        self.ema_updates: list[int] = []

    def training_step(self, batch, batch_idx):
        before = int(self.g_step), int(self.ema.n_averaged)
        super().training_step(batch, batch_idx)
        if int(self.g_step) > before[0]:
            self.g_at.append(int(self.d_step) - 1)
        self.ema_updates.append(int(self.ema.n_averaged) - before[1])


def test_n_critic_schedule_and_length_in_g_iterations(tmp_path) -> None:
    m = Recorder(
        load_genotype("alphagan_s"),
        model=dict(width=8, d_width=8, latent_dim=16, bottom_width=1, retarget=True),
        train=dict(g_iters=4, n_critic=3, gen_batch_size=4, eval_every=100),
        metrics=dict(train_samples=0, select_on="last"),
    )
    images = torch.rand(14, 3, 8, 8) * 2 - 1  # 7 batches of 2 per epoch: the run spans epochs
    loader = DataLoader(TensorDataset(images, torch.zeros(14)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        limit_val_batches=0,
    )
    trainer.fit(m, train_dataloaders=loader)
    assert m.g_at == [0, 3, 6, 9] and int(m.d_step) == 12 and int(m.g_step) == 4
    assert sum(m.ema_updates) == 4 and int(m.ema.n_averaged) == 5  # + the initial copy


def test_each_rank_draws_its_own_noise() -> None:
    m = AlphaGANRetrain(
        load_genotype("alphagan_s"),
        model=dict(width=8, d_width=8, latent_dim=16, bottom_width=1, retarget=True),
    )
    draws = []
    for rank in (0, 1):
        m.noise.manual_seed(m.seed * 1000 + 17 + rank)  # what setup() does on each rank
        draws.append(m.z(4))
    assert not torch.equal(*draws)
