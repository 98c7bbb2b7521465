"""The entry point end to end with a tiny test-only system (tests/helpers/toy_system.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import registry
from experiments.config import ConfigError
from experiments.run import evaluate, resolve, show, train
from experiments.trainer import RUN_DIR_ENV, make_run_dir, resolve_wandb_mode
from tests.helpers import toy_system

REPO = Path(__file__).resolve().parents[3]
QUIET = ["logger.wandb.mode=disabled", "trainer.enable_progress_bar=false"]
TOY_YAML = """\
system: {system}
description: {description}
defaults: [trainer/cpu]
model:
  dropout: {dropout}
"""


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config dir with toy experiments: ``toy_a``/``toy_b`` (registered system ``toy``)
    and ``toy_cli`` (system by import string, for subprocesses)."""
    d = tmp_path_factory.mktemp("toy_configs")
    (d / "toy_a.yaml").write_text(TOY_YAML.format(system="toy", description="toy A", dropout=0.3))
    (d / "toy_b.yaml").write_text(TOY_YAML.format(system="toy", description="toy B", dropout=0.0))
    (d / "toy_cli.yaml").write_text(
        TOY_YAML.format(
            system="tests.helpers.toy_system:SPEC", description="toy via CLI", dropout=0.0
        )
    )
    return d


@pytest.fixture
def toy(toy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the toy experiments visible in-process."""
    monkeypatch.setenv("SUITE_CONFIG_PATH", str(toy_dir))
    registry.register_system(toy_system.SPEC)
    return toy_dir


@pytest.fixture(scope="module")
def trained(toy_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One finished 2-epoch run of ``toy_a``, shared by several tests."""
    out = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUITE_CONFIG_PATH", str(toy_dir))
        mp.setenv("WANDB_MODE", "disabled")
        mp.delenv(RUN_DIR_ENV, raising=False)
        registry.register_system(toy_system.SPEC)
        result = train("toy_a", [*QUIET, f"output_dir={out}"])
    return out, result


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_train_writes_run_folder(trained):
    out, result = trained
    run_dir = result.run_dir
    assert run_dir.parent == out / "toy_a"
    for rel in (
        "config.yaml",
        "checkpoints/last.ckpt",
        "metrics.json",
        "csv/version_0/metrics.csv",
        "after_fit.txt",
    ):
        assert (run_dir / rel).is_file(), rel
    assert "experiment: toy_a" in (run_dir / "config.yaml").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == result.metrics
    fit = metrics["fit"]
    assert fit["global_step"] == 16 and fit["epoch"] == 2  # 64 samples / 8 per batch, 2 epochs
    assert fit["val/loss"] > 0 and fit["best_model_score"] == pytest.approx(
        min(fit["val/loss"], fit["best_model_score"])
    )
    ckpt = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["suite"]["experiment"] == "toy_a" and ckpt["suite"]["system"] == "toy"
    assert ckpt["suite"]["config"]["model"]["dropout"] == 0.3
    assert len(ckpt["rng_states"]) == 1
    assert RUN_DIR_ENV not in os.environ  # not leaked to later runs in this process


def test_eval_reproduces_final_val_metric(trained, toy):
    out, result = trained
    last = result.run_dir / "checkpoints" / "last.ckpt"
    ev = evaluate(None, [f"ckpt={last}", *QUIET])  # experiment taken from the checkpoint
    assert ev.run_dir.parent == out / "toy_a" and ev.run_dir.name.endswith("-eval")
    assert ev.metrics["validate"]["val/loss"] == pytest.approx(
        result.metrics["fit"]["val/loss"], abs=1e-6
    )
    assert "test/loss" in ev.metrics["test"]
    assert json.loads((ev.run_dir / "metrics.json").read_text()) == ev.metrics
    # the model config comes from the checkpoint, not from toy_a.yaml's current contents
    assert "dropout: 0.3" in (ev.run_dir / "config.yaml").read_text()


def test_eval_with_checkpoint_of_another_experiment_fails_cleanly(trained, toy):
    out, result = trained
    last = result.run_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError) as info:
        evaluate("toy_b", [f"ckpt={last}", *QUIET])
    assert str(info.value) == f"checkpoint {last} was written by experiment 'toy_a', not 'toy_b'"
    assert not (out / "toy_b").exists()


