"""The alphaGAN search end to end: train, derive, data, learning, and bad inputs.

Runs go through :func:`experiments.run.train` on a generated CIFAR-10-format data set resized to
8x8 (``model.bottom_width=1``), with width-8 networks, so each takes seconds on a CPU; one bad
input goes through a real ``python -m experiments`` subprocess, the others through the same
entry point in-process.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from datamodules.images.synthetic import write_synthetic_cifar10, write_synthetic_stl10
from experiments.__main__ import cli
from experiments.config import ConfigError
from experiments.run import inspect_data, resolve, run_command, train
from experiments.systems.alphagan.demo import sample_distances
from search_spaces.gan import Genotype
from tests.e2e.conftest import cli_env, python, tree_hashes

pytestmark = pytest.mark.usefixtures("one_thread")

#: A search of a few seconds: 8x8 images, width-8 G and D, 5 + 4 + 2 steps per epoch.
TINY = [
    "data.image_size=8",
    "model.bottom_width=1",
    "model.width=8",
    "model.d_width=8",
    "model.latent_dim=16",
    "data.batch_size=8",
    "data.generate=false",
    "search.inner_steps=3",
    "search.worst_steps=2",
    "search.arch_steps=2",
    "search.eval_every=1",
    "search.eval_samples=32",
    "search.num_samples=8",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "logger.wandb.mode=disabled",
]


def tiny_search(out: Path, data: Path, *extra: str) -> list[str]:
    """Overrides of a tiny search writing into ``out`` and reading the data in ``data``."""
    return [*TINY, f"output_dir={out}", f"data.root={data}", *extra]


@pytest.fixture(scope="session")
def gan_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CIFAR-10 in the official format: 256 train images (128 + 128), 64 test."""
    root = tmp_path_factory.mktemp("synthetic-cifar10")
    write_synthetic_cifar10(root, n_train=256, n_test=64, seed=0)
    return root


@pytest.fixture(scope="module")
def search_run(gan_data: Path, tmp_path_factory: pytest.TempPathFactory):
    return train("alphagan_search_synthetic", tiny_search(tmp_path_factory.mktemp("out"), gan_data))


def test_every_search_config_resolves() -> None:
    for name in ("alphagan_search_cifar10", "alphagan_search_stl10", "alphagan_search_synthetic"):
        spec, cfg = resolve(name)
        assert cfg.system == "alphagan_search" and spec.find_unused_parameters
    _, cfg = resolve("alphagan_search_cifar10", ["search.variant=l"])
    assert cfg.search.inner_steps is None  # the variant's counts are resolved by the module
    assert (cfg.model.width, cfg.model.d_width, cfg.data.batch_size) == (256, 128, 64)


@pytest.mark.parametrize("experiment", ["alphagan_search_cifar10", "alphagan_search_stl10"])
def test_paper_configs_run_one_fast_dev_batch(experiment, gan_data, tmp_path) -> None:
    """The paper-size experiments at tiny sizes: one weight batch, then the worst-case and α
    phases, then the derived genotype (fast_dev_run: no loggers, no checkpoints)."""
    data = gan_data
    if "stl10" in experiment:
        data = tmp_path / "stl10"
        write_synthetic_stl10(data, n_train=64, n_test=16, seed=0)
    result = train(experiment, tiny_search(tmp_path / "out", data, "trainer.fast_dev_run=1"))
    assert Genotype.load(result.run_dir / "genotype.yaml").bottom_width == 1


