"""alphaGAN's candidate operations (the reference's ``models/operations_gan.py``).

Normal edges (C -> C, same size) choose among :data:`NORMAL_OPS`: three plain convolutions
(ReLU -> Conv2d with bias, no BN) and three DARTS separable convolutions ([ReLU -> depthwise
k x k -> pointwise 1x1 -> BN] twice, no conv bias).  Up-sampling edges (C -> C, 2x size, and
the cross-cell skips) choose among :data:`UP_OPS`: a stride-2 transposed convolution or a
parameter-free interpolation.  An up op built with ``times=2`` up-samples 4x by applying
**the same** op twice, so a 4x ``deconv`` holds one ConvTranspose2d used twice (shared
weights), as in the reference.

The set has no ``none`` and no identity op (the reference's README search commands use
``PRIMITIVES_NORMAL_GEN_wo_skip_none_sep`` and ``PRIMITIVES_UP``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NORMAL_OPS",
    "UP_OPS",
    "CONV_OPS",
    "ReLUConv",
    "SepConv",
    "Deconv",
    "Interpolate",
    "build_normal_op",
    "build_up_op",
    "is_channels_last",
]

NORMAL_OPS: tuple[str, ...] = (
    "conv_1x1",
    "conv_3x3",
    "conv_5x5",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
UP_OPS: tuple[str, ...] = ("deconv", "nearest", "bilinear")

#: The plain convolutions of :data:`NORMAL_OPS` and their kernel sizes (the fused edge sums them).
CONV_OPS: dict[str, int] = {"conv_1x1": 1, "conv_3x3": 3, "conv_5x5": 5}
_SEP_OPS: dict[str, int] = {"sep_conv_3x3": 3, "sep_conv_5x5": 5, "sep_conv_7x7": 7}


class ReLUConv(nn.Module):
    """ReLU -> Conv2d(C, C, k, padding k//2, bias=True); no normalisation."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(x))


class SepConv(nn.Module):
    """DARTS separable convolution: [ReLU -> depthwise k x k -> pointwise 1x1 -> BN] x 2.

    ``affine=False`` in the search supernet, ``affine=True`` in the retrained network.
    """

    def __init__(self, channels: int, kernel_size: int, affine: bool) -> None:
        super().__init__()
        c, k = channels, kernel_size
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=affine),
            nn.ReLU(),
            nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def forward_rectified(self, r: torch.Tensor) -> torch.Tensor:
        """The op on ``r = ReLU(x)`` already computed (ReLU is idempotent: same result)."""
        for layer in list(self.op)[1:]:
            r = layer(r)
        return r


class Deconv(nn.Module):
    """ConvTranspose2d(C, C, 2, stride 2), applied ``times`` times with the same weights."""

    def __init__(self, channels: int, times: int = 1) -> None:
        super().__init__()
        self.times = times
        self.deconv = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * op(x)``, the scale folded into the last application's kernel and bias."""
        for _ in range(self.times - 1):
            x = self.deconv(x)
        if scale is None:
            return self.deconv(x)
        return F.conv_transpose2d(x, scale * self.deconv.weight, scale * self.deconv.bias, stride=2)


class Interpolate(nn.Module):
    """``F.interpolate(scale_factor=2, mode)`` applied ``times`` times; no parameters."""

    def __init__(self, mode: str, times: int = 1) -> None:
        super().__init__()
        self.mode, self.times = mode, times

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``scale * op(x)``, the scale applied to the (smaller) input: interpolation is linear."""
        if scale is not None:
            x = scale * x
        for _ in range(self.times):
            x = F.interpolate(x, scale_factor=2, mode=self.mode)
        return x

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, times={self.times}"


def build_normal_op(name: str, channels: int, affine: bool) -> nn.Module:
    """One normal op of :data:`NORMAL_OPS` at ``channels`` channels."""
    if name in CONV_OPS:
        return ReLUConv(channels, CONV_OPS[name])
    if name in _SEP_OPS:
        return SepConv(channels, _SEP_OPS[name], affine=affine)
    raise KeyError(f"unknown normal op {name!r} (ops: {', '.join(NORMAL_OPS)})")


def build_up_op(name: str, channels: int, times: int = 1) -> nn.Module:
    """One up-sampling op of :data:`UP_OPS`, up-sampling by ``2 ** times``."""
    if name == "deconv":
        return Deconv(channels, times)
    if name in ("nearest", "bilinear"):
        return Interpolate(name, times)
    raise KeyError(f"unknown up-sampling op {name!r} (ops: {', '.join(UP_OPS)})")


def is_channels_last(weight: torch.Tensor) -> bool:
    """Whether a 4-d tensor is stored channels-last (and not also plain contiguous)."""
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
