"""A CPU-fast bidirectional GRU with summed directions, numerically the same as ``nn.GRU``.

PyTorch's CPU GRU runs the two directions one after the other, one small matmul and a handful
of autograd nodes per time step and direction. Here the whole layer is one autograd function:

* the backward pass through time is written by hand (no autograd graph of 64 x 10 nodes), and
  every tensor read across time is stored per direction in step order, (L, B, *), so the weight
  gradients are single large matmuls over all steps;
* the matmuls go through oneDNN where PyTorch has it (fp32 on CPU): on CPUs where the BLAS does
  not use AVX-512 (AMD EPYC with MKL) it is about twice as fast for the large input projections,
  and still faster for the small per-step products at batch 32. Without oneDNN (or in float64)
  they are ordinary ``F.linear`` calls with the same result.

Running the two directions on two threads at once was tried: it halves the recurrence alone,
but on a 2-core machine it slowed the rest of the training step down by more than it saved.

It works channels first, (B, C, L) in and out, as the TextNAS ops do. The parameters stay those
of an ``nn.GRU(C, C, bidirectional=True)`` (same names, same init), so checkpoints and parameter
counts do not depend on which implementation runs; on CUDA the cuDNN kernel of ``nn.GRU`` is
used instead (:class:`~search_spaces.text.ops.RecurrentOp`).

Variable lengths: the backward direction reads each sequence reversed within its own length
(the same result as packed sequences); outputs at padded positions are not meaningful and are
zeroed by the caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# oneDNN's fp32 linear (no autograd of its own; used inside the function below only).
_ONEDNN_LINEAR = (
    getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available()
    else None
)
USE_ONEDNN = True  # tests switch it off to compare both paths


def _onednn_applies(a: torch.Tensor) -> bool:
    return USE_ONEDNN and _ONEDNN_LINEAR is not None and a.dtype == torch.float32 and not a.is_cuda


def _linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ w.T + bias`` for 2-D ``a`` (M, K) and ``w`` (N, K), by oneDNN when it applies."""
    if _onednn_applies(a):
        return _ONEDNN_LINEAR(a, w, bias, "none", [], "")
    return F.linear(a, w, bias)


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, L) index that reverses each sequence's first ``length`` steps and keeps the rest."""
    t = torch.arange(max_len, device=lengths.device)[None, :]
    lengths = lengths[:, None]
    return torch.where(t < lengths, lengths - 1 - t, t)


