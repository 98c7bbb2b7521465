"""The CPU bi-GRU of ``cpu_kernels`` (hand-written backward through time) equals nn.GRU with
packed sequences, and with the switch off RecurrentOp runs nn.GRU itself."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from search_spaces.text import cpu_kernels as bigru
from search_spaces.text.cpu_kernels import bidirectional_gru_summed, reverse_index
from search_spaces.text.ops import RecurrentOp


def _reference(gru: torch.nn.GRU, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    c = gru.hidden_size
    if lengths is None:
        out, _ = gru(x)
    else:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out[..., :c] + out[..., c:]


def _ours(gru: torch.nn.GRU, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """The channels-first kernel on batch-first input, for comparison with nn.GRU."""
    return bidirectional_gru_summed(gru, x.transpose(1, 2), lengths).transpose(1, 2)


@pytest.mark.parametrize("padded", [False, True])
def test_outputs_and_all_gradients_match_nn_gru(padded: bool) -> None:
    torch.manual_seed(0)
    b, length, c = 5, 11, 6
    gru = torch.nn.GRU(c, c, batch_first=True, bidirectional=True).double()
    x = torch.randn(b, length, c, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([11, 3, 7, 1, 10]) if padded else None
    mask = torch.ones(b, length, 1, dtype=torch.double)
    if padded:
        mask = (torch.arange(length)[None, :] < lengths[:, None]).double()[..., None]
    weights = torch.randn(b, length, c, dtype=torch.double)

    expected = _reference(gru, x, lengths)
    actual = _ours(gru, x, lengths) * mask
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)

    params = [x, *gru.parameters()]
    grads_expected = torch.autograd.grad((expected * weights).sum(), params)
    grads_actual = torch.autograd.grad((actual * weights).sum(), params)
    for g_exp, g_act in zip(grads_expected, grads_actual):
        torch.testing.assert_close(g_act, g_exp, rtol=1e-9, atol=1e-11)


def test_gradcheck_of_the_recurrence() -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 3, batch_first=True, bidirectional=True).double()
    x = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: _ours(gru, inp), (x,))


def test_reverse_index() -> None:
    idx = reverse_index(torch.tensor([3, 5]), 5)
    assert idx.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]]


@pytest.mark.parametrize("padded", [False, True])
def test_float32_kernel_matches_float64_reference(padded: bool) -> None:
    """The fp32 kernel against nn.GRU in float64."""
    torch.manual_seed(1)
    b, length, c = 6, 13, 16
    gru = torch.nn.GRU(c, c, batch_first=True, bidirectional=True)
    x = torch.randn(b, length, c)
    lengths = torch.tensor([13, 4, 9, 1, 13, 7]) if padded else None
    mask = torch.ones(b, length, 1)
    if padded:
        mask = (torch.arange(length)[None, :] < lengths[:, None]).float()[..., None]
    weights = torch.randn(b, length, c)

    gru64 = copy.deepcopy(gru).double()
    x64 = x.double().requires_grad_(True)
    expected = _reference(gru64, x64, lengths)
    grads_expected = torch.autograd.grad(
        (expected * weights.double()).sum(), [x64, *gru64.parameters()]
    )

    x32 = x.clone().requires_grad_(True)
    actual = _ours(gru, x32, lengths) * mask
    grads_actual = torch.autograd.grad((actual * weights).sum(), [x32, *gru.parameters()])
    torch.testing.assert_close(actual.double(), expected, rtol=1e-4, atol=1e-5)
    for g_exp, g_act in zip(grads_expected, grads_actual):
        torch.testing.assert_close(g_act.double(), g_exp, rtol=1e-4, atol=1e-4)


def test_one_token_batch() -> None:
    """Length 1: no previous state, an empty dW_hh product."""
    torch.manual_seed(2)
    gru = torch.nn.GRU(8, 8, batch_first=True, bidirectional=True)
    x = torch.randn(3, 1, 8, requires_grad=True)
    expected = _reference(gru, x, None)
    grads_expected = torch.autograd.grad(expected.sum(), [x, *gru.parameters()])
    actual = _ours(gru, x)
    grads_actual = torch.autograd.grad(actual.sum(), [x, *gru.parameters()])
    torch.testing.assert_close(actual, expected)
    for g_exp, g_act in zip(grads_expected, grads_actual):
        torch.testing.assert_close(g_act, g_exp)


@pytest.mark.parametrize("padded", [False, True])
def test_recurrent_op_with_the_switch_off_is_nn_gru(padded: bool, monkeypatch) -> None:
    """Switch off: RecurrentOp runs nn.GRU itself (the kernel is never called), with the same
    result as the CPU kernel."""
    torch.manual_seed(4)
    op = RecurrentOp(8, dropout=0.0)
    x = torch.randn(3, 8, 7)
    mask = None
    if padded:
        mask = (torch.arange(7)[None, :] < torch.tensor([7, 3, 5])[:, None])[:, None, :].float()
        x = x * mask
    fast = op(x, mask)

    def fail(*args, **kwargs):
        raise AssertionError("the CPU kernel ran with the switch off")

    monkeypatch.setattr(bigru, "bidirectional_gru_summed", fail)
    with bigru.stock_ops():
        stock = op(x, mask)
    torch.testing.assert_close(stock, fast, rtol=1e-5, atol=1e-6)
