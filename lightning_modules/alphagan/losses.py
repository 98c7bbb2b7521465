"""Hinge losses and the duality gap of the alphaGAN search (``functions.py::duality_gap_with_mm``).

The GAN value is the negative hinge discriminator loss, ``V(G, D) = -L_D``, with

    L_D = mean relu(1 - D(x)) + mean relu(1 + D(G(z)))        L_G = -mean D(G(z))

and the duality gap of a pair (G, D), estimated with the worst-case copies G_w and D_w, is

    DG = minmax - maxmin,   minmax = V(G, D_w),   maxmin = V(G_w, D)

(``functions.py::duality_gap_with_mm``), not clamped: it can be negative. Plain tensor
functions, no Lightning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["DualityGap", "d_hinge_loss", "duality_gap", "g_hinge_loss", "hinge_value"]

Net = Callable[[torch.Tensor], torch.Tensor]


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``mean relu(1 - D(x)) + mean relu(1 + D(G(z)))`` (fp32 whatever the logits' dtype)."""
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """``-mean D(G(z))``: the generator's hinge loss."""
    return -fake_logits.float().mean()


def hinge_value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The game's value ``V = -L_D``: higher when D separates real from fake less."""
    return -d_hinge_loss(real_logits, fake_logits)


class DualityGap(NamedTuple):
    """``gap = minmax - maxmin`` and its two terms (0-d tensors)."""

    gap: torch.Tensor
    minmax: torch.Tensor
    maxmin: torch.Tensor


def duality_gap(
    generator: Net,
    discriminator: Net,
    worst_generator: Net,
    worst_discriminator: Net,
    real: torch.Tensor,
    z_minmax: torch.Tensor,
    z_maxmin: torch.Tensor,
    *,
    maxmin_grad: bool = True,
) -> DualityGap:
    """The duality gap on one batch of real images, with fresh noise for each term.

    Args:
        generator, discriminator: the current networks (callables ``z -> images``,
            ``images -> logits``; e.g. the supernet bound to its live α).
        worst_generator, worst_discriminator: the worst-case copies G_w, D_w.
        real: a batch of real images.
        z_minmax, z_maxmin: the noise of each term (the reference draws each anew).
        maxmin_grad: build the graph of the maxmin term; ``False`` computes it under
            ``no_grad`` (when nothing it depends on is being trained, it gives no gradient).

    Returns:
        ``DualityGap(gap, minmax, maxmin)`` with ``minmax = V(G, D_w)``, ``maxmin = V(G_w, D)``.
    """
    minmax = hinge_value(worst_discriminator(real), worst_discriminator(generator(z_minmax)))
    with torch.set_grad_enabled(maxmin_grad and torch.is_grad_enabled()):
        maxmin = hinge_value(discriminator(real), discriminator(worst_generator(z_maxmin)))
    return DualityGap(minmax - maxmin, minmax, maxmin)