def test_eval_errors(toy, tmp_path):
    with pytest.raises(ConfigError, match="eval needs a checkpoint: ckpt=PATH"):
        evaluate("toy_a", [])
    with pytest.raises(ConfigError, match="checkpoint not found"):
        evaluate("toy_a", [f"ckpt={tmp_path / 'nope.ckpt'}"])
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(ConfigError, match="has no suite metadata"):
        evaluate("toy_a", [f"ckpt={plain}"])


def test_resume_is_bit_identical_to_uninterrupted(toy, tmp_path):
    """1 epoch + resume to 2 == 2 straight epochs, with dropout and shuffling (RNGState)."""
    a, b = tmp_path / "a", tmp_path / "b"
    first = train("toy_a", [*QUIET, f"output_dir={a}", "trainer.max_epochs=1"])
    w_first = _weights(first.run_dir / "checkpoints/last.ckpt")
    resumed = train("toy_a", [*QUIET, f"output_dir={a}", "trainer.max_epochs=2", "resume=last"])
    assert resumed.run_dir == first.run_dir  # continued in the same folder
    assert [p.name for p in (a / "toy_a").iterdir()] == [first.run_dir.name]
    straight = train("toy_a", [*QUIET, f"output_dir={b}", "trainer.max_epochs=2"])
    assert resumed.metrics["fit"]["global_step"] == straight.metrics["fit"]["global_step"] == 16
    w_resumed = _weights(resumed.run_dir / "checkpoints/last.ckpt")
    w_straight = _weights(straight.run_dir / "checkpoints/last.ckpt")
    assert w_resumed.keys() == w_straight.keys()
    for key in w_straight:
        assert torch.equal(w_resumed[key], w_straight[key]), key
    assert any(not torch.equal(w_first[k], w_straight[k]) for k in w_straight)  # it did train on


def test_resume_errors(toy, tmp_path):
    with pytest.raises(ConfigError, match="resume=last: no checkpoint"):
        train("toy_a", [*QUIET, f"output_dir={tmp_path}", "resume=last"])
    assert not (tmp_path / "toy_a").exists() or not any((tmp_path / "toy_a").iterdir())


