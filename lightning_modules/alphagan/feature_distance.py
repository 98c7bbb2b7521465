"""A stand-in feature distance between generated and held-out real images.

The Fréchet distance of torchmetrics' ``FrechetInceptionDistance`` computed on the features of
a *frozen, seeded, random* convolutional network instead of Inception (no weights to download;
lightning.md §10). Random conv features respond to colour, edges and texture statistics, so the
distance falls as G's samples come to look like the real images, which is what a person watching
a search on small or generated data wants to see. The numbers are **not** comparable to
published FID: it is logged as ``search/feature_distance``, never as FID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


class RandomFeatures(nn.Module):
    """Frozen random features of images in [0, 1]: three 3x3 convs with ReLU (strides 1, 2, 2),
    then the channel means and standard deviations over space (``2 * width`` features)."""

    def __init__(self, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        channels = 3
        for stride in (1, 2, 2):
            conv = nn.Conv2d(channels, width, 3, stride=stride, padding=1)
            with torch.no_grad():
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * channels)) ** 0.5
                )
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            channels = width
        self.net = nn.Sequential(*layers)
        self.num_features = 2 * width
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x.float() * 2.0 - 1.0).flatten(2)
        return torch.cat([h.mean(-1), h.std(-1, correction=0)], dim=1)


class FeatureDistance(FrechetInceptionDistance):
    """Fréchet distance on :class:`RandomFeatures`; real statistics kept across ``reset()``.

    ``update(images, real)`` takes float images in [0, 1] (N, 3, H, W)."""

    def __init__(self, width: int = 16, seed: int = 0, **kwargs) -> None:
        super().__init__(
            feature=RandomFeatures(width, seed), reset_real_features=False, normalize=True, **kwargs
        )

    @property
    def has_real(self) -> bool:
        return int(self.real_features_num_samples) > 0


@torch.no_grad()
def generator_distance(
    metric: FeatureDistance,
    generator: nn.Module,
    real_batches: Iterable[Any],
    to01: Callable[[torch.Tensor], torch.Tensor],
    z: Callable[[int], torch.Tensor],
    num_samples: int,
    chunk: int = 256,
) -> torch.Tensor:
    """:class:`FeatureDistance` between ``num_samples`` samples of ``generator`` (eval mode,
    latent vectors from ``z(n)``) and the real images of ``real_batches`` (``(images, ...)``
    batches, read once: the metric keeps their statistics). ``to01`` maps both to [0, 1]."""
    device = next(generator.parameters()).device
    if not metric.has_real:
        for batch in real_batches:
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            metric.update(to01(images.to(device)), real=True)
    was_training = generator.training
    generator.eval()
    try:
        todo = num_samples
        while todo > 0:
            n = min(todo, chunk)
            metric.update(to01(generator(z(n)).float()), real=False)
            todo -= n
    finally:
        generator.train(was_training)
    value = metric.compute()
    metric.reset()
    return value
