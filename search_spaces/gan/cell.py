"""Mixed edges and the search cell of the alphaGAN supernet (the reference's ``models/cell.py``).

A mixed edge holds every candidate op and returns ``sum_o w_o * op_o(x)`` with
``w = softmax(α_edge)`` (DARTS' continuous relaxation); given an ``index`` it runs only
that op (the discrete path used for sample grids).

**Fused edges** (``fused=True``, the default; ``fused=False`` runs the literal per-op sum,
with the same parameters, outputs and gradients to float rounding).  The three plain
convolutions of a normal edge (1x1, 3x3, 5x5, each with a bias) all read the same
``ReLU(x)``, so by linearity their weighted sum is **one** 5x5 convolution whose kernel is
the α-weighted sum of the three kernels zero-padded to 5x5, and whose bias is the α-weighted
sum of the biases.  The kernels stay separate parameters (parameter count and state dict
unchanged); the sum is formed at every forward, so autograd gives each kernel and each α its
exact gradient.  That saves 10 of the 35 multiply-adds per pixel of the three convolutions,
in the forward and in both backward convolutions.  The separable convolutions stay separate
(each has BatchNorm between its convolutions) but share the edge's one ``ReLU(x)``.  On an
up-sampling edge the op weights are folded into the smaller side (kernel, interpolation
input) and, at 2x, nearest into the deconv kernel (see :class:`MixedUp`).

**The fused 5x5 convolution's algorithm** (``conv``): ``"direct"`` is ``F.conv2d``; ``"fft"``
is the same convolution by a tiled FFT (:mod:`search_spaces.gan.fft_conv`); ``"auto"`` (the
default) is ``"fft"`` on CPU where it measured faster
(:func:`~search_spaces.gan.fft_conv.fft_pays`: 256 channels from 16 px, 128 from 32 px) and
``"direct"`` elsewhere.  Without autograd (the D steps' samples) the kernel's spectrum
is kept while the kernel is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.gan.fft_conv import SpectrumCache, fft_conv2d, fft_pays, tile_for
from search_spaces.gan.genotype import NUM_NORMAL, NUM_UP, SKIP_SOURCES
from search_spaces.gan.ops import CONV_OPS, NORMAL_OPS, UP_OPS, build_normal_op, build_up_op

__all__ = ["CONV_ALGORITHMS", "check_conv", "MixedNormal", "MixedUp", "SearchCell"]

#: The fused 5x5 convolution's algorithms (``conv``; see the module docstring).
CONV_ALGORITHMS = ("auto", "direct", "fft")


def check_conv(conv: str) -> str:
    """``conv`` if it names one of :data:`CONV_ALGORITHMS`, else a ValueError naming them."""
    if conv not in CONV_ALGORITHMS:
        raise ValueError(f"conv={conv!r}: expected one of {', '.join(CONV_ALGORITHMS)}")
    return conv


_NUM_CONV = len(CONV_OPS)  # the plain convolutions come first in NORMAL_OPS
_KMAX = max(CONV_OPS.values())
assert tuple(NORMAL_OPS[:_NUM_CONV]) == tuple(CONV_OPS)
assert tuple(UP_OPS) == ("deconv", "nearest", "bilinear")


class MixedNormal(nn.Module):
    """A normal edge: the six ops of :data:`NORMAL_OPS`, SepConv BN without affine."""

    def __init__(self, channels: int, fused: bool = True, conv: str = "auto") -> None:
        super().__init__()
        self.fused, self.conv = fused, check_conv(conv)
        self.ops = nn.ModuleList(
            build_normal_op(name, channels, affine=False) for name in NORMAL_OPS
        )
        self._pads = [(_KMAX - k) // 2 for k in CONV_OPS.values()]
        self._spectrum = SpectrumCache()

    def uses_fft(self, r: torch.Tensor) -> bool:
        """Whether the fused convolution of ``r`` runs through the FFT path (float32/64 only:
        under autocast or in half precision the convolution stays direct)."""
        if self.conv == "direct" or r.dtype not in (torch.float32, torch.float64):
            return False
        if torch.is_autocast_enabled(r.device.type):
            return False
        if self.conv == "fft":
            return True
        return r.device.type == "cpu" and fft_pays(r.shape[1], min(r.shape[-2:]))

    def fused_conv(self, r: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_{i<3} w_i * conv_i(r)`` (``r = ReLU(x)``) as one 5x5 convolution."""
        convs = [op.conv for op in self.ops[:_NUM_CONV]]
        kernel = sum(w * F.pad(c.weight, [p] * 4) for w, c, p in zip(weights, convs, self._pads))
        bias = sum(w * c.bias for w, c in zip(weights, convs))
        if not self.uses_fft(r):
            return F.conv2d(r, kernel, bias, padding=_KMAX // 2)
        tile = tile_for(min(r.shape[-2:]), _KMAX)
        spectrum = self._spectrum.get(kernel, tile)
        return fft_conv2d(r, kernel, bias, padding=_KMAX // 2, tile=tile, spectrum=spectrum)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None = None
    ) -> torch.Tensor:
        if index is not None:  # discrete path: one op, scaled by its weight when given
            out = self.ops[index](x)
            return out if weights is None else weights[index] * out
        if not self.fused:
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        r = F.relu(x)  # shared by all six ops
        out = self.fused_conv(r, weights[:_NUM_CONV])
        for w, op in zip(weights[_NUM_CONV:], self.ops[_NUM_CONV:]):
            out = torch.addcmul(out, w, op.forward_rectified(r))  # out + w * op(x), one pass
        return out


class MixedUp(nn.Module):
    """An up-sampling edge (2x, or 4x for ``times=2``: each op applied twice, shared weights).

    Fused (same maths, less work at the output size): each op's weight is folded into the
    smaller side (the deconv kernel, the interpolation input) and, at 2x, nearest is folded
    into the deconv, since nearest 2x is the stride-2 transposed convolution with the
    identity 2x2 kernel.
    """

    def __init__(self, channels: int, times: int = 1, fused: bool = True) -> None:
        super().__init__()
        self.times, self.fused = times, fused
        self.ops = nn.ModuleList(build_up_op(name, channels, times) for name in UP_OPS)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None, index: int | None = None
    ) -> torch.Tensor:
        if index is not None:
            out = self.ops[index](x)
            return out if weights is None else weights[index] * out
        if not self.fused:
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        deconv, nearest, bilinear = self.ops
        if self.times == 1:
            w, b = deconv.deconv.weight, deconv.deconv.bias
            eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)[:, :, None, None]
            kernel = weights[0] * w + weights[1] * eye.expand_as(w)
            out = F.conv_transpose2d(x, kernel, weights[0] * b, stride=2)
        else:
            out = deconv(x, weights[0]) + nearest(x, weights[1])
        return out + bilinear(x, weights[2])


