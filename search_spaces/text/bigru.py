"""A CPU-fast bidirectional GRU with summed directions, numerically the same as ``nn.GRU``.

PyTorch's CPU GRU runs the two directions one after the other, one small matmul and a handful
of autograd nodes per time step and direction. Here the whole layer is one autograd function:

* the backward pass through time is written by hand (no autograd graph of 64 x 10 nodes), and
  every tensor read across time is stored per direction in step order, (L, B, *), so the weight
  gradients are single large matmuls over all steps;
* the large matmuls go through oneDNN where PyTorch has it (fp32 on CPU): on CPUs where the
  BLAS does not use AVX-512 (AMD EPYC with MKL) it is about twice as fast. At widths from
  :data:`PER_DIRECTION_MIN_WIDTH` the small per-step products go through oneDNN as well, one
  direction after the other; below it both directions share one batched BLAS product per step,
  which costs fewer Python-level ops. Without oneDNN (or in float64) the matmuls are ordinary
  ``F.linear`` calls with the same result.

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

from collections.abc import Callable

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
    """``a @ w.T + bias`` for 2-D ``a`` (M, K) and ``w`` (N, K), by oneDNN when it applies
    (oneDNN refuses empty matrices: a one-token batch has no h_prev for dW_hh)."""
    if (
        USE_ONEDNN
        and _ONEDNN_LINEAR is not None
        and a.dtype == torch.float32
        and a.device.type == "cpu"
        and a.numel() > 0
    ):
        return _ONEDNN_LINEAR(a, w, bias, "none", [], "")
    return F.linear(a, w, bias)


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, L) index that reverses each sequence's first ``length`` steps and keeps the rest."""
    t = torch.arange(max_len, device=lengths.device)[None, :]
    lengths = lengths[:, None]
    return torch.where(t < lengths, lengths - 1 - t, t)


