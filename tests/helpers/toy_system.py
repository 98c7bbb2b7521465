"""A tiny test-only system: one Linear layer (with dropout) on random regression data.

Importable as ``tests.helpers.toy_system:SPEC`` so a YAML can name it as ``system:``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from experiments.config import CheckpointConfig, ConfigError, RunConfig, TrainerConfig
from experiments.registry import RunContext, SystemSpec


@dataclass
class ToyDataConfig:
    """Random linear-regression data."""

    n_train: int = 64
    n_val: int = 32
    dim: int = 4
    batch_size: int = 8
    seed: int = 0


@dataclass
class ToyModelConfig:
    """One Linear layer after dropout."""

    dropout: float = 0.0
    manual_optimization: bool = False


@dataclass
class ToyOptimConfig:
    """SGD."""

    lr: float = 0.05


def _toy_trainer() -> TrainerConfig:
    return TrainerConfig(
        accelerator="cpu", max_epochs=2, log_every_n_steps=1, enable_progress_bar=False
    )


@dataclass
class ToyConfig(RunConfig):
    """Config of the toy system."""

    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    optim: ToyOptimConfig = field(default_factory=ToyOptimConfig)
    trainer: TrainerConfig = field(default_factory=_toy_trainer)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


class ToyDataModule(L.LightningDataModule):
    """Seeded random tensors ``y = x @ w + noise``; shuffled training loader."""

    has_test_labels = True

    def __init__(self, n_train: int, n_val: int, dim: int, batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(dim, 1, generator=g)
        n = n_train + 2 * n_val
        x = torch.randn(n, dim, generator=g)
        y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
        self.splits = {
            "train": TensorDataset(x[:n_train], y[:n_train]),
            "val": TensorDataset(x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
            "test": TensorDataset(x[n_train + n_val :], y[n_train + n_val :]),
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.batch_size)


class ToyModule(L.LightningModule):
    """Linear regression with input dropout, MSE loss."""

    def __init__(self, dim: int, dropout: float, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), on_epoch=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self.log("test/loss", self._loss(batch), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class ManualToyModule(ToyModule):
    """The same model trained with manual optimization (for the clipping check)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx: int) -> None:
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(self._loss(batch))
        opt.step()


def build(cfg: DictConfig, checkpoint: dict | None) -> tuple[ToyModule, ToyDataModule]:
    """Module and datamodule from a toy config."""
    d = cfg.data
    module_cls = ManualToyModule if cfg.model.manual_optimization else ToyModule
    module = module_cls(dim=d.dim, dropout=cfg.model.dropout, lr=cfg.optim.lr)
    dm = ToyDataModule(d.n_train, d.n_val, d.dim, d.batch_size, d.seed)
    return module, dm


def validate(cfg: DictConfig) -> None:
    """Example of a system-specific check."""
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {cfg.model.dropout}")


def after_fit(ctx: RunContext) -> None:
    """Writes a marker file, as a system would write its architecture or samples."""
    if ctx.trainer.is_global_zero:
        Path(ctx.run_dir, "after_fit.txt").write_text(f"{ctx.metrics['fit']['global_step']}\n")


def hello(cfg: DictConfig, args: list[str]) -> int:
    """An extra command: prints the experiment name and its arguments."""
    print(f"hello {cfg.experiment} {' '.join(args)}".strip())
    return 0


SPEC = SystemSpec(
    name="toy",
    config_cls=ToyConfig,
    build=build,
    validate=validate,
    after_fit=after_fit,
    extra_commands={"hello": hello},
)
