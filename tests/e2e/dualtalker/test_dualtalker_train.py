"""DualTalker end to end on the synthetic talking heads: train, then ``eval`` a checkpoint
(LVE/FDD, ``face_metrics.json``, one prediction file per test sequence and condition in
CodeTalker's layout, the per-vertex error plot), and the bad inputs through the command line:
exit code 2, one ``error:`` line, nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from datamodules.face.synthetic import BIWI_SUBJECTS, VOCA_SUBJECTS
from experiments.__main__ import cli
from experiments.run import evaluate, train
from tests.e2e.conftest import QUIET, cli_env, python, tree_hashes
from tests.helpers.face import SENTENCES, synthetic_biwi, synthetic_voca, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def voca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_voca(tmp_path_factory)


@pytest.fixture(scope="module")
def biwi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_biwi(tmp_path_factory)


EXPERIMENT = "dualtalker_synthetic"


def test_train_then_eval_writes_metrics_predictions_and_plots(voca, tmp_path):
    before = tree_hashes(voca)
    out = tmp_path / "out"
    result = train(EXPERIMENT, tiny(out, voca, "trainer.max_epochs=2"))
    run_dir = result.run_dir
    fit = result.metrics["fit"]
    assert fit["global_step"] == 8  # 16 training sequences, batches of 4, 2 epochs
    for key in (
        "train/loss",
        "train/rec",
        "train/dual",
        "train/cons",
        "val/loss",
        "val/lve",
        "val/fdd",
    ):
        assert np.isfinite(fit[key]), key
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run_dir / "val" / "vertex_error").glob("*.png"))  # media logger
    header = next((run_dir / "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    assert "val/lve" in header and "train/loss_step" in header

    ev = evaluate(
        None, [f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"output_dir={out}", *QUIET]
    )
    report = json.loads((ev.run_dir / "face_metrics.json").read_text())
    assert report["dataset"] == "vocaset" and report["unseen_condition"] == "all"
    assert np.isfinite(report["test"]["lve"]) and np.isfinite(report["test"]["fdd"])
    assert report["test"]["lve"] == pytest.approx(ev.metrics["test"]["test/lve"])
    # The unseen test speaker under every training-subject condition: 2 sentences x 4 files.
    test_subject = VOCA_SUBJECTS["test"][0]
    files = sorted(p.name for p in (ev.run_dir / "predictions").iterdir())
    expected = sorted(
        f"{test_subject}_sentence{s:02d}_condition_{c}.npy"
        for s in SENTENCES
        if s > 20
        for c in VOCA_SUBJECTS["train"]
    )
    assert files == expected and report["prediction_files"] == 8
    prediction = np.load(ev.run_dir / "predictions" / files[0])
    truth = np.load(voca / "vertices_npy" / f"{files[0].split('_condition_')[0]}.npy")[::2]
    assert prediction.shape == truth.shape  # (T at 30 fps, V*3), the ground truth's length
    assert sorted((ev.run_dir / "test" / "vertex_error").glob("*.png"))
    assert tree_hashes(voca) == before  # the data is only read


def test_biwi_test_a_conditions_every_speaker_on_itself_and_keeps_the_papers_epochs(biwi, tmp_path):
    """BIWI (25 fps, two audio tokens per frame): Test-A's speakers are the training speakers,
    so each prediction is conditioned on its own one-hot; the recipe's periodic checkpoints
    (here every 2nd epoch, the paper's every 25th) are kept besides last.ckpt."""
    out = tmp_path / "out"
    args = tiny(
        out,
        biwi,
        "trainer.max_epochs=2",
        "checkpoint.every_n_epochs=2",
        "evaluation.metrics_every_n_epochs=0",
        biwi=True,
    )
    result = train("dualtalker_biwi", args)
    ckpts = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert ckpts == ["epoch001-step000008.ckpt", "last.ckpt"], ckpts
    ev = evaluate(
        None, [f"ckpt={result.run_dir / 'checkpoints' / ckpts[0]}", f"output_dir={out}", *QUIET]
    )
    files = sorted(p.name for p in (ev.run_dir / "predictions").iterdir())
    assert files == sorted(f"{s}_e{n}_condition_{s}.npy" for s in BIWI_SUBJECTS for n in (37, 38))
    report = json.loads((ev.run_dir / "face_metrics.json").read_text())
    assert report["dataset"] == "biwi" and np.isfinite(report["test"]["lve"])
    assert report["units"]["lve"].startswith("x 0.0001")
    truth = np.load(biwi / "vertices_npy" / "F2_e37.npy")
    assert (
        np.load(ev.run_dir / "predictions" / "F2_e37_condition_F2.npy").shape[1] == truth.shape[1]
    )


def test_empty_validation_split_warns_and_skips_validation(voca, tmp_path):
    args = tiny(tmp_path, voca, "data.val_sentences=30-40", "trainer.limit_train_batches=1")
    with pytest.warns(UserWarning, match="validation is skipped"):
        result = train(EXPERIMENT, args)
    assert not any(k.startswith("val/") for k in result.metrics["fit"])
    assert (result.run_dir / "checkpoints" / "last.ckpt").is_file()


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_empty_training_split_through_the_cli(voca, tmp_path):
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    args = tiny(out, voca, "data.train_sentences=90-99")
    proc = subprocess.run(
        [python(), "-m", "experiments", "train", EXPERIMENT, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "train split is empty" in errors[0] and "90-99" in errors[0]
    assert VOCA_SUBJECTS["train"][0] in errors[0]  # names the subjects it looked for
    assert not list(out.rglob("*")) and not list(cwd.iterdir())  # nothing written


@pytest.mark.parametrize("what", ["empty folder", "missing path"])
def test_a_wav2vec_path_without_a_model_is_one_error(what, voca, tmp_path, capsys):
    folder = tmp_path / "wav2vec2-base-960h"
    if what == "empty folder":
        folder.mkdir()
    out = tmp_path / "out"
    code = cli(["train", EXPERIMENT, *tiny(out, voca, f"model.audio_encoder={folder}")])
    errors = _error_lines(capsys.readouterr().err)
    assert code == 2 and len(errors) == 1
    assert "model.audio_encoder" in errors[0] and str(folder) in errors[0]
    assert not list(out.rglob("*"))
    assert [p.name for p in tmp_path.iterdir() if p.name != "out"] == (
        [folder.name] if what == "empty folder" else []
    )
    assert Path(folder).exists() == (what == "empty folder")
