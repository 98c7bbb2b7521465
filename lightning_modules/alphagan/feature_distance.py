"""The Fréchet distance between a generator's samples and real images, on any extractor.

One code path for every FID of the suite: :class:`~.scoring.FrechetDistance` on the features of
an extractor from :func:`~.scoring.build_extractor`. The search logs it with the seeded random
conv stand-in (no weights to download) as ``search/fid_standin``: it falls as G's samples come
to look like the real images, which is what a person watching a search on small or generated
data wants to see, and it is **not** comparable to published FID (``docs/alphagan.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .scoring import FrechetDistance, FrozenExtractor, StandinExtractor, to_uint8
from .scoring.real_stats import feature_moments


def metric_key(prefix: str, extractor: FrozenExtractor) -> str:
    """``{prefix}/fid`` for Inception, ``{prefix}/fid_standin`` for anything not comparable."""
    return f"{prefix}/fid" if extractor.comparable else f"{prefix}/fid_standin"


class GeneratorDistance(nn.Module):
    """The Fréchet distance of ``generator``'s samples to real images, on ``extractor``
    (the stand-in by default); the real statistics are computed on first use and kept."""

    def __init__(self, extractor: FrozenExtractor | None = None) -> None:
        super().__init__()
        self.extractor = extractor if extractor is not None else StandinExtractor()
        self.real: tuple[torch.Tensor, torch.Tensor] | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        """Nothing to load: checkpoints written before the scoring package hold the stand-in's
        weights under this prefix (``feature_distance.inception.*``); they are regenerated
        from its seed, so they are skipped rather than reported as unexpected."""

    @torch.no_grad()
    def forward(
        self,
        generator: nn.Module,
        real_batches: Iterable[Any],
        to01: Callable[[torch.Tensor], torch.Tensor],
        z: Callable[[int], torch.Tensor],
        num_samples: int,
        chunk: int = 256,
    ) -> torch.Tensor:
        """The distance between ``num_samples`` samples of ``generator`` (eval mode, latent
        vectors from ``z(n)``) and the images of ``real_batches`` (``(images, ...)`` batches,
        read once). ``to01`` maps both to [0, 1]; they are then converted to uint8 as the
        papers' protocol does (:func:`~.scoring.to_uint8`). Under DDP each rank passes its
        share of both sides; the statistics are summed over ranks."""

        def uint8(images: torch.Tensor) -> torch.Tensor:
            return to_uint8(to01(images.float()) * 2.0 - 1.0)

        if self.real is None:
            images = (b[0] if isinstance(b, (list, tuple)) else b for b in real_batches)
            self.real = feature_moments(self.extractor, (uint8(x) for x in images))
        metric = FrechetDistance(self.extractor.feature_dim, *self.real)
        metric.to(self.extractor.device)
        was_training = generator.training
        generator.eval()
        try:
            todo = num_samples
            while todo > 0:
                n = min(todo, chunk)
                metric.update(self.extractor(uint8(generator(z(n))))[0])
                todo -= n
        finally:
            generator.train(was_training)
        return metric.compute()
