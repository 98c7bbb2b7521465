"""LVE and FDD against a numpy port of CodeTalker's main/cal_metric.py (Doubiiu/CodeTalker)."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_modules.dualtalker.metrics import (
    PAPER_UNITS,
    LipVertexError,
    UpperFaceDynamicsDeviation,
    condition_indices,
    face_metrics,
)

V = 60
LIPS = [3, 7, 8, 20, 41]
UPPER = [0, 1, 2, 30, 31, 50, 59]


def cal_metric(preds, gts, templates, mouth_map, upper_map):
    """CodeTalker main/cal_metric.py, per sequence (T, V, 3) arrays, as the reference computes."""
    cnt, lve_list, fdd = 0, [], []
    for vertices_pred, vertices_gt, template in zip(preds, gts, templates):
        vertices_pred = vertices_pred[: vertices_gt.shape[0]]
        mouth = np.array(
            [np.square(vertices_gt[:, v, :] - vertices_pred[:, v, :]) for v in mouth_map]
        )
        mouth = np.transpose(mouth, (1, 0, 2)).sum(axis=2).max(axis=1)
        lve_list.append(mouth.sum())
        cnt += vertices_gt.shape[0]
        motion_pred = vertices_pred - template.reshape(1, -1, 3)
        motion_gt = vertices_gt - template.reshape(1, -1, 3)
        upper_gt = np.array([np.square(motion_gt[:, v, :]) for v in upper_map])
        upper_gt = np.transpose(upper_gt, (1, 0, 2)).sum(axis=2).std(axis=0)
        upper_pred = np.array([np.square(motion_pred[:, v, :]) for v in upper_map])
        upper_pred = np.transpose(upper_pred, (1, 0, 2)).sum(axis=2).std(axis=0)
        fdd.append(np.mean(upper_gt) - np.mean(upper_pred))
    return np.sum(lve_list) / cnt, sum(fdd) / len(fdd)


def random_sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    templates = [rng.normal(size=(V, 3)) for _ in lengths]
    gts = [t + 0.1 * rng.normal(size=(n, V, 3)) for t, n in zip(templates, lengths)]
    preds = [t + 0.05 * rng.normal(size=(n, V, 3)) for t, n in zip(templates, lengths)]
    return preds, gts, templates


def padded(arrays, width):
    out = torch.zeros(len(arrays), width, V * 3, dtype=torch.float32)
    for b, a in enumerate(arrays):
        out[b, : len(a)] = torch.from_numpy(a.reshape(len(a), -1)).float()
    return out


def update_in_batches(metric, preds, gts, templates, batch, with_template):
    for start in range(0, len(preds), batch):
        p, g, t = (x[start : start + batch] for x in (preds, gts, templates))
        width = max(len(a) for a in g)
        mask = torch.arange(width)[None] < torch.tensor([len(a) for a in g])[:, None]
        args = (padded(p, width), padded(g, width))
        if with_template:
            tpl = torch.from_numpy(np.stack(t).reshape(len(t), -1)).float()
            metric.update(*args, tpl, mask)
        else:
            metric.update(*args, mask)


@pytest.mark.parametrize("batch", [1, 3])
def test_lve_and_fdd_match_cal_metric(batch: int) -> None:
    lengths = [7, 12, 3, 9, 12]
    preds, gts, templates = random_sequences(lengths)
    lve_ref, fdd_ref = cal_metric(preds, gts, templates, LIPS, UPPER)
    lve, fdd = LipVertexError(LIPS), UpperFaceDynamicsDeviation(UPPER)
    update_in_batches(lve, preds, gts, templates, batch, with_template=False)
    update_in_batches(fdd, preds, gts, templates, batch, with_template=True)
    assert float(lve.compute()) == pytest.approx(lve_ref, rel=1e-5)
    assert float(fdd.compute()) == pytest.approx(fdd_ref, rel=1e-4, abs=1e-7)


def test_lve_is_the_max_over_lips_of_the_squared_distance() -> None:
    target = torch.zeros(1, 2, V, 3)
    pred = target.clone()
    pred[0, 0, LIPS[0]] = torch.tensor([0.3, 0.4, 0.0])  # squared distance 0.25
    pred[0, 0, LIPS[1]] = torch.tensor([0.1, 0.0, 0.0])  # smaller: not counted
    pred[0, 1, 5] = 10.0  # not a lip vertex
    lve = LipVertexError(LIPS)
    lve.update(pred, target)
    assert float(lve.compute()) == pytest.approx(0.25 / 2)


def test_fdd_is_signed_gt_minus_prediction() -> None:
    preds, gts, templates = random_sequences([10])
    fdd = UpperFaceDynamicsDeviation(UPPER)
    still = torch.from_numpy(np.repeat(templates[0][None], 10, 0)).float()[None]
    tpl = torch.from_numpy(templates[0]).float()[None]
    fdd.update(still, torch.from_numpy(gts[0]).float()[None], tpl)
    assert float(fdd.compute()) > 0  # a static prediction is "too static"


def test_paper_units_read_as_the_papers_print() -> None:
    target = torch.zeros(1, 1, V, 3)
    pred = target.clone()
    pred[0, 0, LIPS[0], 0] = 4.7914e-4**0.5
    lve = LipVertexError(LIPS, unit=PAPER_UNITS["biwi"]["lve"])
    lve.update(pred, target)
    assert float(lve.compute()) == pytest.approx(4.7914, rel=1e-5)
    assert PAPER_UNITS["biwi"] == {"lve": 1e-4, "fdd": 1e-5}
    assert PAPER_UNITS["vocaset"]["lve"] == 1e-5


def test_collection_takes_keywords_and_units_of_the_dataset() -> None:
    preds, gts, templates = random_sequences([6, 4], seed=3)
    lve_ref, fdd_ref = cal_metric(preds, gts, templates, LIPS, UPPER)
    metrics = face_metrics("biwi", LIPS, UPPER, prefix="test/")
    mask = torch.arange(6)[None] < torch.tensor([6, 4])[:, None]
    tpl = torch.from_numpy(np.stack(templates).reshape(2, -1)).float()
    metrics.update(pred=padded(preds, 6), target=padded(gts, 6), template=tpl, frame_mask=mask)
    values = metrics.compute()
    assert float(values["test/lve"]) == pytest.approx(lve_ref / 1e-4, rel=1e-5)
    assert float(values["test/fdd"]) == pytest.approx(fdd_ref / 1e-5, rel=1e-4)
    with pytest.raises(ValueError, match="unknown dataset"):
        face_metrics("mead", LIPS)


def test_condition_policy_for_unseen_subjects() -> None:
    subjects = ["A", "B", "C"]
    assert condition_indices("all", 1, subjects) == [1]  # seen subjects: their own one-hot
    assert condition_indices("all", -1, subjects) == [0, 1, 2]
    assert condition_indices("mean", -1, subjects) == [0, 1, 2]
    assert condition_indices("C", -1, subjects) == [2]
    with pytest.raises(ValueError, match="model.unseen_condition='D'"):
        condition_indices("D", -1, subjects)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    preds, gts, templates = random_sequences([7, 12, 3, 9, 5])
    mine = slice(0, 3) if rank == 0 else slice(3, 5)  # uneven shards: 3 and 2 sequences
    lve, fdd = LipVertexError(LIPS), UpperFaceDynamicsDeviation(UPPER)
    update_in_batches(lve, preds[mine], gts[mine], templates[mine], 2, with_template=False)
    update_in_batches(fdd, preds[mine], gts[mine], templates[mine], 2, with_template=True)
    queue.put((rank, float(lve.compute()), float(fdd.compute())))
    dist.destroy_process_group()


def test_metrics_are_correct_under_ddp() -> None:
    """Two gloo processes with uneven shards give the metric of all sequences on every rank."""
    ctx = mp.get_context("fork")  # the children inherit the imports (spawn re-imports: slow)
    queue = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), queue), nprocs=2, start_method="fork")
    preds, gts, templates = random_sequences([7, 12, 3, 9, 5])
    lve_ref, fdd_ref = cal_metric(preds, gts, templates, LIPS, UPPER)
    for _ in range(2):
        _, lve, fdd = queue.get()
        assert lve == pytest.approx(lve_ref, rel=1e-5)
        assert fdd == pytest.approx(fdd_ref, rel=1e-4)