def _reverse_time(
    x: torch.Tensor, index: torch.Tensor | None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x (L, B, C) with each sequence reversed in time: index (L, B), or None for a plain flip.

    The reversal is its own inverse, so the same call maps results back to time order.
    """
    steps = x.shape[0]
    if index is None:
        flip = torch.arange(steps - 1, -1, -1, device=x.device)
        return (
            torch.index_select(x, 0, flip, out=out) if out is not None else x.index_select(0, flip)
        )
    full = index[:, :, None].expand(x.shape)
    return torch.gather(x, 0, full, out=out) if out is not None else x.gather(0, full)


def _forward_direction(
    x: torch.Tensor,
    w_ih: torch.Tensor,
    b_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor,
    hs: torch.Tensor,
    rz_all: torch.Tensor,
    n_all: torch.Tensor,
    gh_n: torch.Tensor,
) -> None:
    """One direction over x (L, B, C) in step order; fills hs, rz_all (r and z), n_all and
    gh_n (W_hn h + b_hn), each (L, B, *), for the backward pass."""
    steps, batch, c = x.shape
    gi = _linear(x.view(steps * batch, c), w_ih, b_ih).view(steps, batch, 3 * c)
    h = x.new_zeros(batch, c)
    for t in range(steps):
        gh = _linear(h, w_hh, b_hh)  # (B, 3C)
        rz = torch.add(gi[t, :, : 2 * c], gh[:, : 2 * c], out=rz_all[t]).sigmoid_()
        n = torch.addcmul(gi[t, :, 2 * c :], rz[:, :c], gh[:, 2 * c :], out=n_all[t]).tanh_()
        gh_n[t].copy_(gh[:, 2 * c :])
        h = torch.addcmul(n, rz[:, c:], h - n, out=hs[t])


def _backward_direction(
    grad_hs: torch.Tensor,
    x: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    hs: torch.Tensor,
    rz_all: torch.Tensor,
    n_all: torch.Tensor,
    gh_n: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Backward through time of one direction: grad_hs (L, B, C) -> grads of x (L*B, C), w_ih,
    b_ih, w_hh, b_hh."""
    steps, batch, c = hs.shape
    m = steps * batch
    r, z = rz_all[..., :c], rz_all[..., c:]
    # Local derivatives of all steps at once (large, efficient ops):
    # dn_pre = dh (1 - z)(1 - n^2); dz_pre = dh (h_prev - n) z (1 - z);
    # dr_pre = dn_pre gh_n r (1 - r); d gh = [dr_pre, dz_pre, dn_pre * r].
    a_n = (1 - z) * (1 - n_all * n_all)
    a_z = torch.empty_like(n_all)
    torch.sub(hs[:-1], n_all[1:], out=a_z[1:])
    torch.neg(n_all[0], out=a_z[0])
    a_z.mul_(z * (1 - z))
    a_r = (r * (1 - r)).mul_(gh_n)

    grad_gh = hs.new_empty(steps, batch, 3 * c)
    grad_n = hs.new_empty(steps, batch, c)
    w_t = w_hh.t().contiguous()  # (C, 3C)
    dh = grad_hs[steps - 1]
    for t in range(steps - 1, -1, -1):
        gg = grad_gh[t]
        dn = torch.mul(dh, a_n[t], out=grad_n[t])
        torch.mul(dh, a_z[t], out=gg[:, c : 2 * c])
        torch.mul(dn, a_r[t], out=gg[:, :c])
        torch.mul(dn, r[t], out=gg[:, 2 * c :])
        if t > 0:
            dh = torch.addcmul(grad_hs[t - 1], dh, z[t]).add_(_linear(gg, w_t))

    # dW_hh = sum_t grad_gh[t]^T h_prev[t] (h_prev = 0 at t = 0), one matmul over all steps.
    grad_w_hh = _linear(grad_gh[1:].view(m - batch, 3 * c).t(), hs[:-1].view(m - batch, c).t())
    grad_b_hh = grad_gh.view(m, 3 * c).sum(0)
    grad_gi = torch.cat([grad_gh[..., : 2 * c], grad_n], dim=-1).view(m, 3 * c)
    grad_b_ih = torch.cat([grad_b_hh[: 2 * c], grad_n.view(m, c).sum(0)])
    grad_w_ih = _linear(grad_gi.t(), x.view(m, c).t())
    grad_x = _linear(grad_gi, w_ih.t())
    return grad_x, grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh


class _BiGRUSummed(torch.autograd.Function):
    """x (B, C, L) -> h_forward + h_backward (B, C, L).

    w_ih, w_hh: (2, 3C, C); b_ih, b_hh: (2, 3C), direction 0 forward, 1 backward. Gate order
    r, z, n as in ``nn.GRU``: r = s(gi_r + gh_r), z = s(gi_z + gh_z),
    n = tanh(gi_n + r * gh_n), h = n + z * (h_prev - n). ``index`` (L, B): the time each step
    of the backward direction reads (None: no padding, a plain flip).
    """

    @staticmethod
    def forward(ctx, x, index, w_ih, b_ih, w_hh, b_hh):  # type: ignore[override]
        batch, c, steps = x.shape
        # Inputs in step order, direction-major: xs[1] is each sequence reversed in time.
        xs = x.new_empty(2, steps, batch, c)
        xs[0] = x.permute(2, 0, 1)
        _reverse_time(xs[0], index, out=xs[1])
        hs = x.new_empty(2, steps, batch, c)
        rz_all = x.new_empty(2, steps, batch, 2 * c)
        n_all = x.new_empty(2, steps, batch, c)
        gh_n = x.new_empty(2, steps, batch, c)
        for d in (0, 1):
            _forward_direction(
                xs[d], w_ih[d], b_ih[d], w_hh[d], b_hh[d], hs[d], rz_all[d], n_all[d], gh_n[d]
            )
        ctx.reversal = index
        ctx.save_for_backward(xs, w_ih, w_hh, hs, rz_all, n_all, gh_n)
        out = torch.add(hs[0], _reverse_time(hs[1], index))  # (L, B, C) in time order
        return out.permute(1, 2, 0).contiguous()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xs, w_ih, w_hh, hs, rz_all, n_all, gh_n = ctx.saved_tensors
        index = ctx.reversal
        _, steps, batch, c = hs.shape
        grad_hs = hs.new_empty(2, steps, batch, c)
        grad_hs[0] = grad_out.permute(2, 0, 1)
        _reverse_time(grad_hs[0], index, out=grad_hs[1])
        grads = [
            _backward_direction(
                grad_hs[d], xs[d], w_ih[d], w_hh[d], hs[d], rz_all[d], n_all[d], gh_n[d]
            )
            for d in (0, 1)
        ]
        gx = [g[0].view(steps, batch, c) for g in grads]
        grad_x = torch.add(gx[0], _reverse_time(gx[1], index)).permute(1, 2, 0)
        grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh = (
            torch.stack([grads[0][i], grads[1][i]]) for i in range(1, 5)
        )
        return grad_x, None, grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh


def bidirectional_gru_summed(
    gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``gru`` (a 1-layer bidirectional ``nn.GRU``) over x (B, C, L) -> (B, C, L), the two
    directions summed. ``lengths`` (B,) gives the true lengths (None: no padding)."""
    if torch.is_autocast_enabled(x.device.type):
        # The recurrence keeps fp32 state and weights; under CPU autocast (bf16-mixed) run the
        # whole GRU in fp32 rather than mixing dtypes inside the hand-written kernel.
        with torch.autocast(x.device.type, enabled=False):
            return bidirectional_gru_summed(gru, x.float(), lengths)
    steps = x.shape[2]
    index = None
    if lengths is not None and bool((lengths != steps).any()):
        index = reverse_index(lengths.to(x.device), steps).t().contiguous()  # (L, B)
    w_ih = torch.stack([gru.weight_ih_l0, gru.weight_ih_l0_reverse])
    b_ih = torch.stack([gru.bias_ih_l0, gru.bias_ih_l0_reverse])
    w_hh = torch.stack([gru.weight_hh_l0, gru.weight_hh_l0_reverse])
    b_hh = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse])
    return _BiGRUSummed.apply(x, index, w_ih, b_ih, w_hh, b_hh)
