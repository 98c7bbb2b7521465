"""A CPU-fast bidirectional GRU with summed directions, numerically the same as ``nn.GRU``.

PyTorch's CPU GRU runs the two directions one after the other, one small matmul and a handful
of autograd nodes per time step and direction. Here both directions advance together (one
batched matmul per step), and the backward pass through time is written by hand (no autograd
graph of 64 x 10 nodes); the recurrent weight gradient is one large matmul at the end. The
parameters stay those of an ``nn.GRU(C, C, bidirectional=True)`` (same names, same init), so
checkpoints and parameter counts do not depend on which implementation runs; on CUDA the
cuDNN kernel of ``nn.GRU`` is used instead.

Variable lengths: each sequence is reversed within its own length for the backward direction
(the same result as packed sequences), outputs at padded positions are zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, L) index that reverses each sequence's first ``length`` steps and keeps the rest."""
    t = torch.arange(max_len, device=lengths.device)[None, :]
    lengths = lengths[:, None]
    return torch.where(t < lengths, lengths - 1 - t, t)


class _GRURecurrence(torch.autograd.Function):
    """h_t for t = 0..L-1 of a GRU given precomputed input gates.

    Inputs: gi (L, D, B, 3C) = x W_ih^T + b_ih per direction D; w (D, C, 3C) = W_hh^T;
    b (D, 1, 3C) = b_hh. Output: hs (L, D, B, C). Gate order r, z, n as in ``nn.GRU``:
    r = s(gi_r + gh_r), z = s(gi_z + gh_z), n = tanh(gi_n + r * gh_n), h = n + z * (h_prev - n).
    """

    @staticmethod
    def forward(ctx, gi: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        steps, dirs, batch, three_c = gi.shape
        c = three_c // 3
        hs = gi.new_empty(steps, dirs, batch, c)
        gh_all = gi.new_empty(steps, dirs, batch, 3 * c)
        rz_all = gi.new_empty(steps, dirs, batch, 2 * c)
        n_all = gi.new_empty(steps, dirs, batch, c)
        h = gi.new_zeros(dirs, batch, c)
        # Seven ops per step, every result written straight into its slot (no copies).
        for t in range(steps):
            gh = torch.baddbmm(b, h, w, out=gh_all[t])
            g = gi[t]
            rz = torch.add(g[..., : 2 * c], gh[..., : 2 * c], out=rz_all[t]).sigmoid_()
            n = torch.addcmul(g[..., 2 * c :], rz[..., :c], gh[..., 2 * c :], out=n_all[t]).tanh_()
            h = torch.addcmul(n, rz[..., c:], h - n, out=hs[t])
        ctx.save_for_backward(w, hs, gh_all, rz_all, n_all)
        return hs

    @staticmethod
    def backward(ctx, grad_hs: torch.Tensor):
        w, hs, gh_all, rz_all, n_all = ctx.saved_tensors
        steps, dirs, batch, c = hs.shape
        r, z = rz_all[..., :c], rz_all[..., c:]
        h_prev = torch.cat([hs.new_zeros(1, dirs, batch, c), hs[:-1]])
        # Local derivatives of all steps at once (large, efficient ops):
        # dn_pre = dh * (1 - z)(1 - n^2); dz_pre = dh * (h_prev - n) z (1 - z);
        # dr_pre = dn_pre * gh_n r (1 - r); d gh = [dr_pre, dz_pre, dn_pre * r].
        a_n = (1 - z) * (1 - n_all * n_all)
        a_z = (h_prev - n_all) * z * (1 - z)
        a_r = gh_all[..., 2 * c :] * r * (1 - r)
        grad_gh = grad_hs.new_empty(steps, dirs, batch, 3 * c)
        grad_n = grad_hs.new_empty(steps, dirs, batch, c)
        w_t = w.transpose(1, 2)  # (D, 3C, C)
        dh = grad_hs[steps - 1]
        for t in range(steps - 1, -1, -1):
            gh_t = grad_gh[t]
            dn = torch.mul(dh, a_n[t], out=grad_n[t])
            torch.mul(dh, a_z[t], out=gh_t[..., c : 2 * c])
            torch.mul(dn, a_r[t], out=gh_t[..., :c])
            torch.mul(dn, r[t], out=gh_t[..., 2 * c :])
            if t > 0:
                dh = torch.baddbmm(torch.addcmul(grad_hs[t - 1], dh, z[t]), gh_t, w_t)
        grad_gi = grad_gh.clone()
        grad_gi[..., 2 * c :] = grad_n
        # dW_hh^T[d] = sum_t h_prev[t, d]^T grad_gh[t, d]: one matmul per direction.
        grad_w = torch.einsum("tdbc,tdbk->dck", h_prev, grad_gh)
        grad_b = grad_gh.sum(dim=(0, 2))[:, None, :]
        return grad_gi, grad_w, grad_b


def bidirectional_gru_summed(
    gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``gru`` (a 1-layer bidirectional ``nn.GRU``) over x (B, L, C) -> (B, L, C) summed.

    ``lengths`` (B,) gives the true lengths (None: no padding).
    """
    if torch.is_autocast_enabled(x.device.type):
        # The recurrence keeps fp32 state and weights; under CPU autocast (bf16-mixed) run the
        # whole GRU in fp32 rather than mixing dtypes inside the hand-written kernel.
        with torch.autocast(x.device.type, enabled=False):
            return bidirectional_gru_summed(gru, x.float(), lengths)
    batch, steps, _ = x.shape
    c = gru.hidden_size
    w_ih = torch.cat([gru.weight_ih_l0, gru.weight_ih_l0_reverse])
    b_ih = torch.cat([gru.bias_ih_l0, gru.bias_ih_l0_reverse])
    gi = F.linear(x, w_ih, b_ih).view(batch, steps, 2, 3 * c)
    # One gather puts both directions in step order: direction 1 reads each sequence backwards.
    if lengths is None:
        lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
    forward_index = torch.arange(steps, device=x.device).expand(batch, steps)
    index = torch.stack([forward_index, reverse_index(lengths, steps)], dim=2)  # (B, L, 2)
    gi = gi.gather(1, index[..., None].expand(-1, -1, -1, 3 * c))
    gi = gi.permute(1, 2, 0, 3).contiguous()  # (L, 2, B, 3C)
    w = torch.stack([gru.weight_hh_l0.t(), gru.weight_hh_l0_reverse.t()])  # (2, C, 3C)
    b = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse])[:, None, :]  # (2, 1, 3C)
    hs = _GRURecurrence.apply(gi, w, b)  # (L, 2, B, C)
    out = hs.permute(2, 0, 1, 3).gather(1, index[..., None].expand(-1, -1, -1, c))  # (B, L, 2, C)
    return out.sum(dim=2)
