"""Hand-written CPU paths of the TextNAS ops, and the one switch that turns them all off.

The ops in :mod:`search_spaces.text.ops` are written with stock PyTorch ops; on GPUs that is
all that runs. On CPU in float32 (and not under autocast) an op may take a path from this module
instead, where PyTorch's CPU kernel is slow for TextNAS's shapes. A path computes the stock op's
result up to float rounding, is tested against it (values and gradients), uses no private or
internal torch API, and is kept only while ``make bench`` measures it saving at least 5 % of a
training step it takes part in: the bench times every step with the switch on and off and with
each path off alone (``benchmarks/results/textnas.json``, docs/benchmarks.md). One path is left,
the bi-GRU (:func:`bidirectional_gru_summed`); hand-written pooling, BatchNorm and dropout
paths and oneDNN matmuls were measured below that bar and removed.

The switch: the environment variable ``SUITE_CPU_KERNELS`` (default on; ``0``, ``false``,
``off`` or ``no`` turn it off), overridden process-wide by :func:`set_enabled` (the experiment
config's ``cpu_kernels`` key calls it). :func:`stock_ops` turns it off for a ``with`` block.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ENV_VAR = "SUITE_CPU_KERNELS"
_OFF_WORDS = ("0", "false", "off", "no")

#: The paths of this module, by the name :func:`applies` and :func:`without` take.
PATHS = ("bigru",)

_override: bool | None = None
_ablated: frozenset[str] = frozenset()


def enabled() -> bool:
    """Whether the hand-written CPU paths may run: :func:`set_enabled`'s value, else
    ``SUITE_CPU_KERNELS`` (default on)."""
    if _override is not None:
        return _override
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF_WORDS


def set_enabled(flag: bool | None) -> None:
    """Turn the CPU paths on or off for the whole process; ``None`` goes back to the
    environment variable."""
    global _override
    _override = None if flag is None else bool(flag)


@contextlib.contextmanager
def stock_ops() -> Iterator[None]:
    """Stock PyTorch ops only, inside the ``with`` block (tests, the bench)."""
    global _override
    before = _override
    _override = False
    try:
        yield
    finally:
        _override = before


@contextlib.contextmanager
def without(*paths: str) -> Iterator[None]:
    """Switch off only the named paths (:data:`PATHS`) inside the block: the bench measures
    what each path saves this way."""
    global _ablated
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise ValueError(f"unknown CPU path(s) {sorted(unknown)}; known: {', '.join(PATHS)}")
    before = _ablated
    _ablated = before | frozenset(paths)
    try:
        yield
    finally:
        _ablated = before


def applies(x: torch.Tensor, path: str) -> bool:
    """Whether ``path`` runs for input ``x``: switch on, CPU, float32, not under CPU autocast
    (there the stock ops choose their own precision)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and enabled()
        and path not in _ablated
        and not torch.is_autocast_enabled("cpu")
    )


# ----------------------------------------------------------------------------- bi-GRU
#
# PyTorch's CPU GRU runs the two directions one after the other, one small matmul and a handful
# of autograd nodes per time step and direction. Here the whole layer is one autograd function:
# the backward pass through time is written by hand (no autograd graph of L x 10 nodes), every
# tensor read across time is stored per direction in step order, (L, B, *), so the weight
# gradients are single large matmuls over all steps, and both directions share one batched
# matmul per step (fewer ops than a loop per direction). The parameters stay those of an
# ``nn.GRU(C, C, bidirectional=True)``. Variable lengths: the backward direction reads each
# sequence reversed within its own length (the result of packed sequences); outputs at padded
# positions are not meaningful and are zeroed by the caller.


def _to_steps(x: torch.Tensor, out: torch.Tensor) -> None:
    """(B, C, L) -> (L, B, C) into ``out``, in two moves: the per-sentence transpose to
    (B, L, C) and then whole rows of C (cheaper than one strided copy)."""
    out.copy_(x.transpose(1, 2).contiguous().transpose(0, 1))