class SearchCell(nn.Module):
    """Cell ``cell`` (1-based) of the supernet: 2 up edges, 3 normal edges, its skips.

    ``forward`` returns ``(node1, node4)``: node 4 is the cell output, node 1 the skip source
    for later cells.  ``weights`` are the softmaxed α rows of this cell's edges
    (``up``: 2 x 3, ``normal``: 3 x 6, ``skip``: k x 3); ``index`` (same keys, one op index
    per edge) selects the discrete path.
    """

    def __init__(self, cell: int, channels: int, fused: bool = True, conv: str = "auto") -> None:
        super().__init__()
        self.cell = cell
        self.up = nn.ModuleList(MixedUp(channels, fused=fused) for _ in range(NUM_UP))
        self.normal = nn.ModuleList(MixedNormal(channels, fused, conv) for _ in range(NUM_NORMAL))
        self.skip = nn.ModuleList(
            MixedUp(channels, times=cell - src, fused=fused) for src in SKIP_SOURCES[cell]
        )

    def forward(
        self,
        x: torch.Tensor,
        skip_inputs: Sequence[torch.Tensor],
        weights: dict[str, torch.Tensor | None],
        index: dict[str, Sequence[int]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def edge(kind: str, j: int, inp: torch.Tensor) -> torch.Tensor:
            w = weights[kind]
            module = getattr(self, kind)[j]
            return module(
                inp, None if w is None else w[j], None if index is None else index[kind][j]
            )

        node1 = edge("up", 0, x)
        node3 = edge("up", 1, x)
        node2 = edge("normal", 0, node1)
        node4 = edge("normal", 2, node3) + edge("normal", 1, node2)
        for j, s in enumerate(skip_inputs):
            node4 = node4 + edge("skip", j, s)
        return node1, node4
