"""The alphaGAN generator supernet (docs/alphagan.md, "The search space").

``z -> Linear -> (width, bw, bw) -> 3 search cells (each 2x) -> BN, ReLU, 3x3 conv, tanh``.
Every edge is a mixed op weighted by ``softmax(α)``.  Unlike the reference, the α are
``nn.Parameter``s in :attr:`GeneratorSupernet.alpha` (an ``nn.ParameterDict``), so they are
in ``state_dict()`` and checkpoints; they are kept apart from the weights:
:meth:`~GeneratorSupernet.weights` yields every parameter but α (give it to the weight
optimiser) and :meth:`~GeneratorSupernet.alphas` the α (the architecture optimiser's).

A worst-case copy (the reference's ``find_worst``: G_w has its own α, weights and BN buffers) is
``copy.deepcopy(G)``, refreshed with ``G_w.load_state_dict(G.state_dict())``; freeze its α
with ``for a in G_w.alphas(): a.requires_grad_(False)``.  ``forward(z, alphas=...)`` takes α
from outside instead (raw logits with the keys and shapes of :data:`ALPHA_SHAPES`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.gan.cell import MixedNormal, MixedUp, SearchCell, check_conv
from search_spaces.gan.genotype import (
    ALPHA_ROWS,
    ALPHA_SHAPES,
    EDGE_NAMES,
    NUM_CELLS,
    SKIP_SOURCES,
    Genotype,
    GenotypeError,
    edge_ops,
)
from search_spaces.gan.ops import NORMAL_OPS, UP_OPS, is_channels_last

__all__ = ["GeneratorSupernet", "ToRGB", "init_alphas", "genotype_from_alphas"]


class ToRGB(nn.Sequential):
    """The head: BatchNorm2d -> ReLU -> Conv3x3(width -> 3) -> tanh."""

    def __init__(self, width: int) -> None:
        super().__init__(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1), nn.Tanh()
        )


def init_alphas(scale: float = 1e-3) -> nn.ParameterDict:
    """Fresh α, ``scale * randn`` as in the reference."""
    return nn.ParameterDict(
        {k: nn.Parameter(scale * torch.randn(shape)) for k, shape in ALPHA_SHAPES.items()}
    )


def genotype_from_alphas(
    alphas: Mapping[str, torch.Tensor], bottom_width: int, source: str = "supernet"
) -> Genotype:
    """Derive a genotype: the argmax of α (= of softmax(α)) independently per edge."""
    edges = {}
    for name in EDGE_NAMES:
        key, row = ALPHA_ROWS[name]
        edges[name] = edge_ops(name)[int(torch.argmax(alphas[key].detach()[row]))]
    return Genotype(edges, bottom_width, source=source)


class GeneratorSupernet(nn.Module):
    """The continuous generator supernet.

    ``fused`` selects the fused mixed edges (same maths, less work; see
    :mod:`search_spaces.gan.cell`); it can be switched at any time (``G.fused = False``).
    ``conv`` picks the fused 5x5 convolution's algorithm (``auto``: a tiled FFT on CPU, cuDNN
    on CUDA; ``direct``: ``F.conv2d`` everywhere; ``fft``).
    ``channels_last`` stores the convolution weights and runs the activations in the
    channels-last memory format (faster convolutions on CPU and on GPU tensor cores).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        width: int = 256,
        bottom_width: int = 4,
        fused: bool = True,
        channels_last: bool = False,
        conv: str = "auto",
    ) -> None:
        super().__init__()
        self.latent_dim, self.width, self.bottom_width = latent_dim, width, bottom_width
        self.stem = nn.Linear(latent_dim, bottom_width**2 * width)
        self.cells = nn.ModuleList(
            SearchCell(c, width, fused, conv) for c in range(1, NUM_CELLS + 1)
        )
        self.to_rgb = ToRGB(width)
        self.alpha = init_alphas()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def channels_last(self) -> bool:
        """Whether the weights are channels-last (also after ``G.to(memory_format=...)``)."""
        return is_channels_last(self.to_rgb[2].weight)

    @property
    def fused(self) -> bool:
        return all(m.fused for m in self._edges())

    @fused.setter
    def fused(self, value: bool) -> None:
        for m in self._edges():
            m.fused = value

    @property
    def conv(self) -> str:
        """The fused 5x5 convolution's algorithm: ``auto``, ``direct`` or ``fft``
        (:mod:`search_spaces.gan.cell`); it can be switched at any time."""
        return next(m.conv for m in self._edges() if isinstance(m, MixedNormal))

    @conv.setter
    def conv(self, value: str) -> None:
        check_conv(value)
        for m in self._edges():
            if isinstance(m, MixedNormal):
                m.conv = value

    def _edges(self) -> Iterator[MixedNormal | MixedUp]:
        return (m for m in self.modules() if isinstance(m, (MixedNormal, MixedUp)))

    @property
    def image_size(self) -> int:
        return self.bottom_width * 2**NUM_CELLS

    # -- parameter groups ----------------------------------------------------------------------
    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters (81 numbers), in :data:`ALPHA_SHAPES` order."""
        return [self.alpha[k] for k in ALPHA_SHAPES]

    def weights(self) -> Iterator[nn.Parameter]:
        """Every parameter except α."""
        alpha_ids = {id(a) for a in self.alpha.values()}
        return (p for p in self.parameters() if id(p) not in alpha_ids)

    # -- architecture views --------------------------------------------------------------------
    def genotype(self) -> Genotype:
        """The current argmax genotype."""
        return genotype_from_alphas(self.alpha, self.bottom_width)

    @torch.no_grad()
    def edge_weights(self) -> dict[str, torch.Tensor]:
        """``softmax(α)`` of every edge, by :data:`EDGE_NAMES` (detached)."""
        soft = {k: F.softmax(a, dim=-1) for k, a in self.alpha.items()}
        return {name: soft[key][row].clone() for name, (key, row) in ALPHA_ROWS.items()}

    # -- forward -------------------------------------------------------------------------------
    def forward(
        self,
        z: torch.Tensor,
        genotype: Genotype | None = None,
        alphas: Mapping[str, torch.Tensor] | None = None,
        scale_by_alpha: bool = True,
    ) -> torch.Tensor:
        """Images in [-1, 1], ``N x 3 x (8 bw) x (8 bw)``.

        Continuous by default.  With ``genotype``, only its op runs on each edge (the
        reference's ``genotype_discrete`` path, whose op output is scaled by its softmax
        weight; ``scale_by_alpha=False`` drops that factor).
        """
        raw = self.alpha if alphas is None else alphas
        if genotype is not None:
            genotype.check(self.bottom_width)
        weights = None
        if genotype is None or scale_by_alpha:
            missing = [k for k in ALPHA_SHAPES if k not in raw]
            if missing:
                raise GenotypeError(
                    f"alphas: missing {', '.join(missing)} (expected {', '.join(ALPHA_SHAPES)})"
                )
            weights = {k: F.softmax(raw[k], dim=-1) for k in ALPHA_SHAPES}
        h = self.stem(z).view(-1, self.width, self.bottom_width, self.bottom_width)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        node1s: list[torch.Tensor] = []
        for c, cell in enumerate(self.cells, start=1):
            kinds = ("up", "normal", "skip")
            w = {kind: None if weights is None else weights.get(f"{kind}{c}") for kind in kinds}
            index = None
            if genotype is not None:
                index = {
                    "up": [UP_OPS.index(op) for op in genotype.up(c)],
                    "normal": [NORMAL_OPS.index(op) for op in genotype.normal(c)],
                    "skip": [UP_OPS.index(op) for op in genotype.skips(c)],
                }
            node1, h = cell(h, [node1s[s - 1] for s in SKIP_SOURCES[c]], w, index)
            node1s.append(node1)
        return self.to_rgb(h)
