"""``sync_batchnorm`` for the masked BatchNorm: two gloo processes, each with half the batch,
must give what one process with the whole batch gives (outputs, input and parameter gradients,
running statistics), with the statistics over all positions (reference) or real tokens only."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from lightning_modules.layer_sync import SyncBatchNormLayers
from search_spaces.text.ops import ConvBN, MaskedBatchNorm1d
from search_spaces.text.sync_batchnorm import SyncMaskedBatchNorm1d
from tests.helpers import sync_bn_worker

pytestmark = pytest.mark.ddp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_the_whole_batch():
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=sync_bn_worker.worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    x, mask = sync_bn_worker.inputs()
    for masked in (False, True):
        expected = sync_bn_worker.step(sync_bn_worker.layer(masked), x, mask)
        got = {r: [torch.from_numpy(a) for a in results[r][masked]] for r in (0, 1)}
        for i, name in enumerate(("output", "input grad")):  # the ranks' halves, concatenated
            torch.testing.assert_close(
                torch.cat([got[0][i], got[1][i]]),
                expected[i],
                rtol=1e-5,
                atol=1e-5,
                msg=f"{name}, masked={masked}",
            )
        for rank in (0, 1):  # parameter grads (all-reduced) and running stats: on every rank
            for i, name in enumerate(
                ("weight grad", "bias grad", "running mean", "running var"), 2
            ):
                torch.testing.assert_close(
                    got[rank][i],
                    expected[i],
                    rtol=1e-5,
                    atol=1e-5,
                    msg=f"{name}, rank {rank}, masked={masked}",
                )


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
