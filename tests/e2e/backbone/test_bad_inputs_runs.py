"""Bad inputs to the commands that run something: one ``error:`` line, exit code 2, nothing
written or overwritten.

Unreadable checkpoints (empty, truncated, not a checkpoint, a lone tensor) given to ``eval``,
``derive``, ``resume`` (a path or ``last``) and ``model.init_from``; a read-only output folder
for ``train``, ``eval``, ``data`` and ``resume``; a command given a checkpoint but no
experiment; a DDP strategy a system cannot run. Most go through ``cli()`` in this process with
the tiny toy system (tests/helpers/toy_system.py); one read-only folder is a real
``python -m experiments`` subprocess without the permission bypass of root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from experiments.__main__ import cli
from experiments.run import train
from experiments.trainer import RUN_DIR_ENV
from tests.e2e.conftest import cli_env, python, tree_hashes

QUIET = ["logger.wandb.mode=disabled", "trainer.enable_progress_bar=false"]
TOY = "system: tests.helpers.toy_system:SPEC\ndefaults: [trainer/cpu]\n"

#: what each bad file is, as the error says it
REASONS = {
    "empty": "the file is empty (0 bytes)",
    "truncated": "it is truncated ({size} bytes, the end of its zip archive is missing: was the "
    "save or a copy interrupted?)",
    "text": "it is not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)",
    "tensor": "it holds a Tensor, not a checkpoint's dictionary (state_dict, ...)",
}


@pytest.fixture(scope="module")
def toy_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config dir with the toy experiment ``toy_a`` (its system named by import string)."""
    d = tmp_path_factory.mktemp("toy_configs")
    (d / "toy_a.yaml").write_text(TOY)
    return d