def _from_steps(y: torch.Tensor) -> torch.Tensor:
    """(L, B, C) -> contiguous (B, C, L), in two moves as :func:`_to_steps`."""
    return y.transpose(0, 1).contiguous().transpose(1, 2).contiguous()


def reverse_index(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, L) index that reverses each sequence's first ``length`` steps and keeps the rest."""
    t = torch.arange(max_len, device=lengths.device)[None, :]
    lengths = lengths[:, None]
    return torch.where(t < lengths, lengths - 1 - t, t)


def _weight_grad(grad: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """grad^T @ inp for grad (M, N), inp (M, K): a weight gradient, (N, K)."""
    return grad.t().mm(inp)


def _reverse_time(
    x: torch.Tensor, index: torch.Tensor | None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """x (L, B, C) with each sequence reversed in time: index (L, B), or None for a plain flip.
    The reversal is its own inverse, so the same call maps results back to time order."""
    steps = x.shape[0]
    if index is None:
        flip = torch.arange(steps - 1, -1, -1, device=x.device)
        return (
            torch.index_select(x, 0, flip, out=out) if out is not None else x.index_select(0, flip)
        )
    full = index[:, :, None].expand(x.shape)
    return torch.gather(x, 0, full, out=out) if out is not None else x.gather(0, full)


def _recurrence(
    gi: torch.Tensor,
    matmul: Callable[[torch.Tensor], torch.Tensor],
    hs: torch.Tensor,
    rz_all: torch.Tensor,
    n_all: torch.Tensor,
    gh_n: torch.Tensor,
) -> None:
    """The forward recurrence over the leading (step) axis: gi (L, ..., 3C) input gates,
    ``matmul(h)`` h (..., C) -> h W_hh^T + b_hh (..., 3C). Fills hs, rz_all (r and z), n_all and
    gh_n (W_hn h + b_hn), each (L, ..., *), for the backward pass.

    Every per-step view is made up front (one ``unbind`` per tensor): indexing in the loop costs
    more Python time than the small element-wise ops themselves.
    """
    c = hs.shape[-1]
    gi_rz, gi_n = gi[..., : 2 * c].unbind(0), gi[..., 2 * c :].unbind(0)
    r, z = rz_all[..., :c].unbind(0), rz_all[..., c:].unbind(0)
    steps = zip(gi_rz, gi_n, rz_all.unbind(0), r, z, n_all.unbind(0), gh_n.unbind(0), hs.unbind(0))
    h = hs.new_zeros(hs.shape[1:])
    for gi_rz_t, gi_n_t, rz_t, r_t, z_t, n_t, gh_n_t, h_t in steps:
        gh_rz_t, gh_n_new = matmul(h).split((2 * c, c), -1)
        torch.add(gi_rz_t, gh_rz_t, out=rz_t).sigmoid_()
        torch.addcmul(gi_n_t, r_t, gh_n_new, out=n_t).tanh_()
        gh_n_t.copy_(gh_n_new)
        h = torch.lerp(n_t, h, z_t, out=h_t)  # n + z (h - n)


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
    """Backward through time over the leading (step) axis, all tensors (L, ..., *): fills
    grad_gh (the gradient of W_hh h + b_hh) and grad_n (of the n gate's pre-activation).
    ``add_matmul(acc, g)`` = acc + g W_hh for g (..., 3C)."""
    c = grad_n.shape[-1]
    steps = list(
        zip(
            grad_hs.unbind(0),
            a_n.unbind(0),
            a_z.unbind(0),
            a_r.unbind(0),
            r.unbind(0),
            z.unbind(0),
            grad_gh.unbind(0),
            grad_gh[..., :c].unbind(0),
            grad_gh[..., c : 2 * c].unbind(0),
            grad_gh[..., 2 * c :].unbind(0),
            grad_n.unbind(0),
        )
    )
    dh = steps[-1][0]
    for t in range(len(steps) - 1, -1, -1):
        _, a_n_t, a_z_t, a_r_t, r_t, z_t, gg, gg_r, gg_z, gg_n, grad_n_t = steps[t]
        dn = torch.mul(dh, a_n_t, out=grad_n_t)
        torch.mul(dh, a_z_t, out=gg_z)
        torch.mul(dn, a_r_t, out=gg_r)
        torch.mul(dn, r_t, out=gg_n)
        if t > 0:
            dh = add_matmul(torch.addcmul(steps[t - 1][0], dh, z_t), gg)


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
    grad_x = F.linear(grad_gi, w_ih.t())
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
        _to_steps(x, out=xs[0])
        _reverse_time(xs[0], index, out=xs[1])
        flat = xs.view(2, steps * batch, c)
        gi = torch.baddbmm(b_ih[:, None, :], flat, w_ih.transpose(1, 2))  # (2, L*B, 3C)
        gi = gi.view(2, steps, batch, 3 * c)
        hs = x.new_empty(2, steps, batch, c)
        rz_all = x.new_empty(2, steps, batch, 2 * c)
        n_all = x.new_empty(2, steps, batch, c)
        gh_n = x.new_empty(2, steps, batch, c)
        # Both directions at once: step-major views (L, 2, B, *) of the (2, L, B, *) storage.
        w_t, b = w_hh.transpose(1, 2), b_hh[:, None, :]
        _recurrence(
            gi.transpose(0, 1),
            lambda h: torch.baddbmm(b, h, w_t),
            *(t.transpose(0, 1) for t in (hs, rz_all, n_all, gh_n)),
        )
        ctx.reversal = index
        ctx.save_for_backward(xs, w_ih, w_hh, hs, rz_all, n_all, gh_n)
        out = torch.add(hs[0], _reverse_time(hs[1], index))  # (L, B, C) in time order
        return _from_steps(out)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        xs, w_ih, w_hh, hs, rz_all, n_all, gh_n = ctx.saved_tensors
        index = ctx.reversal
        _, steps, batch, c = hs.shape
        grad_hs = hs.new_empty(2, steps, batch, c)
        _to_steps(grad_out, out=grad_hs[0])
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
        _through_time(
            *(t.transpose(0, 1) for t in (grad_hs, a_n, a_z, a_r, r, z)),
            lambda acc, g: torch.baddbmm(acc, g, w_hh),
            *(t.transpose(0, 1) for t in (grad_gh, grad_n)),
        )
        grads = [
            _parameter_and_input_grads(grad_gh[d], grad_n[d], xs[d], hs[d], w_ih[d]) for d in (0, 1)
        ]
        gx = [g[0].view(steps, batch, c) for g in grads]
        grad_x = _from_steps(torch.add(gx[0], _reverse_time(gx[1], index)))
        grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh = (
            torch.stack([grads[0][i], grads[1][i]]) for i in range(1, 5)
        )
        return grad_x, None, grad_w_ih, grad_b_ih, grad_w_hh, grad_b_hh


def bidirectional_gru_summed(
    gru: nn.GRU, x: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``gru`` (a 1-layer bidirectional ``nn.GRU``) over x (B, C, L) -> (B, C, L), the two
    directions summed, with the hand-written backward above (any float dtype). ``lengths`` (B,)
    gives the true lengths (None: no padding)."""
    steps = x.shape[2]
    index = None
    if lengths is not None and bool((lengths != steps).any()):
        index = reverse_index(lengths.to(x.device), steps).t().contiguous()  # (L, B)
    w_ih = torch.stack([gru.weight_ih_l0, gru.weight_ih_l0_reverse])
    b_ih = torch.stack([gru.bias_ih_l0, gru.bias_ih_l0_reverse])
    w_hh = torch.stack([gru.weight_hh_l0, gru.weight_hh_l0_reverse])
    b_hh = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse])
    return _BiGRUSummed.apply(x, index, w_ih, b_ih, w_hh, b_hh)
