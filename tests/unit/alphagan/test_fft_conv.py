"""The tiled FFT convolution equals F.conv2d: outputs and gradients, in float64 and float32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search_spaces.gan.fft_conv import fft_conv2d, kernel_spectrum, tile_for


def _case(n, c, o, h, w, k, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(o, c, k, k, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(o, generator=g, dtype=dtype, requires_grad=True)
    return x, weight, bias


@pytest.mark.parametrize(
    "shape,k,padding,tile",
    [
        ((2, 3, 4, 32, 32), 5, 2, None),  # the supernet's fused edge: 2x2 tiles of 20
        ((2, 3, 4, 16, 16), 5, 2, None),  # tile 12
        ((1, 2, 3, 13, 9), 5, 2, None),  # sizes the tiles do not divide: cropped
        ((2, 3, 2, 11, 11), 3, 1, 7),  # another kernel and tile
        ((1, 2, 2, 10, 12), 7, 0, 10),  # no padding: a smaller output
        ((1, 1, 1, 6, 6), 5, 2, 25),  # one tile larger than the map
    ],
)
def test_equals_conv2d_with_gradients_in_float64(shape, k, padding, tile) -> None:
    n, c, o, h, w = shape
    x, weight, bias = _case(n, c, o, h, w, k)
    ref = F.conv2d(x, weight, bias, padding=padding)
    out = fft_conv2d(x, weight, bias, padding=padding, tile=tile)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, (x, weight, bias), grad)
    want = torch.autograd.grad(ref, (x, weight, bias), grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_float32_error_is_float_rounding() -> None:
    x, weight, bias = _case(4, 64, 64, 32, 32, 5, dtype=torch.float32)
    with torch.no_grad():
        ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=2)
        out = fft_conv2d(x, weight, bias, padding=2)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_channels_last_in_channels_last_out() -> None:
    x, weight, bias = _case(2, 4, 4, 32, 32, 5)
    xc = x.detach().contiguous(memory_format=torch.channels_last)
    out = fft_conv2d(xc, weight.detach(), bias.detach(), padding=2)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.conv2d(xc, weight.detach(), bias.detach(), padding=2))
    plain = fft_conv2d(x.detach(), weight.detach(), None, padding=2)
    assert plain.is_contiguous()


def test_spectrum_is_the_conjugate_rfft2_of_the_padded_kernel_and_can_be_passed_in() -> None:
    x, weight, _ = _case(2, 3, 5, 16, 16, 5)
    tile = tile_for(16, 5)
    assert tile == 12 and tile_for(32, 5) == 20 and tile_for(48, 5) == 20
    spectrum = kernel_spectrum(weight.detach(), tile)  # re, im, re + im; (T * (T//2+1), C, O)
    want = torch.fft.rfft2(weight.detach(), s=(tile, tile)).conj()  # (O, C, T, T//2+1)
    want = want.permute(2, 3, 1, 0).reshape(-1, 3, 5)
    assert [t.shape for t in spectrum] == [(tile * (tile // 2 + 1), 3, 5)] * 3
    torch.testing.assert_close(spectrum[0], want.real)
    torch.testing.assert_close(spectrum[1], want.imag)
    torch.testing.assert_close(spectrum[2], want.real + want.imag)
    with torch.no_grad():
        torch.testing.assert_close(
            fft_conv2d(x, weight, None, padding=2, spectrum=spectrum),
            F.conv2d(x, weight, None, padding=2),
        )


def test_channel_mismatch_is_a_clear_error() -> None:
    x, weight, _ = _case(1, 3, 2, 8, 8, 3)
    with pytest.raises(ValueError, match="input has 2 channels, weight expects 3"):
        fft_conv2d(x[:, :2], weight, padding=1)
