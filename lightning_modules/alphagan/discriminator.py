"""AutoGAN's discriminator, fixed in alphaGAN's search and retraining (docs/alphagan.md).

``OptimizedDisBlock(3 -> w, down) -> DisBlock(down) -> DisBlock -> DisBlock -> ReLU ->
global sum pooling -> Linear(w -> 1, no bias)``, spectral norm on every convolution and on
the linear layer, no normalisation layers.  1,053,824 parameters at width 128.

Spectral norm is ``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per
training forward, as the reference's ``nn.utils.spectral_norm``); unlike the old hook-based
version it survives ``copy.deepcopy`` (the worst-case copy D_w).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = ["Discriminator", "DisBlock", "OptimizedDisBlock"]


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


class OptimizedDisBlock(nn.Module):
    """First block: conv -> ReLU -> conv -> avg-pool 2, plus avg-pool -> 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, spectral_norm: bool = True) -> None:
        super().__init__()
        self.c1 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1), spectral_norm)
        self.c2 = _sn(nn.Conv2d(out_channels, out_channels, 3, padding=1), spectral_norm)
        self.c_sc = _sn(nn.Conv2d(in_channels, out_channels, 1), spectral_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DisBlock(nn.Module):
    """Pre-activation residual block: ReLU -> conv -> ReLU -> conv (-> avg-pool 2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool = False,
        spectral_norm: bool = True,
    ):
        super().__init__()
        self.downsample = downsample
        self.c1 = _sn(nn.Conv2d(in_channels, in_channels, 3, padding=1), spectral_norm)
        self.c2 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1), spectral_norm)
        self.learnable_sc = in_channels != out_channels or downsample
        self.c_sc = (
            _sn(nn.Conv2d(in_channels, out_channels, 1), spectral_norm)
            if self.learnable_sc
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c2(F.relu(self.c1(F.relu(x))))
        sc = x if self.c_sc is None else self.c_sc(x)
        if self.downsample:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class Discriminator(nn.Module):
    """AutoGAN's ResNet discriminator; ``D(x) -> (N,)`` logits.

    ``channels_last`` stores the weights channels-last, so every convolution runs in that
    memory format whatever the input's.
    """

    def __init__(
        self,
        width: int = 128,
        spectral_norm: bool = True,
        in_channels: int = 3,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.width = width
        self.blocks = nn.Sequential(
            OptimizedDisBlock(in_channels, width, spectral_norm),
            DisBlock(width, width, downsample=True, spectral_norm=spectral_norm),
            DisBlock(width, width, spectral_norm=spectral_norm),
            DisBlock(width, width, spectral_norm=spectral_norm),
        )
        self.linear = _sn(nn.Linear(width, 1, bias=False), spectral_norm)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # global sum pooling
        return self.linear(h).squeeze(1)
