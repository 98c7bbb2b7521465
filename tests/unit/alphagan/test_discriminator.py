"""Tests for AutoGAN's discriminator (docs/alphagan.md, "The search")."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lightning_modules.alphagan.discriminator import Discriminator
from search_spaces.gan import init_weights


def layers(D: nn.Module) -> list[nn.Module]:
    return [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_parameter_count_matches_reference():
    assert sum(p.numel() for p in Discriminator(width=128).parameters()) == 1_053_824
    assert (
        sum(p.numel() for p in Discriminator(width=128, spectral_norm=False).parameters())
        == 1_053_824
    )


def test_spectral_norm_on_every_conv_and_the_linear_layer():
    D = Discriminator(width=128)
    assert len(layers(D)) == 3 + 3 + 2 + 2 + 1  # block1 c1 c2 sc, block2 c1 c2 sc, 2 x (c1 c2), l5
    assert all(parametrize.is_parametrized(m, "weight") for m in layers(D))
    assert not any(
        parametrize.is_parametrized(m) for m in layers(Discriminator(width=8, spectral_norm=False))
    )
    assert D.linear.bias is None and not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules()
    )


def test_spectral_norm_bounds_each_layer():
    torch.manual_seed(0)
    D = Discriminator(width=16)
    x = torch.randn(4, 3, 16, 16)
    for _ in range(30):  # one power iteration per training forward
        D(x)
    D.eval()
    for m in layers(D):
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("size", [32, 48])
def test_output_is_one_logit_per_image(size):
    D = Discriminator(width=8)
    x = torch.randn(3, 3, size, size, requires_grad=True)
    out = D(x)
    assert out.shape == (3,)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in D.parameters())


def test_global_sum_pooling_and_shortcuts():
    """The forward against an explicit re-computation of AutoGAN's D (no spectral norm)."""
    torch.manual_seed(1)
    D = Discriminator(width=4, spectral_norm=False)
    x = torch.randn(2, 3, 16, 16)
    F = torch.nn.functional
    b1, b2, b3, b4 = D.blocks
    h = F.avg_pool2d(b1.c2(F.relu(b1.c1(x))), 2) + b1.c_sc(F.avg_pool2d(x, 2))
    h = F.avg_pool2d(b2.c2(F.relu(b2.c1(F.relu(h)))), 2) + F.avg_pool2d(b2.c_sc(h), 2)
    for b in (b3, b4):
        assert b.c_sc is None
        h = b.c2(F.relu(b.c1(F.relu(h)))) + h
    expected = F.relu(h).sum(dim=(2, 3)) @ D.linear.weight.T
    torch.testing.assert_close(D(x), expected.squeeze(1))


def test_deepcopy_and_retrain_init():
    D = Discriminator(width=8)
    D(torch.randn(2, 3, 16, 16))
    D_w = copy.deepcopy(D)  # the worst-case copy
    D_w.load_state_dict(D.state_dict())
    x = torch.randn(2, 3, 16, 16)
    D.eval(), D_w.eval()
    torch.testing.assert_close(D(x), D_w(x))
    before = D.blocks[0].c1.parametrizations.weight.original.clone()
    torch.manual_seed(0)
    init_weights(D)
    after = D.blocks[0].c1.parametrizations.weight.original
    assert not torch.equal(before, after)
    bound = (6 / (3 * 9 + 8 * 9)) ** 0.5  # xavier_uniform on a 3 -> 8 3x3 conv
    assert after.abs().max() <= bound


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    a, b = Discriminator(width=8), Discriminator(width=8, channels_last=True)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(b(x), a(x), rtol=1e-4, atol=1e-5)
