"""A stand-in feature distance between generated and held-out real images.

The Fréchet distance of torchmetrics' ``FrechetInceptionDistance`` computed on the features of
a *frozen, seeded, random* convolutional network instead of Inception (no weights to download;
lightning.md §10). Random conv features respond to colour, edges and texture statistics, so the
distance falls as G's samples come to look like the real images, which is what a person watching
a search on small or generated data wants to see. The numbers are **not** comparable to
published FID: it is logged as ``search/feature_distance``, never as FID.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


class RandomFeatures(nn.Module):
    """Frozen random features of images in [0, 1]: three strided 3x3 convs with ReLU, then
    the channel means and standard deviations (``2 * width`` features)."""

    def __init__(self, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        channels = 3
        for _ in range(3):
            conv = nn.Conv2d(channels, width, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * channels)) ** 0.5)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            channels = width
        self.net = nn.Sequential(*layers)
        self.num_features = 2 * width
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x.float() * 2.0 - 1.0).flatten(2)
        return torch.cat([h.mean(-1), h.std(-1)], dim=1)


class FeatureDistance(FrechetInceptionDistance):
    """Fréchet distance on :class:`RandomFeatures`; real statistics kept across ``reset()``.

    ``update(images, real)`` takes float images in [0, 1] (N, 3, H, W)."""

    def __init__(self, width: int = 16, seed: int = 0, **kwargs) -> None:
        super().__init__(feature=RandomFeatures(width, seed), reset_real_features=False,
                         normalize=True, **kwargs)  # fmt: skip

    @property
    def has_real(self) -> bool:
        return int(self.real_features_num_samples) > 0
