"""A CPU-fast bidirectional GRU with summed directions, numerically the same as ``nn.GRU``.

PyTorch's CPU GRU runs the two directions one after the other, one small matmul and a handful
of autograd nodes per time step and direction. Here the whole layer is one autograd function:

* both directions advance together (one batched matmul per time step), and the backward pass
  through time is written by hand (no autograd graph of 64 x 10 nodes);
* every tensor that is read across time is stored direction-major, (2, L, B, *), so the weight
  gradients are single large matmuls over all steps, with no transposed copies;
* the large input-projection matmuls go through oneDNN where PyTorch has it (fp32 on CPU): on
  CPUs where the BLAS does not use AVX-512 (AMD EPYC with MKL) it is about twice as fast.

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


def _linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ w.T + bias`` for 2-D ``a`` (M, K) and ``w`` (N, K), by oneDNN when it applies."""
    if USE_ONEDNN and _ONEDNN_LINEAR is not None and a.dtype == torch.float32 and not a.is_cuda:
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
        m = steps * batch
        # Inputs in step order, direction-major: xs[1] is each sequence reversed in time.
        xs = x.new_empty(2, steps, batch, c)
        xs[0] = x.permute(2, 0, 1)
        _reverse_time(xs[0], index, out=xs[1])
        gi = [_linear(xs[d].view(m, c), w_ih[d], b_ih[d]).view(steps, batch, 3 * c) for d in (0, 1)]

        hs = x.new_empty(2, steps, batch, c)
        rz_all = x.new_empty(2, steps, batch, 2 * c)
        n_all = x.new_empty(2, steps, batch, c)
        # Step-major, so that each step's matmul writes its slot in place.
        gh_all = x.new_empty(steps, 2, batch, 3 * c)
        w_t = w_hh.transpose(1, 2)  # (2, C, 3C)
        b = b_hh[:, None, :]
        h = x.new_zeros(2, batch, c)
        for t in range(steps):
            gh = torch.baddbmm(b, h, w_t, out=gh_all[t])
            rz = rz_all[:, t]
            n = n_all[:, t]
            for d in (0, 1):
                torch.add(gi[d][t, :, : 2 * c], gh[d, :, : 2 * c], out=rz[d])
            rz.sigmoid_()
            for d in (0, 1):
                torch.addcmul(gi[d][t, :, 2 * c :], rz[d, :, :c], gh[d, :, 2 * c :], out=n[d])
            n.tanh_()
            h = torch.addcmul(n, rz[..., c:], h - n, out=hs[:, t])

        ctx.reversal = index
        ctx.save_for_backward(xs, w_ih, w_hh, hs, rz_all, n_all, gh_all)
        out = torch.add(hs[0], _reverse_time(hs[1], index))  # (L, B, C) in time order
        return out.permute(1, 2, 0).contiguous()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xs, w_ih, w_hh, hs, rz_all, n_all, gh_all = ctx.saved_tensors
        index = ctx.reversal
        _, steps, batch, c = hs.shape
        m = steps * batch
        grad_hs = hs.new_empty(2, steps, batch, c)
        grad_hs[0] = grad_out.permute(2, 0, 1)
        _reverse_time(grad_hs[0], index, out=grad_hs[1])

        # Local derivatives of all steps at once (large, efficient ops):
        # dn_pre = dh (1 - z)(1 - n^2); dz_pre = dh (h_prev - n) z (1 - z);
        # dr_pre = dn_pre gh_n r (1 - r); d gh = [dr_pre, dz_pre, dn_pre * r].
        r, z = rz_all[..., :c], rz_all[..., c:]
        a_n = (1 - z) * (1 - n_all * n_all)
        a_z = torch.empty_like(n_all)
        torch.sub(hs[:, :-1], n_all[:, 1:], out=a_z[:, 1:])
        torch.neg(n_all[:, 0], out=a_z[:, 0])
        a_z.mul_(z * (1 - z))
        a_r = (r * (1 - r)).mul_(gh_all[..., 2 * c :].transpose(0, 1))

        grad_gh = hs.new_empty(2, steps, batch, 3 * c)
        grad_n = hs.new_empty(2, steps, batch, c)
        dh = grad_hs[:, steps - 1]
        for t in range(steps - 1, -1, -1):
            gg = grad_gh[:, t]
            dn = torch.mul(dh, a_n[:, t], out=grad_n[:, t])
            torch.mul(dh, a_z[:, t], out=gg[..., c : 2 * c])
            torch.mul(dn, a_r[:, t], out=gg[..., :c])
            torch.mul(dn, r[:, t], out=gg[..., 2 * c :])
            if t > 0:
                dh = torch.baddbmm(torch.addcmul(grad_hs[:, t - 1], dh, z[:, t]), gg, w_hh)

        grad_x = grad_w_ih = grad_b_ih = grad_w_hh = grad_b_hh = None
        flat_gh = grad_gh.view(2, m, 3 * c)
        if ctx.needs_input_grad[4]:  # dW_hh[d] = sum_t grad_gh[t, d]^T h_prev[t, d]
            grad_w_hh = torch.bmm(
                grad_gh[:, 1:].reshape(2, m - batch, 3 * c).transpose(1, 2),
                hs[:, :-1].reshape(2, m - batch, c),
            )
        sum_gh = flat_gh.sum(1)
        if ctx.needs_input_grad[5]:
            grad_b_hh = sum_gh
        grad_gi = torch.cat([grad_gh[..., : 2 * c], grad_n], dim=-1).view(2, m, 3 * c)
        if ctx.needs_input_grad[3]:
            grad_b_ih = torch.cat([sum_gh[:, : 2 * c], grad_n.view(2, m, c).sum(1)], dim=1)
        if ctx.needs_input_grad[2]:
            grad_w_ih = torch.stack([_linear(grad_gi[d].t(), xs[d].view(m, c).t()) for d in (0, 1)])
        if ctx.needs_input_grad[0]:
            gx = [_linear(grad_gi[d], w_ih[d].t()).view(steps, batch, c) for d in (0, 1)]
            grad_x = torch.add(gx[0], _reverse_time(gx[1], index)).permute(1, 2, 0)
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
