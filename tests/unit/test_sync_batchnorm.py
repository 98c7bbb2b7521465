"""``sync_batchnorm`` for the masked BatchNorm: two gloo processes, each with half the batch,
must give what one process with the whole batch gives (outputs, input and parameter gradients,
running statistics), with the statistics over all positions (reference) or real tokens only."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from lightning_modules.layer_sync import SyncBatchNormLayers, convert_sync_batchnorm
from search_spaces.text.ops import ConvBN, MaskedBatchNorm1d
from search_spaces.text.sync_batchnorm import SyncMaskedBatchNorm1d

pytestmark = pytest.mark.ddp


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 7, generator=g) * 3 + 1
    lengths = torch.tensor([7, 3, 5, 1, 6, 2])
    mask = (torch.arange(7)[None, :] < lengths[:, None]).float()[:, None, :]
    return x * mask, mask


def _reference(masked: bool):
    x, mask = _inputs()
    bn = MaskedBatchNorm1d(5, masked=masked)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 1.5, 5))
        bn.bias.copy_(torch.linspace(-1, 1, 5))
    x = x.clone().requires_grad_(True)
    y = bn(x, mask)
    (y * torch.arange(7.0)).sum().backward()  # a loss that weights positions differently
    return y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var


def _worker(rank: int, port: int, masked: bool, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        x, mask = _inputs()
        half = slice(0, 3) if rank == 0 else slice(3, 6)
        bn = MaskedBatchNorm1d(5, masked=masked)
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 1.5, 5))
            bn.bias.copy_(torch.linspace(-1, 1, 5))
        sync = convert_sync_batchnorm(nn.Sequential(bn))[0]
        assert isinstance(sync, SyncMaskedBatchNorm1d)
        xs = x[half].clone().requires_grad_(True)
        y = sync(xs, mask[half])
        (y * torch.arange(7.0)).sum().backward()
        grads = [sync.weight.grad.clone(), sync.bias.grad.clone()]
        for g in grads:  # what DDP does with parameter gradients
            dist.all_reduce(g)
        out = [y.detach(), xs.grad, *grads, sync.running_mean, sync.running_var]
        # numpy copies travel by value: tensors would go through shared memory that dies with
        # this process
        queue.put((rank, *[t.numpy().copy() for t in out]))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("masked", [False, True])
def test_two_processes_equal_one_process_with_the_whole_batch(masked):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, masked, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {r[0]: [torch.from_numpy(a) for a in r[1:]] for r in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    y, gx, gw, gb, rm, rv = _reference(masked)
    torch.testing.assert_close(torch.cat([results[0][0], results[1][0]]), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([results[0][1], results[1][1]]), gx, rtol=1e-5, atol=1e-5)
    for rank in (0, 1):
        torch.testing.assert_close(results[rank][2], gw, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(results[rank][3], gb, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(results[rank][4], rm, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results[rank][5], rv, rtol=1e-5, atol=1e-6)


def test_conversion_keeps_masked_layers_and_reverts():
    """Masked BatchNorms become the synchronised twin (same parameters), stock ones stock
    SyncBatchNorm; the plugin's revert gives the plain layers back."""
    model = nn.Sequential(ConvBN(3, 4, 3), nn.BatchNorm1d(4))
    reference = copy.deepcopy(model).eval()
    weight = model[0].bn.weight
    converted = SyncBatchNormLayers().apply(model)
    assert type(converted[0].bn) is SyncMaskedBatchNorm1d and converted[0].bn.weight is weight
    assert type(converted[1]) is nn.SyncBatchNorm
    x, mask = torch.randn(2, 3, 5), torch.ones(2, 1, 5)
    torch.testing.assert_close(converted.eval()[0](x, mask), reference[0](x, mask))
    reverted = SyncBatchNormLayers().revert(converted)
    assert type(reverted[0].bn) is MaskedBatchNorm1d and reverted[0].bn.weight is weight
    assert not isinstance(reverted[1], nn.SyncBatchNorm)
    # without a process group the synchronised layer is the plain one
    plain = MaskedBatchNorm1d(4, masked=True)
    twin = SyncMaskedBatchNorm1d.from_module(MaskedBatchNorm1d(4, masked=True))
    x, mask = torch.randn(3, 4, 6), (torch.rand(3, 1, 6) > 0.3).float()
    mask[:, :, 0] = 1
    torch.testing.assert_close(twin(x, mask), plain(x, mask))
