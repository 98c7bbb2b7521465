"""Worker of ``tests/unit/backbone/test_sync_batchnorm.py``: imports torch and the text ops only,
so the spawned processes start quickly."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from search_spaces.text.ops import MaskedBatchNorm1d

WEIGHT = torch.linspace(0.5, 1.5, 5)
BIAS = torch.linspace(-1, 1, 5)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """(6, 5, 7) activations, zero on the padding of texts of lengths 7, 3, 5, 1, 6, 2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 7, generator=g) * 3 + 1
    lengths = torch.tensor([7, 3, 5, 1, 6, 2])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).float()[:, None, :]
    return x * mask, mask


def layer(masked: bool) -> MaskedBatchNorm1d:
    bn = MaskedBatchNorm1d(5, masked=masked)
    with torch.no_grad():
        bn.weight.copy_(WEIGHT)
        bn.bias.copy_(BIAS)
    return bn


def step(bn: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Forward, a loss that weights positions differently, backward: what the test compares."""
    x = x.clone().requires_grad_(True)
    y = bn(x, mask)
    (y * torch.arange(7.0)).sum().backward()
    return [y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var]


def worker(rank: int, port: int, queue) -> None:
    """Rank ``rank`` of 2: its half of the batch through the synchronised layer, both variants."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        x, mask = inputs()
        half = slice(0, 3) if rank == 0 else slice(3, 6)
        out = {}
        for masked in (False, True):
            sync = layer(masked).sync_batchnorm()
            y, gx, gw, gb, rm, rv = step(sync, x[half], mask[half])
            for g in (gw, gb):  # what DDP does with parameter gradients
                dist.all_reduce(g)
            # numpy copies travel by value; tensors would go through shared memory that dies
            # with this process
            out[masked] = [t.numpy().copy() for t in (y, gx, gw, gb, rm, rv)]
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()
