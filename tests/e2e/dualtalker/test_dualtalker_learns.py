"""The synthetic task is learned: on the held-out (unseen) test speaker, LVE falls well below the
untrained network's (which outputs the template), and the predicted mouth opens when the audio is
loud and closes when it is quiet. The fast version trains teacher-forced for a few epochs on the
tests' data; the slow one (``make test-all``) runs the demo part and checks all three rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile

from datamodules.face.speech import mouth_opening
from datamodules.face.synthetic import mouth_gap
from experiments.run import evaluate, train
from experiments.systems.dualtalker.demo import demo, untrained
from tests.e2e.conftest import QUIET
from tests.helpers.face import synthetic_voca, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_voca(tmp_path_factory)


def _mouth_follows_loudness(predictions, data_root) -> tuple[float, float, float]:
    """Over every predicted test sequence: the correlation of the predicted mouth gap with the
    audio's loudness envelope, and the mean gap on loud and on quiet frames."""
    gaps, loudness = [], []
    for path in sorted(predictions.glob("*.npy")):
        name = path.stem.split("_condition_")[0]
        audio, rate = soundfile.read(data_root / "wav" / f"{name}.wav", dtype="float32")
        vertices = np.load(path)
        gaps.append(mouth_gap(vertices))
        loudness.append(mouth_opening(audio, rate, 30, len(vertices)))
    gap, loud = np.concatenate(gaps), np.concatenate(loudness)
    return float(np.corrcoef(gap, loud)[0, 1]), gap[loud > 0.6].mean(), gap[loud < 0.1].mean()


def test_synthetic_task_is_learned(voca, tmp_path):
    args = tiny(
        tmp_path,
        voca,
        "model.feature_dim=32",
        "trainer.max_epochs=12",
        "optim.lr=2e-3",
        "evaluation.metrics_every_n_epochs=0",
    )
    before, _ = untrained(args)
    result = train("dualtalker_synthetic", args)
    ckpt = result.metrics["fit"]["best_model_path"]
    ev = evaluate(None, [f"ckpt={ckpt}", f"output_dir={tmp_path}", *QUIET])
    after = ev.metrics["test"]
    assert math.isfinite(after["test/lve"])
    assert after["test/lve"] < 0.4 * before["test/lve"], (before, after)
    correlation, loud_gap, quiet_gap = _mouth_follows_loudness(ev.run_dir / "predictions", voca)
    assert correlation > 0.5, correlation
    assert loud_gap > quiet_gap + 1e-3, (loud_gap, quiet_gap)  # opens by more than a millimetre


@pytest.mark.slow
def test_demo_learns_with_and_without_the_dual_task(tmp_path):
    """The demo's three rows: both trained networks far below the untrained one's LVE."""
    result = demo(
        [
            f"output_dir={tmp_path / 'out'}",
            f"data.root={tmp_path / 'voca'}",
            "logger.wandb.mode=disabled",
            "trainer.enable_progress_bar=false",
        ]
    )
    lve = [float(figures.split("LVE ")[1].split(" ")[0]) for _, figures in result.rows]
    untrained_lve, baseline_lve, dual_lve = lve
    assert baseline_lve < 0.3 * untrained_lve and dual_lve < 0.3 * untrained_lve, result.rows