def _weight_grad(grad: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """grad^T @ inp for grad (M, N), inp (M, K): a weight gradient, (N, K).

    Computed as (inp^T grad)^T: oneDNN reorders the transposed (K, M) operand faster than the
    (N, M) one when K < N (measured 2.6 against 3.4 ms at M=2048, K=256, N=768).
    """
    return _linear(inp.t(), grad.t()).t()


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


# From this width on, each direction runs its own loop with oneDNN's small matmuls (fastest when
# the matmuls dominate); below it, both directions share one batched matmul per step (fewer
# Python-level ops, fastest when per-op overhead dominates). Same numbers either way.
PER_DIRECTION_MIN_WIDTH = 128


def _recurrence(
    gi: torch.Tensor,
    matmul: Callable[[torch.Tensor], torch.Tensor],
    hs: torch.Tensor,
    rz_all: torch.Tensor,
    n_all: torch.Tensor,
    gh_n: torch.Tensor,
) -> None:
    """The forward recurrence of D directions at once: gi (D, L, B, 3C) input gates,
    ``matmul(h)`` (D, B, C) -> h W_hh^T + b_hh (D, B, 3C). Fills hs, rz_all (r and z), n_all and
    gh_n (W_hn h + b_hn), each (D, L, B, *), for the backward pass."""
    dirs, steps, batch, c = hs.shape
    h = hs.new_zeros(dirs, batch, c)
    for t in range(steps):
        gh = matmul(h)
        rz = torch.add(gi[:, t, :, : 2 * c], gh[..., : 2 * c], out=rz_all[:, t]).sigmoid_()
        n = torch.addcmul(gi[:, t, :, 2 * c :], rz[..., :c], gh[..., 2 * c :], out=n_all[:, t])
        n.tanh_()
        gh_n[:, t].copy_(gh[..., 2 * c :])
        h = torch.lerp(n, h, rz[..., c:], out=hs[:, t])  # n + z (h - n)


def _through_time(
    grad_hs: torch.Tensor,
    a_n: torch.Tensor,
    a_z: torch.Tensor,
    a_r: torch.Tensor,
    r: torch.Tensor,
    z: torch.Tensor,
    add_matmul: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    grad_gh: torch.Tensor,
    grad_n: torch.Tensor,
) -> None:
    """Backward through time of D directions, all tensors (D, L, B, *): fills grad_gh (the
    gradient of W_hh h + b_hh) and grad_n (of the n gate's pre-activation).
    ``add_matmul(acc, g)`` = acc + g W_hh for g (D, B, 3C)."""
    c = grad_n.shape[-1]
    steps = grad_hs.shape[1]
    dh = grad_hs[:, steps - 1]
    for t in range(steps - 1, -1, -1):
        gg = grad_gh[:, t]
        dn = torch.mul(dh, a_n[:, t], out=grad_n[:, t])
        torch.mul(dh, a_z[:, t], out=gg[..., c : 2 * c])
        torch.mul(dn, a_r[:, t], out=gg[..., :c])
        torch.mul(dn, r[:, t], out=gg[..., 2 * c :])
        if t > 0:
            dh = add_matmul(torch.addcmul(grad_hs[:, t - 1], dh, z[:, t]), gg)


def _parameter_and_input_grads(
    grad_gh: torch.Tensor,
    grad_n: torch.Tensor,
    x: torch.Tensor,
    hs: torch.Tensor,
    w_ih: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """One direction, tensors (L, B, *): grads of x (L*B, C), w_ih, b_ih, w_hh, b_hh, each a
    single large matmul or sum over all steps."""
    steps, batch, c = hs.shape
    m = steps * batch
    # dW_hh = sum_t grad_gh[t]^T h_prev[t] (h_prev = 0 at t = 0).
    grad_w_hh = _weight_grad(grad_gh[1:].view(m - batch, 3 * c), hs[:-1].view(m - batch, c))
    grad_b_hh = grad_gh.view(m, 3 * c).sum(0)
    grad_gi = torch.cat([grad_gh[..., : 2 * c], grad_n], dim=-1).view(m, 3 * c)
    grad_b_ih = torch.cat([grad_b_hh[: 2 * c], grad_n.view(m, c).sum(0)])
    grad_w_ih = _weight_grad(grad_gi, x.view(m, c))
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
        gi = [
            _linear(xs[d].view(steps * batch, c), w_ih[d], b_ih[d]).view(1, steps, batch, 3 * c)
            for d in (0, 1)
        ]
        hs = x.new_empty(2, steps, batch, c)
        rz_all = x.new_empty(2, steps, batch, 2 * c)
        n_all = x.new_empty(2, steps, batch, c)
        gh_n = x.new_empty(2, steps, batch, c)
        if c >= PER_DIRECTION_MIN_WIDTH:
            for d in (0, 1):
                own = slice(d, d + 1)  # direction d alone, keeping the leading D axis
                _recurrence(
                    gi[d],
                    lambda h, d=d: _linear(h[0], w_hh[d], b_hh[d])[None],
                    hs[own], rz_all[own], n_all[own], gh_n[own],
                )  # fmt: skip
        else:
            w_t, b = w_hh.transpose(1, 2), b_hh[:, None, :]
            _recurrence(torch.cat(gi), lambda h: torch.baddbmm(b, h, w_t), hs, rz_all, n_all, gh_n)
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

        # Local derivatives of all steps and both directions at once (large, efficient ops):
        # dn_pre = dh (1 - z)(1 - n^2); dz_pre = dh (h_prev - n) z (1 - z);
        # dr_pre = dn_pre gh_n r (1 - r); d gh = [dr_pre, dz_pre, dn_pre * r].
        r, z = rz_all[..., :c], rz_all[..., c:]
        # Eight passes over (2, L, B, C) instead of twelve: these are memory-bound.
        one = hs.new_ones(())
        one_minus_z = torch.sub(one, z)
        a_n = torch.addcmul(one, n_all, n_all, value=-1.0).mul_(one_minus_z)  # (1-z)(1-n^2)
        a_z = torch.empty_like(n_all)
        torch.sub(hs[:, :-1], n_all[:, 1:], out=a_z[:, 1:])
        torch.neg(n_all[:, 0], out=a_z[:, 0])
        a_z.mul_(z).mul_(one_minus_z)
        a_r = torch.addcmul(r, r, r, value=-1.0).mul_(gh_n)  # r (1 - r) gh_n

        grad_gh = hs.new_empty(2, steps, batch, 3 * c)
        grad_n = hs.new_empty(2, steps, batch, c)
        if c >= PER_DIRECTION_MIN_WIDTH:
            for d in (0, 1):
                own = slice(d, d + 1)
                w_t = w_hh[d].t().contiguous()  # (C, 3C)
                _through_time(
                    grad_hs[own], a_n[own], a_z[own], a_r[own], r[own], z[own],
                    lambda acc, g, w_t=w_t: acc.add_(_linear(g[0], w_t)),
                    grad_gh[own], grad_n[own],
                )  # fmt: skip
        else:
            _through_time(
                grad_hs, a_n, a_z, a_r, r, z,
                lambda acc, g: torch.baddbmm(acc, g, w_hh),
                grad_gh, grad_n,
            )  # fmt: skip
        grads = [
            _parameter_and_input_grads(grad_gh[d], grad_n[d], xs[d], hs[d], w_ih[d]) for d in (0, 1)
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
