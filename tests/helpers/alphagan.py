"""Tiny in-memory stand-ins for the alphaGAN search tests (no files, seconds on a CPU)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lightning_modules.alphagan.search import AlphaGANSearch

#: A supernet and D small enough for many CPU steps: 8x8 images (bottom width 1).
TINY_MODEL = {"width": 8, "d_width": 8, "latent_dim": 16, "bottom_width": 1}


def blob_images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """``n`` images in [-1, 1]: a bright square of a random colour on a dark background."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), -0.8)
    for i in range(n):
        colour = torch.rand(3, 1, 1, generator=g) * 1.6 - 0.6
        y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
        images[i, :, y : y + size // 2, x : x + size // 2] = colour
    return images


class TinyImages(L.LightningDataModule):
    """The datamodule interface the search reads: train / arch / test loaders, denormalize."""

    def __init__(self, n: int = 64, batch_size: int = 8, size: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        images = blob_images(2 * n + n // 2, size, seed)
        labels = torch.zeros(len(images), dtype=torch.long)
        self.train = TensorDataset(images[:n], labels[:n])
        self.arch = TensorDataset(images[n : 2 * n], labels[n : 2 * n])
        self.test = TensorDataset(images[2 * n :], labels[2 * n :])

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _loader(self, dataset: TensorDataset, shuffle: bool = True) -> DataLoader:
        rank, world = self._rank_world()
        sampler = DistributedSampler(
            dataset, world, rank, shuffle=shuffle, seed=self.seed, drop_last=True
        )
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train)

    def arch_dataloader(self) -> DataLoader:
        return self._loader(self.arch)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, shuffle=False)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        return ((images + 1) / 2).clamp(0, 1)


def tiny_module(seed: int = 0, **search) -> AlphaGANSearch:
    """A tiny search module; ``search`` overrides :class:`SearchConfig` fields."""
    options = {
        "inner_steps": 3,
        "worst_steps": 2,
        "arch_steps": 2,
        "eval_every": 0,
        "plots": False,
        "num_samples": 4,
        **search,
    }
    return AlphaGANSearch(model=TINY_MODEL, search=options, optim={"fused": False}, seed=seed)


def fit(module: AlphaGANSearch, root, epochs: int = 1, **trainer) -> L.Trainer:
    """``trainer.fit`` on :class:`TinyImages` without loggers, checkpoints or progress bars."""
    kwargs = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": epochs,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
        "default_root_dir": str(root),
        **trainer,
    }
    t = L.Trainer(**kwargs)
    t.fit(module, datamodule=TinyImages())
    return t
