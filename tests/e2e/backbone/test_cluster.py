"""Cluster launch: a requeued job continues in its own folder (``resume=auto`` under a simulated
SLURM job id, Lightning's requeue checkpoint included), ``launch slurm`` through submitit's local
executor, ``torchrun`` with 2 CPU processes, and the bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.__main__ import cli
from experiments.run import train
from tests.e2e.conftest import REPO, TINY, cli_env, tree_hashes

pytestmark = pytest.mark.usefixtures("one_thread")
EXPERIMENT = "textnas_train_sst2"


def _words(tmp_path: Path, sst_dir: Path, *extra: str) -> list[str]:
    return [*TINY, f"data.root={sst_dir}", f"output_dir={tmp_path}", *extra]


def _fit(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["fit"]


def test_requeued_job_continues_in_its_folder(tmp_path, sst_dir, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    first = train(EXPERIMENT, _words(tmp_path, sst_dir))
    folder = tmp_path / EXPERIMENT / "slurm-4242"
    assert first.run_dir == folder and _fit(folder)["global_step"] == 4

    # the requeued job (same id) continues from the newest checkpoint: one more epoch
    second = train(EXPERIMENT, _words(tmp_path, sst_dir, "trainer.max_epochs=2"))
    assert second.run_dir == folder and _fit(folder)["global_step"] == 8
    assert sorted(p.name for p in (tmp_path / EXPERIMENT).iterdir()) == ["slurm-4242"]

    # only Lightning's requeue checkpoint left (saved on SIGUSR1): it is the one resumed
    hpc = folder / "hpc_ckpt_1.ckpt"
    shutil.move(folder / "checkpoints" / "last.ckpt", hpc)
    shutil.rmtree(folder / "checkpoints")
    third = train(EXPERIMENT, _words(tmp_path, sst_dir, "trainer.max_epochs=3"))
    assert third.run_dir == folder and _fit(folder)["global_step"] == 12


def test_a_new_job_without_checkpoints_starts_fresh(tmp_path, sst_dir, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    result = train(EXPERIMENT, _words(tmp_path, sst_dir))
    assert result.run_dir == tmp_path / EXPERIMENT / "slurm-77_3"
    assert _fit(result.run_dir)["global_step"] == 4


def test_resume_auto_refuses_another_experiments_checkpoint(tmp_path, sst_dir, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    other = train("textnas_train_synthetic", _words(tmp_path, sst_dir))
    folder = tmp_path / EXPERIMENT / "slurm-9" / "checkpoints"
    folder.mkdir(parents=True)
    shutil.copy(other.run_dir / "checkpoints" / "last.ckpt", folder / "last.ckpt")
    before = tree_hashes(tmp_path)
    capsys.readouterr()  # what the first run printed
    assert cli(["train", EXPERIMENT, *_words(tmp_path, sst_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "textnas_train_synthetic" in err[0] and EXPERIMENT in err[0], err
    assert tree_hashes(tmp_path) == before


def test_launch_slurm_through_submitits_local_executor(tmp_path, sst_dir, capsys):
    words = _words(tmp_path, sst_dir, "slurm.executor=local", "trainer.accelerator=cpu")
    assert cli(["launch", "slurm", EXPERIMENT, *words]) == 0
    out = capsys.readouterr().out
    run_dir = Path(out.split("run folder: ")[1].strip())
    assert run_dir.parent == tmp_path / EXPERIMENT and run_dir.name.startswith("slurm-")
    assert _fit(run_dir)["global_step"] == 4
    assert (tmp_path / EXPERIMENT / "slurm-logs").is_dir()


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["launch", "slurm", EXPERIMENT, "slurm.partion=gpu"], "did you mean 'slurm.partition'"),
        (["launch", "slurm", EXPERIMENT, "nodes=0"], "nodes: expected a positive integer"),
        (["launch", "pbs", EXPERIMENT], "unknown target 'pbs'"),
    ],
)
def test_bad_launches(tmp_path, capsys, words, message):
    assert cli([*words, f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and message in err[-1], err
    assert not any(tmp_path.iterdir())


def test_launch_without_submitit_says_what_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert cli(["launch", "slurm", EXPERIMENT, f"output_dir={tmp_path}"]) == 2
    assert "pip install 'submitit" in capsys.readouterr().err


@pytest.mark.ddp
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_torchrun_with_two_cpu_processes(tmp_path, sst_dir):
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--nproc_per_node=2",
        "--master_port=29531",
        "-m",
        "experiments",
        "train",
        EXPERIMENT,
        *_words(tmp_path, sst_dir, "trainer.devices=2", "trainer.strategy=ddp"),
    ]
    done = subprocess.run(
        command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p for p in (tmp_path / EXPERIMENT).iterdir() if (p / "metrics.json").is_file()]
    assert len(runs) == 1, "both ranks wrote into one run folder"
    assert "Starting with 2 processes" in done.stdout + done.stderr
    assert _fit(runs[0])["global_step"] == 4  # limit_train_batches=4 counts each rank's batches
