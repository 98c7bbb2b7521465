"""Gradient averaging for the steps that run outside DDP's reducer.

The worst-case copies G_w, D_w and the α steps are not part of the DDP-wrapped forward (their
gradients come from ``torch.autograd.grad``, which DDP's hooks never see), so each rank averages
them itself before stepping: every rank then takes the same step from the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def average_gradients(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The mean of ``grads`` over all ranks (one all-reduce of the flattened tensors)."""
    grads = list(grads)
    n = world_size()
    if n == 1 or not grads:
        return grads
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(n)
    out, offset = [], 0
    for g in grads:
        out.append(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    return out


def set_gradients(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """``p.grad = g`` for each pair (grads averaged over ranks first)."""
    for p, g in zip(params, average_gradients(grads), strict=True):
        p.grad = g.to(p.dtype).contiguous()
