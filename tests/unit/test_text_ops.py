"""The eight TextNAS ops: shapes, the reference arithmetic, and padding behaviour."""

from __future__ import annotations

import pytest
import torch

from search_spaces.text import OP_NAMES
from search_spaces.text.ops import (
    MaskedBatchNorm1d,
    SelfAttention,
    build_op,
    reference_attention,
)

C, B, L, PAD = 16, 3, 9, 5


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, C, L) with all lengths == L, and the same x followed by PAD masked positions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, L, generator=g)
    garbage = torch.randn(B, C, PAD, generator=g)
    mask = torch.cat([torch.ones(B, 1, L), torch.zeros(B, 1, PAD)], dim=2)
    x_padded = torch.cat([x, garbage], dim=2) * mask  # the network zeroes padding between ops
    return x, x_padded, mask


@pytest.mark.parametrize("name", OP_NAMES)
def test_op_shapes(name: str) -> None:
    op = build_op(name, C)
    x, x_padded, mask = _inputs()
    assert op(x, None).shape == (B, C, L)
    out = op(x_padded, mask)
    assert out.shape == (B, C, L + PAD)
    assert torch.all(out[..., L:] == 0), "padded positions must be zero after every op"


def test_unknown_op_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown TextNAS op 'conv9'"):
        build_op("conv9", C)


# Ops whose reference definition leaves real positions unchanged when padding follows (eval).
PADDING_INVARIANT = ("conv1", "conv3", "conv5", "conv7", "avg_pool", "rnn", "attention")


@pytest.mark.parametrize("name", PADDING_INVARIANT)
def test_padding_does_not_change_real_positions(name: str) -> None:
    op = build_op(name, C).eval()
    x, x_padded, mask = _inputs()
    with torch.no_grad():
        plain = op(x, None)
        padded = op(x_padded, mask)
    torch.testing.assert_close(padded[..., :L], plain, rtol=1e-5, atol=1e-5)


def test_reference_max_pool_sees_padding_and_the_fixed_one_does_not() -> None:
    # All-negative activations: the last real token's window holds a padding zero, which wins
    # the reference max (MaxPool1d pads with -inf only at the true sequence end).
    x = -torch.rand(B, C, L) - 0.1
    mask = torch.cat([torch.ones(B, 1, L), torch.zeros(B, 1, PAD)], dim=2)
    x_padded = torch.cat([x, torch.zeros(B, C, PAD)], dim=2)
    faithful = build_op("max_pool", C)
    fixed = build_op("max_pool", C, maxpool_ignores_padding=True)
    plain = faithful(x, None)
    assert not torch.allclose(faithful(x_padded, mask)[..., :L], plain)
    assert torch.all(faithful(x_padded, mask)[..., L - 1] == 0)
    torch.testing.assert_close(fixed(x_padded, mask)[..., :L], plain)


def test_masked_batchnorm_statistics_exclude_padding_in_training() -> None:
    x, x_padded, mask = _inputs()
    reference = MaskedBatchNorm1d(C).train()
    masked = MaskedBatchNorm1d(C, masked=True).train()
    plain = reference(x)  # statistics of the real tokens only
    torch.testing.assert_close(masked(x_padded, mask)[..., :L], plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(masked.running_mean, reference.running_mean)
    torch.testing.assert_close(masked.running_var, reference.running_var)
    # The reference behaviour (statistics over padding zeros too) differs:
    faithful = MaskedBatchNorm1d(C).train()
    assert not torch.allclose(faithful(x_padded, mask)[..., :L], plain, atol=1e-3)


def test_conv_in_training_is_padding_invariant_only_with_masked_bn() -> None:
    x, x_padded, mask = _inputs()
    torch.manual_seed(0)
    fixed = build_op("conv3", C, masked_bn=True).train()
    torch.testing.assert_close(fixed(x_padded, mask)[..., :L], fixed(x, None), rtol=1e-5, atol=1e-5)
    faithful = build_op("conv3", C).train()
    assert not torch.allclose(faithful(x_padded, mask)[..., :L], faithful(x, None), atol=1e-3)


def test_fused_attention_matches_the_reference_arithmetic() -> None:
    torch.manual_seed(0)
    op = SelfAttention(C).eval()
    _, x_padded, mask = _inputs()
    # Uneven lengths, so the key mask matters for every row.
    mask = mask.clone()
    mask[1, 0, 4:] = 0
    x_padded = x_padded * mask
    with torch.no_grad():
        torch.testing.assert_close(op(x_padded, mask), reference_attention(x_padded, mask, op))


def test_attention_has_no_output_projection_and_reference_parameter_count() -> None:
    op = SelfAttention(256)
    # Q, K, V Linear(C, C) with bias, plus BatchNorm affine (reference sheet §1.4).
    assert sum(p.numel() for p in op.parameters()) == 197_888


@pytest.mark.parametrize(
    "name, params",
    [("conv1", 66_304), ("conv3", 197_376), ("conv5", 328_448), ("conv7", 459_520),
     ("rnn", 789_504), ("avg_pool", 0), ("max_pool", 0)],
)  # fmt: skip
def test_op_parameter_counts_at_256(name: str, params: int) -> None:
    assert sum(p.numel() for p in build_op(name, 256).parameters()) == params


def test_recurrent_op_sums_directions_over_true_lengths() -> None:
    torch.manual_seed(0)
    op = build_op("rnn", C).eval()
    x, x_padded, mask = _inputs()
    mask = mask.clone()
    mask[0, 0, 6:] = 0  # first sequence has 6 real tokens
    x_padded = x_padded * mask
    with torch.no_grad():
        out = op(x_padded, mask)
        # Run the first sequence alone, unpadded, through the GRU directly.
        seq = x_padded[0:1, :, :6].transpose(1, 2)
        full, _ = op.gru(seq)
        expected = (full[..., :C] + full[..., C:]).transpose(1, 2)
    torch.testing.assert_close(out[0:1, :, :6], expected, rtol=1e-5, atol=1e-6)
    assert torch.all(out[0, :, 6:] == 0)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_fast_dropout_keeps_the_dropout_distribution(p: float) -> None:
    from search_spaces.text.ops import Dropout

    torch.manual_seed(0)
    drop = Dropout(p).train()
    x = torch.ones(400_003)  # not a multiple of the four lanes of a draw
    y = drop(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    kept = y != 0
    keep = round((1 - p) * 32768) / 32768  # the keep probability rounded to 2^-15
    assert abs(keep - (1 - p)) <= 2**-16
    # Every lane of the 64-bit draws (lane 3 has only 15 random bits) keeps at the same rate.
    for lane in range(4):
        rate = kept[lane::4].float().mean().item()
        assert abs(rate - keep) < 5 * (keep * (1 - keep) / 100_000) ** 0.5, (lane, rate)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / keep))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_fast_dropout_gradients_and_fallbacks() -> None:
    from search_spaces.text.ops import Dropout

    torch.manual_seed(0)
    # Gradients flow only through kept elements, with the same scaling.
    x = torch.ones(1000, requires_grad=True)
    out = Dropout(0.5).train()(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())
    # Other dtypes use the stock kernel (same dtype out).
    xb = torch.ones(1000, dtype=torch.bfloat16)
    assert Dropout(0.5).train()(xb).dtype == torch.bfloat16
    # A keep probability too close to 0 or 1 for 15 bits falls back to the exact kernel.
    y = Dropout(1e-6).train()(torch.ones(1000))
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - 1e-6)))
