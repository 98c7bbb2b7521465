"""The eight TextNAS ops: shapes, the reference arithmetic, padding behaviour; the CPU paths
of ``cpu_kernels`` against the stock ops, and the switch that turns them off."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from search_spaces.text import OP_NAMES, cpu_kernels
from search_spaces.text.ops import (
    Dropout,
    MaskedBatchNorm1d,
    SelfAttention,
    avg_pool3,
    build_op,
    max_pool3,
)
from tests.helpers.attention_oracle import reference_attention

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
    # Q, K, V Linear(C, C) with bias, plus BatchNorm affine (NNI ``ops.py``).
    assert sum(p.numel() for p in op.parameters()) == 197_888


@pytest.mark.parametrize(
    "name, params",
    [
        ("conv1", 66_304),
        ("conv3", 197_376),
        ("conv5", 328_448),
        ("conv7", 459_520),
        ("rnn", 789_504),
        ("avg_pool", 0),
        ("max_pool", 0),
    ],
)
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


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_is_the_stock_dropout(p: float) -> None:
    """Exactly F.dropout: the configured keep probability and PyTorch's own random stream."""
    assert Dropout is torch.nn.Dropout
    x = torch.ones(10_000)
    torch.manual_seed(0)
    ours = Dropout(p).train()(x)
    torch.manual_seed(0)
    assert torch.equal(ours, F.dropout(x, p, training=True))
    assert torch.equal(Dropout(p).eval()(x), x)


def test_max_pool3_is_the_stock_max_pool() -> None:
    x = torch.randn(2, 5, 9).relu().requires_grad_()
    assert torch.equal(max_pool3(x), F.max_pool1d(x, 3, stride=1, padding=1))


def test_avg_pool3_is_the_stock_pool_with_padding_counted() -> None:
    x = torch.randn(3, 6, 10)
    y = avg_pool3(x)
    assert torch.equal(y, F.avg_pool1d(x, 3, stride=1, padding=1, count_include_pad=True))
    torch.testing.assert_close(y[..., 0], (x[..., 0] + x[..., 1]) / 3)  # edges count the zero


@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
def test_batchnorm_training_matches_nn_batchnorm(affine: bool, track: bool) -> None:
    """MaskedBatchNorm1d (unmasked) against nn.BatchNorm1d over three training steps: outputs,
    input and parameter gradients, running statistics and the batch counter."""
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


# ------------------------------------------------------------------------------ the switch

KERNELS = ("bidirectional_gru_summed",)


def _count_kernel_calls(monkeypatch) -> dict[str, int]:
    calls = dict.fromkeys(KERNELS, 0)
    for name in KERNELS:
        original = getattr(cpu_kernels, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(cpu_kernels, name, counted)
    return calls


def _every_op_forward_backward(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every op once in training mode, input gradients kept."""
    torch.manual_seed(seed)
    ops = {name: build_op(name, C, cnn_dropout=0.0).train() for name in OP_NAMES}
    x = torch.randn(B, C, L, requires_grad=True)
    out = {"x": x.detach()}
    for name, op in ops.items():
        y = op(x, None)
        (grad,) = torch.autograd.grad((y * y).sum(), x)
        out[name] = y.detach()
        out[f"{name}.grad"] = grad
    return out


def test_switch_on_runs_every_cpu_kernel(monkeypatch) -> None:
    monkeypatch.setattr(cpu_kernels, "_override", None)
    monkeypatch.delenv(cpu_kernels.ENV_VAR, raising=False)
    calls = _count_kernel_calls(monkeypatch)
    _every_op_forward_backward()
    assert all(calls.values()), calls


@pytest.mark.parametrize("how", ["stock_ops", "set_enabled", "env"])
def test_switch_off_runs_only_stock_ops(how: str, monkeypatch) -> None:
    """With the switch off no CPU kernel runs, and every op equals its stock formulation."""
    monkeypatch.setattr(cpu_kernels, "_override", None)
    calls = _count_kernel_calls(monkeypatch)
    if how == "stock_ops":
        with cpu_kernels.stock_ops():
            out = _every_op_forward_backward()
        assert cpu_kernels.enabled()
    elif how == "set_enabled":
        cpu_kernels.set_enabled(False)
        out = _every_op_forward_backward()
        cpu_kernels.set_enabled(None)
    else:
        monkeypatch.setenv(cpu_kernels.ENV_VAR, "off")
        out = _every_op_forward_backward()
    assert not any(calls.values()), calls
    with torch.no_grad():  # the recurrent op's stock formulation, bitwise
        torch.manual_seed(0)
        ops = {name: build_op(name, C, cnn_dropout=0.0).train() for name in OP_NAMES}
        seq = out["x"].transpose(1, 2)
        full, _ = ops["rnn"].gru(seq)
        expected = (full[..., :C] + full[..., C:]).transpose(1, 2)
    assert torch.equal(out["rnn"], expected)


def test_switch_values(monkeypatch) -> None:
    monkeypatch.setattr(cpu_kernels, "_override", None)
    for value, expected in [
        ("1", True),
        ("", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("OFF", False),
        ("no", False),
    ]:
        monkeypatch.setenv(cpu_kernels.ENV_VAR, value)
        assert cpu_kernels.enabled() is expected, value
    monkeypatch.delenv(cpu_kernels.ENV_VAR)
    assert cpu_kernels.enabled()
    cpu_kernels.set_enabled(False)
    assert not cpu_kernels.enabled()
    monkeypatch.setenv(cpu_kernels.ENV_VAR, "0")
    cpu_kernels.set_enabled(True)
    assert cpu_kernels.enabled()  # the override wins over the environment
    cpu_kernels.set_enabled(None)
    assert not cpu_kernels.enabled()
    with pytest.raises(ValueError, match="unknown CPU path"):
        with cpu_kernels.without("nonsense"):
            pass


def test_network_step_with_and_without_cpu_kernels_agree() -> None:
    """The released network at C=16: loss and gradients with the CPU kernels equal the stock
    ops' up to float rounding (dropout off, so both runs compute the same function)."""
    from search_spaces.text import Architecture, TextNASClassifier, TextNASEncoder, TextNASOptions

    keep = dict(embed_keep=1.0, cnn_keep=1.0, rnn_keep=1.0, attention_keep=1.0)
    torch.manual_seed(0)
    model = TextNASClassifier(
        TextNASEncoder(Architecture.released(), 50, TextNASOptions(width=16, **keep)), 3
    ).train()
    ids = torch.randint(2, 50, (4, 10))
    mask = torch.ones(4, 10, dtype=torch.bool)
    mask[1, 6:] = False

    def run() -> list[torch.Tensor]:
        net = copy.deepcopy(model)
        loss = net(ids, mask).square().sum()
        loss.backward()
        return [loss.detach()] + [p.grad for p in net.parameters()]

    fast = run()
    with cpu_kernels.stock_ops():
        stock = run()
    for a, b in zip(fast, stock):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
