"""FID, IS and the real statistics under DDP (2 gloo processes, each with its own unequal share
of the samples) equal one process that sees all of them; the statistics cache is written once
and then read by both ranks."""

from __future__ import annotations

import socket

import pytest
import torch.multiprocessing as mp

from tests.helpers import scoring_worker

pytestmark = [pytest.mark.ddp]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_score_as_one_process_with_all_samples(tmp_path) -> None:
    """Rank 1 is a spawned process, rank 0 this one (one import of torchmetrics fewer)."""
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    cache, data = str(tmp_path / "real.npz"), tmp_path / "data.bin"
    data.write_bytes(b"images")
    child = ctx.Process(target=scoring_worker.worker, args=(1, port, queue, cache, str(data)))
    child.start()
    try:
        results = {0: scoring_worker.run(0, port, cache, str(data))}
        results.update([queue.get(timeout=120)])
    finally:
        child.join(timeout=60)
    assert child.exitcode == 0
    single = scoring_worker.scores(slice(0, 200))
    single += 2 * single[-2:]  # the cached statistics: the moments of all images, twice
    alone = scoring_worker.scores(scoring_worker.SHARES[0])
    for rank in (0, 1):
        assert results[rank] == pytest.approx(single, rel=1e-9), rank
    assert alone[0] != pytest.approx(single[0], rel=1e-3)  # a rank's share alone differs
