"""Hinge losses and the duality gap against hand computations (docs/alphagan.md, "The search")."""

from __future__ import annotations

import pytest
import torch

from lightning_modules.alphagan.losses import d_hinge_loss, duality_gap, g_hinge_loss, hinge_value


def test_hinge_losses_by_hand() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - x): 0, 0.5, 2 -> mean 2.5 / 3
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + x): 0, 1 -> mean 0.5
    assert d_hinge_loss(real, fake).item() == pytest.approx(2.5 / 3 + 0.5)
    assert hinge_value(real, fake).item() == pytest.approx(-(2.5 / 3 + 0.5))
    assert g_hinge_loss(fake).item() == pytest.approx(1.0)


def test_duality_gap_on_tiny_linear_nets_by_hand() -> None:
    """G(z) = 0.5 z, D_w(x) = 2 x, G_w(z) = z, D(x) = -x on 1-pixel images.

    minmax = V(G, D_w): D_w(real) = [1, -2] -> hinge mean(0, 3) = 1.5; D_w(G(z1)) = D_w([0.5, 1])
    = [1, 2] -> mean(2, 3) = 2.5; minmax = -(1.5 + 2.5) = -4.
    maxmin = V(G_w, D): D(real) = [-0.5, 1] -> mean(1.5, 0) = 0.75; D(G_w(z2)) = D([0, -3]) =
    [0, 3] -> mean(1, 4) = 2.5; maxmin = -3.25.   gap = -4 - (-3.25) = -0.75 (negative: allowed).
    """
    real = torch.tensor([0.5, -1.0])
    z1, z2 = torch.tensor([1.0, 2.0]), torch.tensor([0.0, -3.0])
    a = torch.tensor(0.5, requires_grad=True)  # G's one "architecture" weight
    gap = duality_gap(lambda z: a * z, lambda x: -x, lambda z: z, lambda x: 2 * x, real, z1, z2)
    assert gap.minmax.item() == pytest.approx(-4.0)
    assert gap.maxmin.item() == pytest.approx(-3.25)
    assert gap.gap.item() == pytest.approx(-0.75)
    # d minmax / da: -(1/2) * d/da [relu(1 + 2 a z1)] summed = -(1/2)(2*1 + 2*2) = -3
    (grad,) = torch.autograd.grad(gap.gap, a)
    assert grad.item() == pytest.approx(-3.0)


def test_maxmin_without_grad_has_no_graph() -> None:
    w = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor([0.2, -0.4])
    gap = duality_gap(
        lambda z: w * z, lambda v: w * v, lambda z: w * z, lambda v: v, x, x, x, maxmin_grad=False
    )
    assert gap.minmax.requires_grad and not gap.maxmin.requires_grad
    full = duality_gap(lambda z: w * z, lambda v: w * v, lambda z: w * z, lambda v: v, x, x, x)
    assert full.maxmin.requires_grad
    assert torch.allclose(gap.gap, full.gap.detach())