def test_wandb_offline_run_lands_in_run_folder(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = [
        f"output_dir={tmp_path}",
        "trainer.max_epochs=1",
        "logger.wandb.mode=auto",
        "logger.wandb.log_model=true",  # impossible offline: dropped with a warning
    ]
    with pytest.warns(UserWarning, match="log_model=true needs online W&B"):
        result = train("toy_a", overrides)
    runs = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert (result.run_dir / ".wandb_id").read_text().strip() in runs[0].name
    import wandb

    assert wandb.run is None  # finished


def test_fast_dev_run_without_loggers(toy, tmp_path):
    result = train("toy_b", [*QUIET, f"output_dir={tmp_path}", "trainer.fast_dev_run=true"])
    assert result.metrics["fit"]["global_step"] == 1
    assert (result.run_dir / "metrics.json").is_file()


def test_manual_optimization_rejects_trainer_clipping(toy, tmp_path):
    overrides = [*QUIET, f"output_dir={tmp_path}", "model.manual_optimization=true"]
    with pytest.raises(ConfigError, match="manual optimization and clips gradients itself"):
        train("toy_b", [*overrides, "trainer.gradient_clip_val=1.0"])
    with pytest.raises(ConfigError, match="accumulate_grad_batches=2"):
        train("toy_b", [*overrides, "trainer.accumulate_grad_batches=2"])
    assert not (tmp_path / "toy_b").exists()


def test_system_validate_and_show(toy):
    with pytest.raises(ConfigError, match=r"model.dropout: must be in \[0, 1\)"):
        resolve("toy_a", ["model.dropout=1.5"])
    with pytest.raises(ConfigError, match="system: cannot be overridden"):
        resolve("toy_a", ["system=other"])
    text = show("toy_a", ["trainer.max_epochs=7"])
    assert "max_epochs: 7" in text and "accelerator: cpu" in text


def test_run_dirs_are_unique_and_shared_with_ddp_children(toy, tmp_path, monkeypatch):
    _, cfg = resolve("toy_b", [f"output_dir={tmp_path}"])
    first, second = make_run_dir(cfg), make_run_dir(cfg)
    assert first != second and first.is_dir() and second.is_dir()
    assert os.environ[RUN_DIR_ENV] == str(second.resolve())
    monkeypatch.setenv("LOCAL_RANK", "1")  # a child started by Lightning's ddp launcher
    assert make_run_dir(cfg) == second.resolve()


def test_wandb_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"


# ---------------------------------------------------------------------- CLI (subprocesses)


def _cli(toy_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """A real ``python -m experiments`` process."""
    env = {**os.environ, "SUITE_CONFIG_PATH": str(toy_dir), "WANDB_MODE": "disabled"}
    env.pop("SUITE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "experiments", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def run_cli(toy_dir, monkeypatch, capsys):
    """The same ``cli()`` in this process (a subprocess costs seconds of imports each)."""
    from experiments.__main__ import cli

    def run(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setenv("SUITE_CONFIG_PATH", str(toy_dir))
        monkeypatch.setenv("WANDB_MODE", "disabled")
        monkeypatch.delenv("SUITE_DEBUG", raising=False)
        monkeypatch.delenv(RUN_DIR_ENV, raising=False)
        code = cli(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def test_cli_list(toy_dir):
    proc = _cli(toy_dir, "list")
    assert proc.returncode == 0, proc.stderr
    assert "toy_cli" in proc.stdout and "toy via CLI" in proc.stdout


def test_cli_show_with_override(run_cli):
    proc = run_cli("show", "toy_cli", "trainer.max_epochs=7", "data.batch_size=4")
    assert proc.returncode == 0, proc.stderr
    assert "max_epochs: 7" in proc.stdout and "batch_size: 4" in proc.stdout


def test_cli_typo_exits_2_with_suggestion(run_cli, tmp_path):
    proc = run_cli("train", "toy_cli", "trainer.max_epochz=1", f"output_dir={tmp_path}")
    assert proc.returncode == 2
    assert (
        "error: unknown config key 'trainer.max_epochz'; did you mean 'trainer.max_epochs'?"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_cli_usage_and_unknown_experiment(toy_dir, run_cli):
    proc = _cli(toy_dir, "train")
    assert proc.returncode == 2 and "usage:" in proc.stderr
    proc = run_cli("show", "toy_clj")
    assert (
        proc.returncode == 2
        and "did you mean 'toy_cli'?" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert run_cli("--help").returncode == 0


def test_cli_extra_command(run_cli):
    proc = run_cli("hello", "toy_cli", "world", "seed=3")
    assert proc.returncode == 0, proc.stderr
    assert "hello toy_cli world" in proc.stdout


def test_cli_user_errors_are_one_line(monkeypatch, capsys):
    """DataError (from datamodules.errors) and FileNotFoundError: one line, exit 2."""
    import experiments.run
    from experiments.__main__ import cli

    DataError = type("DataError", (Exception,), {"__module__": "datamodules.errors"})
    failures = iter(
        [
            DataError("no SST-2 at /data/sst2:\n  put train.tsv there"),
            FileNotFoundError(2, "No such file", "/x.pkl"),
        ]
    )

    def fail(*args, **kwargs):
        raise next(failures)

    monkeypatch.setattr(experiments.run, "train", fail)
    assert cli(["train", "toy_a"]) == 2
    assert capsys.readouterr().err == "error: no SST-2 at /data/sst2: put train.tsv there\n"
    assert cli(["train", "toy_a"]) == 2
    assert capsys.readouterr().err == "error: No such file: /x.pkl\n"

    monkeypatch.setattr(
        experiments.run, "train", lambda *a: (_ for _ in ()).throw(RuntimeError("bug"))
    )
    with pytest.raises(RuntimeError, match="bug"):  # a bug keeps its traceback
        cli(["train", "toy_a"])
    monkeypatch.setenv("SUITE_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli(["show", "no_such_experiment"])