@pytest.fixture(scope="module")
def earlier(toy_configs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of an earlier 1-epoch ``toy_a`` run (never changed by the tests)."""
    out = tmp_path_factory.mktemp("earlier")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUITE_CONFIG_PATH", str(toy_configs))
        mp.setenv("WANDB_MODE", "disabled")
        mp.delenv(RUN_DIR_ENV, raising=False)
        return train("toy_a", [*QUIET, f"output_dir={out}", "trainer.max_epochs=1"]).run_dir


@pytest.fixture
def run_cli(toy_configs: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Callable:
    """``cli(args)`` in this process: ``(exit code, stdout, stderr)``."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("SUITE_CONFIG_PATH", str(toy_configs))
        monkeypatch.setenv("WANDB_MODE", "disabled")
        monkeypatch.delenv("SUITE_DEBUG", raising=False)
        monkeypatch.delenv(RUN_DIR_ENV, raising=False)
        capsys.readouterr()
        code = cli(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def assert_one_error(result: tuple[int, str, str], message: str) -> None:
    """Exit code 2 and ``error: message`` as the one error line, no traceback."""
    code, _, err = result
    assert code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    assert err.endswith(f"error: {message}\n"), err


def bad_checkpoint(kind: str, folder: Path, good: Path) -> tuple[Path, str]:
    """A bad ``.ckpt`` file of ``kind`` in ``folder`` and the reason the error gives."""
    path = folder / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":  # the first half of a good checkpoint
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "tensor":  # torch.save of something else than a checkpoint
        torch.save(torch.ones(2), path)
    else:
        path.write_text("epoch,loss\n1,0.5\n")
    return path, REASONS[kind].format(size=path.stat().st_size)


def copy_run(run_dir: Path, out: Path) -> Path:
    """A copy of ``run_dir`` as the only run of ``out`` (for ``resume=last``)."""
    copy = out / run_dir.parent.name / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


# --------------------------------------------------------------------------------------------
# Unreadable checkpoints
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_unreadable_checkpoint_is_one_error_naming_it(kind, earlier, run_cli, tmp_path):
    bad, reason = bad_checkpoint(kind, tmp_path, earlier / "checkpoints/last.ckpt")
    out = tmp_path / "out"
    bad_bytes = bad.read_bytes()
    for args, key in [
        (["eval", f"ckpt={bad}"], "ckpt"),
        (["eval", "toy_a", f"ckpt={bad}"], "ckpt"),
        (["train", "toy_a", f"resume={bad}"], "resume"),
        (["derive", "textnas_search_synthetic", f"ckpt={bad}"], "ckpt"),
        (["hello", f"ckpt={bad}"], "ckpt"),  # a command without EXPERIMENT reads the checkpoint
    ]:
        result = run_cli(*args, f"output_dir={out}", *QUIET)
        assert_one_error(result, f"{key}: {bad} is not a readable checkpoint: {reason}")
    assert not out.exists() and bad.read_bytes() == bad_bytes

    # resume=last finds the bad file as the latest run's last.ckpt; the run folder stays as is
    run_dir = copy_run(earlier, tmp_path / "resume")
    last = run_dir / "checkpoints/last.ckpt"
    last.write_bytes(bad_bytes)
    before = tree_hashes(tmp_path / "resume")
    result = run_cli("train", "toy_a", "resume=last", f"output_dir={tmp_path / 'resume'}", *QUIET)
    assert_one_error(result, f"resume=last: {last} is not a readable checkpoint: {reason}")
    assert tree_hashes(tmp_path / "resume") == before


def test_unreadable_init_from_is_one_error(earlier, run_cli, sst_dir, tiny_arch, tmp_path):
    bad, reason = bad_checkpoint("empty", tmp_path, earlier / "checkpoints/last.ckpt")
    out = tmp_path / "out"
    result = run_cli(
        "train",
        "textnas_train_synthetic",
        f"model.init_from={bad}",
        f"model.architecture={tiny_arch}",
        f"data.root={sst_dir}",
        f"output_dir={out}",
        *QUIET,
    )
    assert_one_error(result, f"model.init_from: {bad} is not a readable checkpoint: {reason}")
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# A command given a checkpoint and no experiment
# --------------------------------------------------------------------------------------------


def test_command_without_experiment_takes_the_checkpoints(earlier, run_cli, tmp_path):
    last = earlier / "checkpoints/last.ckpt"
    before = tree_hashes(earlier)
    code, out, err = run_cli("hello", f"ckpt={last}")
    assert code == 0 and out == "hello toy_a\n", err
    assert_one_error(
        run_cli("derive", f"ckpt={last}", f"output_dir={tmp_path}"),
        "experiment 'toy_a' (system 'tests.helpers.toy_system:SPEC') has no command 'derive'; "
        "it has: train, eval, hello",
    )
    code, _, err = run_cli("derive", f"output_dir={tmp_path}")
    assert code == 2 and err.startswith("error: 'derive' needs an EXPERIMENT of system ")
    assert err.rstrip().endswith("or ckpt=PATH of a run to take it from"), err
    code, _, err = run_cli("frobnicate")
    assert code == 2 and err.startswith("error: unknown command 'frobnicate' (see "), err
    assert not any(tmp_path.iterdir()) and tree_hashes(earlier) == before


# --------------------------------------------------------------------------------------------
# Read-only output folders
# --------------------------------------------------------------------------------------------


def deny_writes(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``os.access`` says ``folder`` is read-only, as it does for a user other than root."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_read_only_output_folder_is_one_error_before_any_work(
    earlier, run_cli, sst_dir, monkeypatch, tmp_path
):
    ro = tmp_path / "ro"
    ro.mkdir()
    deny_writes(monkeypatch, ro)
    message = (
        f"output_dir: cannot write into {ro} (permission denied); give a folder you can write "
        "to: output_dir=PATH"
    )
    last = earlier / "checkpoints/last.ckpt"
    for args in [
        ["train", "toy_a"],
        ["eval", f"ckpt={last}"],
        ["data", "textnas_train_synthetic", f"data.root={sst_dir}"],
    ]:
        assert_one_error(run_cli(*args, f"output_dir={ro}", *QUIET), message)
        assert not any(ro.iterdir()), args

    # resume=last continues in the run's own folder, which must be writable
    run_dir = copy_run(earlier, tmp_path / "resume")
    deny_writes(monkeypatch, run_dir)
    before = tree_hashes(run_dir)
    result = run_cli("train", "toy_a", "resume=last", f"output_dir={tmp_path / 'resume'}", *QUIET)
    assert_one_error(result, f"resume=last: cannot write into {run_dir} (permission denied)")
    assert tree_hashes(run_dir) == before


def _without_root_privileges() -> list[str] | None:
    """A command prefix under which folder permissions hold (root ignores them), or None."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if probe.returncode == 0 else None


def test_read_only_output_folder_for_real(toy_configs, tmp_path):
    """A real read-only folder (mode 0555) and a process that is refused writes there."""
    prefix = _without_root_privileges()
    if prefix is None:
        pytest.skip("running as root without setpriv: folder permissions are not enforced")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = subprocess.run(
            [*prefix, python(), "-m", "experiments", "train", "toy_a", f"output_dir={ro}", *QUIET],
            cwd=tmp_path,
            env=cli_env(SUITE_CONFIG_PATH=str(toy_configs)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_one_error(
            (proc.returncode, proc.stdout, proc.stderr),
            f"output_dir: cannot write into {ro} (permission denied); give a folder you can "
            "write to: output_dir=PATH",
        )
        assert not any(ro.iterdir())
    finally:
        ro.chmod(0o755)


def test_strategy_without_unused_parameter_search_is_refused(run_cli, sst_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "train",
        "textnas_search_synthetic",
        "trainer.strategy=ddp_spawn_find_unused_parameters_false",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        f"data.root={sst_dir}",
        f"output_dir={out}",
        *QUIET,
    )
    assert_one_error(
        result,
        "trainer.strategy=ddp_spawn_find_unused_parameters_false: system 'textnas_search' leaves "
        "parameters without gradient in each backward, which DDP allows only with "
        "unused-parameter search; use trainer.strategy=ddp_spawn",
    )
    assert not out.exists()
