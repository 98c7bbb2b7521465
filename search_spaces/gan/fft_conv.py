"""Convolution by the convolution theorem: tiled (overlap-save) FFT, stock torch ops only.

A stride-1 ``k x k`` convolution of a ``C -> O`` map costs ``k^2 C O`` multiply-adds per output
pixel done directly.  In the Fourier domain it is a pointwise product summed over ``C``: cut the
padded input into overlapping ``T x T`` tiles (step ``m = T - k + 1``), transform each tile
(``torch.fft.rfft2``), multiply by the kernel's spectrum with **one batched matmul per
frequency** (``(tiles, C) @ (C, O)``), transform back and keep each tile's first ``m x m``
outputs (the ones a circular correlation does not wrap).  For the supernet's fused 5x5 edge at
32x32 and 256 channels (tile 20, 2x2 tiles) that is 220 complex frequencies per 256 outputs:
about 3.4 real multiply-adds per output pixel and channel pair against 25, so the matmul is
about 7x less work and the transforms are small.  Autograd runs through the same stock ops
(``rfft2``/``irfft2``/``bmm``/``unfold``), so the gradients are those of the convolution.

The result is the convolution to float rounding (about 1e-6 relative in float32, 1e-15 in
float64; ``tests/unit/alphagan/test_fft_conv.py``).  It pays where the kernel is large and the
maps are not tiny and the channels many; the supernet uses it for the fused 5x5 edges where
:func:`fft_pays` (``model.conv=auto``, on CPU, where oneDNN has no fast 5x5 algorithm); on
CUDA ``auto`` keeps cuDNN, which picks FFT or Winograd algorithms itself.

The per-frequency products are complex; they run as real matmuls by Gauss's three-product
rule, so that autograd's backward is real matmuls too (complex ``bmm`` backward resolves a
conjugate matrix by matrix, which measured 3x slower).  The kernel's spectrum
``conj(rfft2(w, s=(T, T)))`` is one matmul of the DFT basis on the ``k x k`` support
(:func:`kernel_spectrum`), cheaper than transforming the zero-padded kernel, and it can be
passed in (``spectrum=``) so that forwards with unchanged weights reuse it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from search_spaces.gan.ops import is_channels_last

__all__ = [
    "MIN_SIZE",
    "MIN_WORK",
    "fft_pays",
    "tile_for",
    "kernel_spectrum",
    "fft_conv2d",
    "SpectrumCache",
]

#: Where ``conv=auto`` takes the FFT path on CPU: maps of at least ``MIN_SIZE`` pixels a side
#: and ``channels x side >= MIN_WORK``.  Measured (2-core CPU, fused 5x5 edge, forward and
#: backward, FFT / direct): 256 ch at 32 px 0.50, at 16 px 0.63; 128 ch at 32 px 0.79, at
#: 16 px 1.03; 64 ch at 32 px 1.13; 32 ch at 32 px 1.7 (docs/alphagan.md).
MIN_SIZE = 16
MIN_WORK = 4096
_MAX_TILE_OUTPUT = 16  # outputs per tile side: 16 (tile 20 for 5x5) measured best at 32x32


def fft_pays(channels: int, size: int) -> bool:
    """Whether a 5x5 convolution of ``channels`` channels on ``size``-pixel maps is faster by
    FFT on CPU (the measured rule above)."""
    return size >= MIN_SIZE and channels * size >= MIN_WORK


Spectrum = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class _ContiguousGrad(torch.autograd.Function):
    """The identity; its backward hands on a contiguous gradient.  The per-frequency products'
    gradients arrive permuted (from the inverse transform's layout); ``bmm``'s backward would
    otherwise copy them one matrix at a time."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def tile_for(size: int, kernel_size: int) -> int:
    """The FFT tile side for a map of ``size`` pixels: at most 16 outputs per tile, and at
    least 2 tiles a side (tile 20 at 32x32 and tile 12 at 16x16 for a 5x5 kernel)."""
    m = max(1, min(_MAX_TILE_OUTPUT, math.ceil(size / 2)))
    return m + kernel_size - 1


def kernel_spectrum(weight: torch.Tensor, tile: int) -> Spectrum:
    """The spectrum ``conj(rfft2(weight, s=(tile, tile)))`` of an ``(O, C, k, k)`` kernel as
    three real ``(tile * (tile // 2 + 1), C, O)`` tensors: its real part, its imaginary part
    and their sum (the factors of Gauss's three-product complex multiplication).

    One matmul of the DFT basis restricted to the ``k x k`` support with the kernel, so it
    is cheaper than transforming the zero-padded kernel; differentiable."""
    out_ch, in_ch, kh, kw = weight.shape
    u = torch.arange(tile, dtype=torch.float64).view(-1, 1, 1, 1)
    v = torch.arange(tile // 2 + 1, dtype=torch.float64).view(1, -1, 1, 1)
    a = torch.arange(kh, dtype=torch.float64).view(1, 1, -1, 1)
    b = torch.arange(kw, dtype=torch.float64).view(1, 1, 1, -1)
    theta = (2 * math.pi / tile) * (u * a + v * b)  # (T, T//2+1, kh, kw)
    w = weight.permute(2, 3, 1, 0).reshape(kh * kw, in_ch * out_ch)
    real, imag = (  # two matmuls, not one split: the backward then needs no concatenation
        (part.reshape(-1, kh * kw).to(w) @ w).view(-1, in_ch, out_ch)
        for part in (theta.cos(), theta.sin())
    )
    return real, imag, real + imag


def fft_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 0,
    tile: int | None = None,
    spectrum: Spectrum | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1, no dilation, one group) by a
    tiled FFT.  ``tile`` defaults to :func:`tile_for`; ``spectrum`` is
    :func:`kernel_spectrum` ``(weight, tile)`` when already computed.  A channels-last ``x``
    gives a channels-last result."""
    n, c, h, w = x.shape
    out_ch, in_ch, kh, kw = weight.shape
    if in_ch != c:
        raise ValueError(f"fft_conv2d: input has {c} channels, weight expects {in_ch}")
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    tile = tile or tile_for(min(ho, wo), max(kh, kw))
    mh, mw = tile - kh + 1, tile - kw + 1  # outputs per tile
    th, tw = math.ceil(ho / mh), math.ceil(wo / mw)  # tiles
    hp, wp = th * mh + kh - 1, tw * mw + kw - 1  # the padded input the tiles cover
    xp = F.pad(x, (padding, wp - w - padding, padding, hp - h - padding))
    tiles = xp.unfold(2, tile, mh).unfold(3, tile, mw)  # (n, c, th, tw, T, T), overlapping
    freq = torch.view_as_real(torch.fft.rfft2(tiles))  # (n, c, th, tw, T, fv, 2)
    fv = freq.shape[-2]
    # (re/im, frequency, tile, channel), contiguous: on a channels-last input this can be a
    # view with interleaved re/im, which bmm would copy one matrix at a time
    freq = freq.permute(6, 4, 5, 0, 2, 3, 1).reshape(2, tile * fv, n * th * tw, c).contiguous()
    if spectrum is None:
        spectrum = kernel_spectrum(weight, tile)
    # One product per frequency, (tiles, C) @ (C, O), complex by Gauss: 3 real matmuls.
    real, imag = freq.unbind(0)
    k1, k2, k3 = (
        _ContiguousGrad.apply(torch.bmm(a, b)) for a, b in zip((real, imag, real + imag), spectrum)
    )
    out = torch.complex((k1 - k2).permute(1, 2, 0), (k3 - k1 - k2).permute(1, 2, 0))
    out = out.reshape(n, th, tw, out_ch, tile, fv)
    out = torch.fft.irfft2(out, s=(tile, tile))[..., :mh, :mw]  # (n, th, tw, O, mh, mw)
    if is_channels_last(x):
        out = out.permute(0, 1, 4, 2, 5, 3).reshape(n, th * mh, tw * mw, out_ch)
        out = out[:, :ho, :wo].permute(0, 3, 1, 2)
    else:
        out = out.permute(0, 3, 1, 4, 2, 5).reshape(n, out_ch, th * mh, tw * mw)[..., :ho, :wo]
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class SpectrumCache:
    """The spectrum of the last kernel seen without autograd, reused while the kernel is equal.

    Forwards under ``torch.no_grad()`` with unchanged weights (the D steps' samples between two
    G steps) then transform the kernel once.  The key is the kernel's exact values
    (``torch.equal``), so any change of weights or α recomputes it; a kernel that requires grad
    is never cached.  A copy of the owning module (``copy.deepcopy``, pickling) starts empty.
    """

    def __init__(self) -> None:
        self.kernel: torch.Tensor | None = None
        self.spectrum: Spectrum | None = None
        self.tile = 0

    def get(self, kernel: torch.Tensor, tile: int) -> Spectrum:
        if kernel.requires_grad:
            return kernel_spectrum(kernel, tile)
        cached = self.kernel
        if (
            cached is None
            or self.tile != tile
            or cached.shape != kernel.shape
            or cached.dtype != kernel.dtype
            or cached.device != kernel.device
            or not torch.equal(cached, kernel)
        ):
            self.kernel, self.tile = kernel, tile
            self.spectrum = kernel_spectrum(kernel, tile)
        return self.spectrum

    def __deepcopy__(self, memo: dict) -> SpectrumCache:
        return SpectrumCache()

    def __getstate__(self) -> dict:
        return {"kernel": None, "spectrum": None, "tile": 0}
