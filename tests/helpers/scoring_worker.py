"""Worker of ``tests/unit/alphagan/test_scoring_ddp.py``: imports torch and the scoring package
only, so the spawned processes start quickly."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from lightning_modules.alphagan.scoring import (
    FrechetDistance,
    InceptionScore,
    StandinExtractor,
    real_statistics,
)
from lightning_modules.alphagan.scoring.real_stats import feature_moments

#: rank 0 and rank 1 get unequal shares of the samples
SHARES = (slice(0, 130), slice(130, 200))


def samples() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed fake features (200, 6), real statistics, logits (200, 12) and images (200, 3, 8, 8)."""
    g = torch.Generator().manual_seed(0)
    fake = torch.randn(200, 6, generator=g, dtype=torch.float64) * 2 + 0.5
    real = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(
        6, 6, generator=g, dtype=torch.float64
    )
    logits = torch.randn(200, 12, generator=g) * 3
    images = torch.rand(200, 3, 8, 8, generator=g) * 2 - 1
    return fake, real, logits, images


def scores(part: slice) -> list[float]:
    """FID of ``fake[part]`` to the real statistics, IS of ``logits[part]``, and the standin
    features' moments of ``images[part]`` (summed), as the metrics compute them."""
    fake, real, logits, images = samples()
    fid = FrechetDistance(6, real.mean(0), torch.cov(real.T))
    fid.update(fake[part])
    score = InceptionScore(splits=10)
    score.update(logits[part])
    mu, sigma = feature_moments(StandinExtractor(), [images[part][:40], images[part][40:]])
    return [float(fid.compute()), *map(float, score.compute()), float(mu.sum()), float(sigma.sum())]


def cached_statistics(part: slice, cache: str, data_file: str) -> list[float]:
    """``real_statistics`` of ``images[part]`` through the cache file ``cache`` (summed)."""
    images = samples()[3][part]
    mu, sigma = real_statistics(
        StandinExtractor(), lambda: images.split(40), cache=cache, data_files=[data_file]
    )
    return [float(mu.sum()), float(sigma.sum())]


def run(rank: int, port: int, cache: str = "", data_file: str = "") -> list[float]:
    """Rank ``rank`` of 2: its share through the metrics, synchronised over gloo; with
    ``cache``, the real statistics computed into it and then read back from it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=120))
    try:
        out = scores(SHARES[rank])
        if cache:
            for _ in range(2):  # computed by both ranks, written by rank 0; then read by both
                out += cached_statistics(SHARES[rank], cache, data_file)
        return out
    finally:
        dist.destroy_process_group()


def worker(rank: int, port: int, queue, cache: str = "", data_file: str = "") -> None:
    """``run`` in a spawned process, its result put on ``queue``."""
    torch.set_num_threads(1)
    queue.put((rank, run(rank, port, cache, data_file)))
