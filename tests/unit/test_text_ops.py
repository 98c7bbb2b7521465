"""The eight TextNAS ops: shapes, the reference arithmetic, and padding behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from search_spaces.text import OP_NAMES
from search_spaces.text.ops import (
    MaskedBatchNorm1d,
    SelfAttention,
    avg_pool3,
    build_op,
    max_pool3,
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


def _tied(seed: int, shape=(4, 8, 12)) -> torch.Tensor:
    """Small integers after a ReLU: many exact ties inside pooling windows, and zeros."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, shape, generator=g).double().relu()


@pytest.mark.parametrize("make", ["random", "tied", "constant", "minus_inf_padding"])
def test_max_pool3_matches_max_pool1d_values_and_gradient_routing(make: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = {
        "random": lambda: torch.randn(4, 8, 12, generator=g, dtype=torch.float64),
        "tied": lambda: _tied(2),
        "constant": lambda: torch.full((2, 3, 7), 0.5, dtype=torch.float64),
        "minus_inf_padding": lambda: torch.randn(
            4, 8, 12, generator=g, dtype=torch.float64
        ).index_fill(2, torch.tensor([9, 10, 11]), float("-inf")),
    }[make]()
    grad = torch.randn(x.shape, generator=g, dtype=torch.float64)
    ours = x.clone().requires_grad_()
    theirs = x.clone().requires_grad_()
    y_ours = max_pool3(ours)
    y_theirs = F.max_pool1d(theirs, 3, stride=1, padding=1)
    assert torch.equal(y_ours, y_theirs)
    y_ours.backward(grad)
    y_theirs.backward(grad)
    # The same element receives each output's gradient (leftmost maximum on ties), so the sums
    # agree up to the order of additions.
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=0, atol=1e-12)


def test_max_pool3_float32_and_no_grad_paths() -> None:
    x = torch.randn(2, 5, 9).relu().requires_grad_()
    y = max_pool3(x)
    assert y.grad_fn is not None and "MaxPool3" in type(y.grad_fn).__name__
    with torch.no_grad():
        assert torch.equal(max_pool3(x), F.max_pool1d(x, 3, stride=1, padding=1))
    x_ref = x.detach().clone().requires_grad_()
    y.sum().backward()
    F.max_pool1d(x_ref, 3, stride=1, padding=1).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_avg_pool3_matches_avg_pool1d_with_padding_counted(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 10, generator=g).to(dtype)
    grad = torch.randn(x.shape, generator=g).to(dtype)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours = avg_pool3(ours)
    y_theirs = F.avg_pool1d(theirs, 3, stride=1, padding=1, count_include_pad=True)
    if dtype == torch.float32:  # the depthwise-convolution path: equal up to rounding
        torch.testing.assert_close(y_ours, y_theirs, rtol=1e-6, atol=1e-6)
    else:  # the stock kernel
        assert torch.equal(y_ours, y_theirs)
    # Edges count the zero padding: (0 + x0 + x1) / 3.
    torch.testing.assert_close(y_ours[..., 0], (x[..., 0] + x[..., 1]) / 3, rtol=1e-2, atol=1e-6)
    y_ours.backward(grad)
    y_theirs.backward(grad)
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
def test_cpu_batchnorm_training_path_matches_nn_batchnorm(affine: bool, track: bool) -> None:
    """MaskedBatchNorm1d's own float32 training path against nn.BatchNorm1d over three steps:
    outputs, input and parameter gradients, running statistics and the batch counter."""
    g = torch.Generator().manual_seed(4)
    ours = MaskedBatchNorm1d(12, affine=affine, track_running_stats=track)
    theirs = torch.nn.BatchNorm1d(12, affine=affine, track_running_stats=track)
    if affine:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5, generator=g)
            theirs.bias.uniform_(-1.0, 1.0, generator=g)
    ours.load_state_dict(theirs.state_dict())
    for _ in range(3):
        x = (torch.randn(5, 12, 7, generator=g) * 3.0 + 2.0).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        grad = torch.randn(x.shape, generator=g)
        y, y_ref = ours(x), theirs(x_ref)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        y.backward(grad)
        y_ref.backward(grad)
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    for name, tensor in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], tensor, rtol=1e-6, atol=1e-6)
    if affine:
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-5, atol=1e-5)


def test_cpu_batchnorm_is_stable_for_a_large_mean() -> None:
    """Two-pass statistics: a mean of 1e4 with unit spread loses nothing (a one-pass
    E[x^2] - E[x]^2 in float32 would lose the variance entirely)."""
    g = torch.Generator().manual_seed(5)
    x64 = torch.randn(8, 4, 16, generator=g, dtype=torch.float64) + 1e4
    bn = MaskedBatchNorm1d(4)
    y = bn(x64.float())
    mean = x64.mean((0, 2), keepdim=True)
    var = x64.var((0, 2), unbiased=False, keepdim=True)
    expected = (x64 - mean) / torch.sqrt(var + bn.eps)
    torch.testing.assert_close(y.double(), expected, rtol=0, atol=2e-3)


def test_fast_cpu_paths_step_aside_under_cpu_autocast() -> None:
    """Under bf16 autocast the depthwise convolution would run in bf16; the stock average pool
    and BatchNorm stay in float32, so they are used there."""
    x = torch.randn(2, 8, 10)
    bn = MaskedBatchNorm1d(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = avg_pool3(x)
        normed = bn(x)
    assert pooled.dtype == torch.float32 and normed.dtype == torch.float32
    assert torch.equal(pooled, F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=True))
