"""The supernet's FFT path (``conv=fft|auto``) against the direct 5x5 convolution.

``conv=fft`` runs every fused edge of the tiny supernet (maps of 4, 8 and 16 pixels) through
the FFT; ``auto`` picks it only where it measured faster (many channels, large maps).
"""

from __future__ import annotations

import copy

import pytest
import torch

from search_spaces.gan import GeneratorSupernet
from search_spaces.gan.cell import MixedNormal
from search_spaces.gan.fft_conv import fft_pays


def pair(conv: str = "fft") -> tuple[GeneratorSupernet, GeneratorSupernet]:
    torch.manual_seed(0)
    fft = GeneratorSupernet(latent_dim=16, width=8, bottom_width=2, conv=conv).double()
    with torch.no_grad():
        for a in fft.alphas():
            a.normal_()  # away from uniform, so a wrong weighting would show
    direct = copy.deepcopy(fft)
    direct.conv = "direct"
    return fft, direct


def test_fft_supernet_equals_direct_in_outputs_and_gradients() -> None:
    fft, direct = pair()
    assert fft.cells[0].normal[0].uses_fft(torch.zeros(1, 8, 4, 4, dtype=torch.float64))
    z = torch.randn(4, 16, dtype=torch.float64)
    out_f, out_d = fft(z), direct(z)
    torch.testing.assert_close(out_f, out_d, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(out_f)
    (out_f * g).sum().backward()
    (out_d * g).sum().backward()
    for (name, pf), (_, pd) in zip(fft.named_parameters(), direct.named_parameters()):
        torch.testing.assert_close(pf.grad, pd.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_no_grad_spectrum_is_reused_only_while_the_kernel_is_unchanged() -> None:
    fft, direct = pair()
    edge = fft.cells[2].normal[1]
    z = torch.randn(4, 16, dtype=torch.float64)
    with torch.no_grad():
        first = fft(z)
        spectrum = edge._spectrum.spectrum
        assert spectrum is not None
        fft(z)
        assert edge._spectrum.spectrum is spectrum  # same weights and α: kept
        for m in (fft, direct):  # an optimiser-like in-place update of one kernel
            m.cells[2].normal[1].ops[2].conv.weight.add_(0.01)
        second = fft(z)
        assert edge._spectrum.spectrum is not spectrum  # recomputed
        torch.testing.assert_close(second, direct(z), rtol=1e-10, atol=1e-12)
        assert not torch.equal(first, second)
        for m in (fft, direct):  # α changed: recomputed too
            m.alpha["normal3"].add_(0.5)
        torch.testing.assert_close(fft(z), direct(z), rtol=1e-10, atol=1e-12)


def test_autograd_forwards_are_not_cached_and_copies_start_empty() -> None:
    fft, _ = pair()
    z = torch.randn(2, 16, dtype=torch.float64)
    fft(z).sum().backward()
    edge = fft.cells[2].normal[0]
    assert edge._spectrum.spectrum is None
    with torch.no_grad():
        fft(z)
    assert edge._spectrum.spectrum is not None
    assert copy.deepcopy(fft).cells[2].normal[0]._spectrum.spectrum is None


def test_auto_is_fft_where_it_pays_on_cpu_never_under_autocast_or_in_half_precision() -> None:
    edge = MixedNormal(4, conv="auto")
    assert fft_pays(256, 16) and fft_pays(128, 32) and fft_pays(256, 32)
    assert not fft_pays(128, 16) and not fft_pays(64, 32) and not fft_pays(1024, 8)
    assert not edge.uses_fft(torch.zeros(1, 4, 32, 32))  # 4 channels: direct
    x = torch.zeros(1, 256, 16, 16)
    assert edge.uses_fft(x)  # the rule reads the input's channels and size
    assert not edge.uses_fft(x.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not edge.uses_fft(x)
    edge.conv = "direct"
    assert not edge.uses_fft(x)


def test_unknown_conv_is_an_error() -> None:
    with pytest.raises(ValueError, match="conv='winograd': expected one of auto, direct, fft"):
        MixedNormal(4, conv="winograd")
    G = GeneratorSupernet(latent_dim=8, width=4, bottom_width=2)
    with pytest.raises(ValueError, match="expected one of"):
        G.conv = "cudnn"
