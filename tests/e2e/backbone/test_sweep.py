"""``python -m experiments sweep``: an Optuna study over config keys, continued on re-run; seeds
mode's table; the wandb export's command on one trial; bad sweep files."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml

from experiments.__main__ import cli
from tests.e2e.conftest import cli_env, python, tiny, tree_hashes

EXPERIMENT = "textnas_train_sst2"


def _sweep_file(tmp: Path, body: dict, name: str = "lr") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _run(tmp: Path, sst_dir: Path, *words: str) -> int:
    return cli(["sweep", EXPERIMENT, *tiny(tmp / "out", f"data.root={sst_dir}"), *words])


def test_two_trials_then_continued_to_four(tmp_path, sst_dir, capsys):
    space = {"sampler": "random", "params": {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}}
    sweep = _sweep_file(tmp_path, space)
    assert _run(tmp_path, sst_dir, f"sweep={sweep}", "n_trials=2") == 0
    folder = tmp_path / "out" / EXPERIMENT / "sweeps" / "lr"
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{folder / 'study.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # val/acc, checkpoint mode max
    assert len(study.trials) == 2
    out = capsys.readouterr().out
    assert "2 of 2 trials to run" in out and "best: trial" in out

    assert _run(tmp_path, sst_dir, f"sweep={sweep}", "n_trials=4") == 0
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{folder / 'study.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert "2 of 4 trials to run" in capsys.readouterr().out
    rows = list(csv.DictReader(open(folder / "trials.csv")))
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"]
    for trial in study.trials:
        lr = trial.params["optim.lr"]
        assert 1e-3 <= lr <= 1e-2
        run = Path(trial.user_attrs["run_dirs"][0])
        assert run.is_relative_to(folder / f"trial_{trial.number:03d}")
        # each trial is an ordinary run with the sampled value in its resolved config
        assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == pytest.approx(lr)
    assert (folder / "history.png").stat().st_size > 0
    best = yaml.safe_load((folder / "best.yaml").read_text())
    assert best["val/acc"] == pytest.approx(study.best_value)


def test_seeds_mode_reports_mean_and_std(tmp_path, sst_dir, capsys):
    space = {"sampler": "grid", "params": {"model.final_keep": [1.0]}}
    sweep = _sweep_file(tmp_path, space, name="seeds")
    assert _run(tmp_path, sst_dir, f"sweep={sweep}", "n_trials=1", "seeds=2") == 0
    folder = tmp_path / "out" / EXPERIMENT / "sweeps" / "seeds"
    trial = optuna.load_study(
        study_name="seeds", storage=f"sqlite:///{folder / 'study.db'}"
    ).trials[0]
    values = trial.user_attrs["values"]
    assert len(values) == 2 and trial.value == pytest.approx(sum(values) / 2)
    seeds = [
        yaml.safe_load((Path(run) / "config.yaml").read_text())["seed"]
        for run in trial.user_attrs["run_dirs"]
    ]
    assert seeds == [0, 1]
    assert "(n=2)" in capsys.readouterr().out


def test_wandb_export_command_runs_one_trial(tmp_path, sst_dir):
    space = {"params": {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}}
    sweep = _sweep_file(tmp_path, space)
    assert _run(tmp_path, sst_dir, f"sweep={sweep}", "backend=wandb") == 0
    exported = yaml.safe_load(
        (tmp_path / "out" / EXPERIMENT / "sweeps" / "lr" / "wandb_sweep.yaml").read_text()
    )
    assert exported["metric"] == {"name": "val/acc", "goal": "maximize"}
    assert exported["parameters"]["optim.lr"]["distribution"] == "log_uniform_values"
    # what a wandb agent runs: ${env} dropped, ${args_no_hyphens} -> one sampled configuration
    command = [w for w in exported["command"] if w != "${env}"]
    command = [python() if w == "python" else w for w in command]
    command = [w for w in command if w != "${args_no_hyphens}"] + ["optim.lr=0.004"]
    done = subprocess.run(command, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    configs = list((tmp_path / "out" / EXPERIMENT).glob("*/config.yaml"))
    assert len(configs) == 1
    assert yaml.safe_load(configs[0].read_text())["optim"]["lr"] == pytest.approx(0.004)


@pytest.mark.parametrize(
    ("body", "words", "message"),
    [
        ({"params": {"optim.lrr": [0.1]}}, [], "did you mean 'optim.lr'"),
        ({"params": {"model.width": {"low": "a", "high": 8}}}, [], "params.model.width.low"),
        ({"params": {"model.width": [1.5]}}, [], "model.width"),
        ({"params": {}}, [], "the search space is empty"),
        ({"param": {"optim.lr": [0.1]}}, [], "did you mean 'params'"),
        ({"params": {"optim.lr": {"low": 1, "high": 0.1}}}, [], "must be below high"),
        ({"params": {"optim.lr": [0.1]}}, ["sweep.storage=nosuchdb://x"], "sweep.storage="),
    ],
)
def test_bad_sweeps_are_one_error_and_write_nothing(
    tmp_path, sst_dir, capsys, body, words, message
):
    sweep = _sweep_file(tmp_path, body)
    before = tree_hashes(tmp_path)
    assert _run(tmp_path, sst_dir, f"sweep={sweep}", *words) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert tree_hashes(tmp_path) == before, "nothing written, not even the sweep folder"
