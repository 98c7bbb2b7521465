"""``trainer.devices=2`` alone (no strategy, no preset) runs every system under DDP.

Lightning's ``strategy=auto`` with several devices becomes plain ``ddp``; the systems whose
backward leaves parameters without gradient (a supernet's unsampled ops, a GAN's idle player)
must still get DDP's unused-parameter search, or both ranks die at their second step ("parameters
that were not used in producing the loss"). Each run is two gloo processes on the CPU, two
training batches per rank, through ``python -m experiments``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.e2e.alphagan.test_alphagan_search import gan_data  # noqa: F401 (fixture)
from tests.e2e.alphagan.test_alphagan_search import tiny_search as alphagan_tiny
from tests.e2e.conftest import cli_env, python, tiny
from tests.e2e.textnas.test_textnas_search import _search_overrides as textnas_search_tiny
from tests.helpers.face import synthetic_voca
from tests.helpers.face import tiny as dualtalker_tiny

pytestmark = [pytest.mark.ddp]

DEVICES_ALONE = ["trainer.devices=2", "trainer.accelerator=cpu"]
#: two training batches per rank: DDP's unused-parameter error comes at the second one
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def _textnas_train(out: Path, request: pytest.FixtureRequest) -> list[str]:
    sst, arch = request.getfixturevalue("sst_dir"), request.getfixturevalue("tiny_arch")
    return tiny(out, f"data.root={sst}", f"model.architecture={arch}", *SHORT)


def _textnas_search(out: Path, request: pytest.FixtureRequest) -> list[str]:
    return textnas_search_tiny(out, request.getfixturevalue("sst_dir"), *SHORT)


def _alphagan_search(out: Path, request: pytest.FixtureRequest) -> list[str]:
    data = request.getfixturevalue("gan_data")
    steps = ["search.inner_steps=2", "search.worst_steps=1", "search.arch_steps=1"]
    return alphagan_tiny(out, data, *steps, "trainer.max_epochs=1", "search.eval_every=0")


def _dualtalker(out: Path, request: pytest.FixtureRequest) -> list[str]:
    voca = synthetic_voca(request.getfixturevalue("tmp_path_factory"))
    return dualtalker_tiny(out, voca, "data.batch_size=2", *SHORT)


RUNS: dict[str, Callable[[Path, pytest.FixtureRequest], list[str]]] = {
    "textnas_train_synthetic": _textnas_train,
    "textnas_search_synthetic": _textnas_search,
    "alphagan_search_synthetic": _alphagan_search,
    "dualtalker_synthetic": _dualtalker,
}


@pytest.mark.parametrize("experiment", sorted(RUNS))
def test_devices_2_alone_runs_every_system(experiment, request, tmp_path):
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    args = [*RUNS[experiment](out, request), *DEVICES_ALONE]
    proc = subprocess.run(
        [python(), "-m", "experiments", "train", experiment, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-4000:]
    runs = list((out / experiment).iterdir())
    assert len(runs) == 1 and not any(cwd.iterdir()), runs
    ckpt = torch.load(runs[0] / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["rng_states"]) == 2  # both ranks trained
    assert ckpt["suite"]["config"]["trainer"]["strategy"] == "auto"
