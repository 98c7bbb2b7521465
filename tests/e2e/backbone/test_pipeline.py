"""``python -m experiments pipeline``: every ``*_synthetic`` pipeline end to end at tiny sizes,
a pipeline continued after its second stage, and the bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datamodules.images.synthetic import write_synthetic_cifar10
from experiments.__main__ import cli
from experiments.pipeline import list_pipelines
from tests.e2e.alphagan.test_alphagan_retrain import TINY as RETRAIN_TINY
from tests.e2e.alphagan.test_alphagan_search import TINY as GAN_TINY
from tests.e2e.conftest import tree_hashes
from tests.helpers.face import synthetic_voca
from tests.helpers.face import tiny as face_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT_TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "stages.search.supernet.width=8",
    "stages.search.search.derive_samples=2",
    "stages.derive.search.derive_samples=2",
    "stages.retrain.model.width=8",
    "stages.retrain.model.embed_dim=16",
]


@pytest.fixture(scope="module")
def gan_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-cifar10")
    write_synthetic_cifar10(root, n_train=128, n_test=32, seed=0)
    return root


def _manifest(folder: Path) -> dict:
    return yaml.safe_load((folder / "manifest.yaml").read_text())


def _runs(folder: Path) -> dict[str, str]:
    return {name: s.get("run") for name, s in _manifest(folder)["stages"].items()}


def test_every_pipeline_file_loads_and_synthetic_ones_exist():
    names = {p.name for p in list_pipelines()}
    assert {"textnas_synthetic", "alphagan_synthetic", "dualtalker_synthetic"} <= names


def test_textnas_pipeline_continues_after_its_second_stage(tmp_path, sst_dir, capfd):
    base = [f"output_dir={tmp_path}", f"data.root={sst_dir}", *TEXT_TINY]
    folder = tmp_path / "pipelines" / "textnas_synthetic"
    # the retrain stage fails on a typo: search and derive are done, retrain is marked failed
    code = cli(["pipeline", "textnas_synthetic", *base, "stages.retrain.model.widht=8"])
    assert code == 2
    err = capfd.readouterr().err  # the stage's own error comes from its process
    assert "stage 'retrain' exited with code 2" in err and "did you mean 'model.width'" in err
    stages = _manifest(folder)["stages"]
    assert [stages[s]["state"] for s in ("search", "derive", "retrain")] == [
        "done",
        "done",
        "failed",
    ]
    done_before = {s: tree_hashes(Path(stages[s]["run"])) for s in ("search", "derive")}

    assert cli(["pipeline", "textnas_synthetic", *base]) == 0
    out = capfd.readouterr().out
    manifest = _manifest(folder)
    assert all(s["state"] == "done" for s in manifest["stages"].values())
    assert "search: done" in out and "derive: done" in out  # not run again
    for stage, hashes in done_before.items():
        assert manifest["stages"][stage]["run"] == stages[stage]["run"]
        assert tree_hashes(Path(stages[stage]["run"])) == hashes
    runs = _runs(folder)
    derived = Path(runs["derive"]) / "architecture.yaml"
    retrained = yaml.safe_load((Path(runs["retrain"]) / "config.yaml").read_text())
    assert retrained["model"]["architecture"] == str(derived)
    assert Path(runs["eval"]).name.endswith("-eval")
    assert (Path(runs["eval"]) / "metrics.json").is_file()
    # one wandb group for every stage, each with its own job type
    group = manifest["group"]
    for stage in manifest["stages"].values():
        assert f"logger.wandb.group={group}" in stage["command"]
        assert "logger.wandb.job_type=" in stage["command"]


def test_alphagan_pipeline_end_to_end(tmp_path, gan_data):
    search = [w for w in GAN_TINY if not w.startswith(("logger", "trainer.max_epochs"))]
    retrain = [w for w in RETRAIN_TINY if not w.startswith(("logger", "trainer"))]
    words = [
        f"output_dir={tmp_path}",
        f"data.root={gan_data}",
        "trainer.enable_progress_bar=false",
        *(f"stages.search.{w}" for w in [*search, "trainer.max_epochs=1"]),
        *(f"stages.retrain.{w}" for w in retrain),
        "stages.score.metrics.eval_samples=40",
    ]
    assert cli(["pipeline", "alphagan_synthetic", *words]) == 0
    runs = _runs(tmp_path / "pipelines" / "alphagan_synthetic")
    genotype = Path(runs["derive"]) / "genotype.yaml"
    assert genotype.is_file()
    retrained = yaml.safe_load((Path(runs["retrain"]) / "config.yaml").read_text())
    assert retrained["model"]["genotype"] == str(genotype)
    assert (Path(runs["score"]) / "scores.json").is_file()


def test_dualtalker_pipeline_end_to_end(tmp_path, tmp_path_factory):
    data = synthetic_voca(tmp_path_factory)
    words = face_tiny(tmp_path, data, "trainer.max_epochs=1", "render.every_n_val=0")
    # the render stage writes every test sequence's vertices (videos: tested with the renderer)
    words.append("stages.render.render.video=false")
    assert cli(["pipeline", "dualtalker_synthetic", *words]) == 0
    runs = _runs(tmp_path / "pipelines" / "dualtalker_synthetic")
    assert (Path(runs["eval"]) / "metrics.json").is_file()
    assert (
        Path(runs["render"]) == tmp_path / "pipelines" / "dualtalker_synthetic" / "render" / "test"
    )
    assert list(Path(runs["render"]).glob("*.npy"))


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["pipeline", "textnas_synthetc"], "did you mean 'textnas_synthetic'"),
        (["pipeline", "textnas_synthetic", "stages.retrian.model.width=8"], "no stage 'retrian'"),
        (["pipeline"], "usage: python -m experiments pipeline NAME"),
    ],
)
def test_bad_pipeline_commands(tmp_path, capsys, words, message):
    assert cli([*words, f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not any(tmp_path.iterdir()), "nothing written"
