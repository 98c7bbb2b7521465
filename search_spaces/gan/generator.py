"""The plain generator of one genotype (reference ``models/alphaGAN_network.py::Network_gen_Auto``).

Same macro-structure as the supernet (stem, three cells, head), but each edge holds only
its chosen op; SepConv BatchNorm is ``affine=True`` as in retraining.  The 4x skip from
cell 1 to cell 3 applies its op twice (one ConvTranspose2d, shared weights, for ``deconv``).
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces.gan.genotype import NUM_CELLS, SKIP_SOURCES, Genotype
from search_spaces.gan.ops import build_normal_op, build_up_op, is_channels_last
from search_spaces.gan.supernet import ToRGB

__all__ = ["Cell", "Generator", "init_weights"]


class Cell(nn.Module):
    """Cell ``cell`` of a genotype; ``forward(x, skip_inputs) -> (node1, node4)``."""

    def __init__(self, cell: int, channels: int, genotype: Genotype) -> None:
        super().__init__()
        self.up = nn.ModuleList(build_up_op(op, channels) for op in genotype.up(cell))
        self.normal = nn.ModuleList(
            build_normal_op(op, channels, affine=True) for op in genotype.normal(cell)
        )
        self.skip = nn.ModuleList(
            build_up_op(op, channels, times=cell - src)
            for op, src in zip(genotype.skips(cell), SKIP_SOURCES[cell])
        )

    def forward(
        self, x: torch.Tensor, skip_inputs: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        node1, node3 = self.up[0](x), self.up[1](x)
        node2 = self.normal[0](node1)
        node4 = self.normal[2](node3) + self.normal[1](node2)
        for op, s in zip(self.skip, skip_inputs):
            node4 = node4 + op(s)
        return node1, node4


class Generator(nn.Module):
    """The generator of ``genotype``; ``bottom_width`` must be the genotype's (or ``None``).

    To build a genotype for another image size on purpose (the paper's CIFAR-10 -> STL-10
    transfer), pass ``genotype.retarget(bottom_width)``.  ``channels_last``: weights and
    activations in the channels-last memory format.
    """

    def __init__(
        self,
        genotype: Genotype,
        latent_dim: int = 128,
        width: int = 256,
        bottom_width: int | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if bottom_width is not None:
            genotype.check(bottom_width)
        self.genotype = genotype
        self.latent_dim, self.width, self.bottom_width = latent_dim, width, genotype.bottom_width
        self.stem = nn.Linear(latent_dim, self.bottom_width**2 * width)
        self.cells = nn.ModuleList(Cell(c, width, genotype) for c in range(1, NUM_CELLS + 1))
        self.to_rgb = ToRGB(width)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def image_size(self) -> int:
        return self.genotype.image_size()

    @property
    def channels_last(self) -> bool:
        """Whether the weights are channels-last (also after ``.to(memory_format=...)``)."""
        return is_channels_last(self.to_rgb[2].weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stem(z).view(-1, self.width, self.bottom_width, self.bottom_width)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        node1s: list[torch.Tensor] = []
        for c, cell in enumerate(self.cells, start=1):
            node1, h = cell(h, [node1s[s - 1] for s in SKIP_SOURCES[c]])
            node1s.append(node1)
        return self.to_rgb(h)


@torch.no_grad()
def init_weights(module: nn.Module, init: str = "xavier_uniform") -> None:
    """The reference retraining's init (``train_geno_gan.py::weights_init``), applied in place.

    Every ``Conv2d`` weight (not ConvTranspose2d, not Linear): ``xavier_uniform`` (gain 1),
    ``normal`` (0, 0.02) or ``orth``; every affine ``BatchNorm2d``: weight N(1, 0.02), bias 0.
    Spectral-normed convolutions are initialised through their original weight.
    """
    fns = {
        "xavier_uniform": lambda w: nn.init.xavier_uniform_(w, 1.0),
        "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
        "orth": nn.init.orthogonal_,
    }
    if init not in fns:
        raise ValueError(f"unknown init {init!r} (inits: {', '.join(fns)})")
    for m in module.modules():
        if isinstance(m, nn.Conv2d):  # also a parametrized (spectral-normed) one
            parametrized = getattr(m, "parametrizations", None)
            weight = (
                parametrized.weight.original
                if parametrized is not None and "weight" in parametrized
                else m.weight
            )
            fns[init](weight)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