def test_run_folder_holds_genotype_samples_and_alpha_history(search_run) -> None:
    run_dir = search_run.run_dir
    genotype = Genotype.load(run_dir / "genotype.yaml")
    assert genotype.bottom_width == 1
    for name in ("genotype.png", "alpha.png", "config.yaml", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    for epoch in (0, 1):
        for kind in (
            "samples/epoch_{:03d}_continuous.png",
            "samples/epoch_{:03d}_argmax.png",
            "search/epoch_{:03d}_alpha.png",
            "search/epoch_{:03d}_genotype.png",
        ):
            assert (run_dir / kind.format(epoch)).is_file(), kind.format(epoch)
    with (run_dir / "search/alpha_history.csv").open() as f:
        rows = list(csv.reader(f))
    assert len(rows) == 3  # header, 2 epochs
    assert len(rows[0]) == 1 + 9 * 6 + 9 * 3  # epoch; 9 normal edges x 6 ops, 9 up/skip x 3
    metrics = json.loads((run_dir / "metrics.json").read_text())["fit"]
    for key in (
        "search/duality_gap",
        "search/minmax",
        "search/maxmin",
        "train/d_loss",
        "train/g_loss",
        "worst/d_loss",
        "search/fid_standin",
        "lr/g",
        "lr/d",
        "lr/alpha",
    ):
        assert key in metrics, key
    assert metrics["search/d_step"] == 10 and metrics["search/arch_step"] == 4
    assert metrics["search/duality_gap"] == pytest.approx(
        metrics["search/minmax"] - metrics["search/maxmin"], abs=1e-5
    )


def test_derive_command_rederives_the_genotype(search_run, tmp_path) -> None:
    run_dir = search_run.run_dir
    before = tree_hashes(run_dir)
    code = run_command(
        "derive",
        "alphagan_search_synthetic",
        [f"ckpt={run_dir / 'checkpoints/last.ckpt'}", f"output_dir={tmp_path}"],
        [],
    )
    assert code == 0 and tree_hashes(run_dir) == before
    (derived,) = (tmp_path / "alphagan_search_synthetic").iterdir()
    assert derived.name.endswith("-derive")
    assert Genotype.load(derived / "genotype.yaml") == Genotype.load(run_dir / "genotype.yaml")
    for name in ("genotype.png", "alpha.png", "alpha_history.csv", "config.yaml"):
        assert (derived / name).is_file(), name


def test_data_command_reports_the_two_halves(gan_data, tmp_path) -> None:
    summary, out_dir = inspect_data("alphagan_search_synthetic", tiny_search(tmp_path, gan_data))
    sizes = {k: v["size"] for k, v in summary["splits"].items()}
    assert sizes["train"] == sizes["val"] == 128
    assert any(out_dir.glob("*.png"))


def test_tiny_search_improves_the_samples(gan_data, tmp_path) -> None:
    """G's samples move toward the held-out real images: the feature distance falls.

    Measure: the Fréchet distance between frozen random-conv features (channel means and
    spreads) of 256 samples and of the 64 held-out test images. The generated images are
    coloured shapes on gradient backgrounds, so the first thing a GAN learns is their colour
    and contrast statistics, which these features see directly; a hinge D loss on held-out
    images would instead mix in D's own progress (it rises as D gets better at separating)."""
    result = train(
        "alphagan_search_synthetic",
        tiny_search(
            tmp_path,
            gan_data,
            "search.inner_steps=14",
            "optim.g_lr=1e-3",
            "optim.d_lr=1e-3",
            "search.eval_every=0",
            "search.plots=false",
        ),
    )
    distances = sample_distances(result.run_dir / "checkpoints/last.ckpt", num_samples=256)
    assert distances[1] < 0.8 * distances[0], distances


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("trainer.precision=16-mixed", ["16-mixed", "bf16-mixed", "scaler"]),
        ("model.bottom_width=4", ["model.bottom_width=4", "32x32", "8x8", "model.bottom_width=1"]),
        ("search.variant=m", ["search.variant", "s, l"]),
        ("search.arch_steps=-1", ["search.arch_steps", ">= 0"]),
        ("model.conv=winograd", ["model.conv", "auto, direct, fft", "winograd"]),
        ("trainer.gradient_clip_val=1.0", ["gradient_clip_val", "manual optimization"]),
    ],
)
def test_config_errors_touch_nothing(override, words, gan_data, tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        train("alphagan_search_synthetic", tiny_search(tmp_path, gan_data, override))
    for word in words:
        assert word in str(info.value), str(info.value)
    assert not any((tmp_path / "alphagan_search_synthetic").glob("*"))


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_another_experiments_checkpoint_is_refused(search_run, tmp_path, capsys) -> None:
    ckpt = search_run.run_dir / "checkpoints/last.ckpt"
    before = tree_hashes(search_run.run_dir)
    for argv in (
        ["derive", "alphagan_search_cifar10", f"ckpt={ckpt}", f"output_dir={tmp_path}"],
        ["train", "alphagan_search_cifar10", f"resume={ckpt}", f"output_dir={tmp_path}"],
    ):
        assert cli(argv) == 2
        (line,) = _error_lines(capsys)
        assert "alphagan_search_synthetic" in line and "alphagan_search_cifar10" in line, line
    assert tree_hashes(search_run.run_dir) == before
    assert not (tmp_path / "alphagan_search_cifar10").exists()


def test_missing_data_is_one_error_line(tmp_path, capsys) -> None:
    assert (
        cli(
            [
                "train",
                "alphagan_search_synthetic",
                *tiny_search(tmp_path / "out", tmp_path / "nothing"),
            ]
        )
        == 2
    )
    (line,) = _error_lines(capsys)
    assert "nothing" in line, line
    assert not any((tmp_path / "out").rglob("*.ckpt"))


def test_cli_subprocess_bad_precision_is_one_error_line(gan_data, tmp_path) -> None:
    proc = subprocess.run(
        [
            python(),
            "-m",
            "experiments",
            "train",
            "alphagan_search_synthetic",
            *tiny_search(tmp_path / "out", gan_data, "trainer.precision=16-mixed"),
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "16-mixed" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_genotype_yaml_from_the_search_round_trips(search_run) -> None:
    data = yaml.safe_load((search_run.run_dir / "genotype.yaml").read_text())
    assert set(data) == {"bottom_width", "cells", "skips"} and len(data["cells"]) == 3
