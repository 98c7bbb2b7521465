"""Offline wandb runs of every system, read back from their own files: the headline metrics
summarised in their direction (``define_metric``), the resolved config and the derived
architecture as artifacts, the group and job type; and every key a system's dashboard panel
shows is a key that system logs (renaming a metric breaks this test, not the dashboard)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datamodules.images.synthetic import write_synthetic_cifar10
from experiments.__main__ import cli
from experiments.dashboard import panel_keys
from experiments.registry import experiment_system, get_system
from experiments.run import compose_experiment, train
from tests.e2e.alphagan.test_alphagan_retrain import TINY as RETRAIN_TINY
from tests.e2e.alphagan.test_alphagan_search import TINY as GAN_TINY
from tests.e2e.conftest import TINY
from tests.helpers.face import synthetic_voca
from tests.helpers.face import tiny as face_tiny
from tests.helpers.wandb_records import finished_run_records

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = [w for w in TINY if not w.startswith("logger.wandb.mode")]


def _kinds(records, kind):
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def logged_keys(records) -> set[str]:
    """Every key a run logged: scalars, and media by their key (``<key>/_type`` in history)."""
    keys = set()
    for history in _kinds(records, "history"):
        for item in history.item:
            key = item.key or "/".join(item.nested_key)
            keys.add(key[: -len("/_type")] if key.endswith("/_type") else key)
    return keys


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sst_dir):
    """One tiny offline run of each system: ``experiment -> wandb records``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DISABLE_CODE", "true")
    out = tmp_path_factory.mktemp("wandb-runs")
    gan = out / "cifar"
    write_synthetic_cifar10(gan, n_train=128, n_test=32, seed=0)
    voca = synthetic_voca(tmp_path_factory)
    words = {
        "textnas_train_sst2": [*TEXT, f"data.root={sst_dir}"],
        "textnas_search_synthetic": [
            *(w for w in TEXT if not w.startswith("model.")),
            "supernet.width=8",
            "search.derive_samples=2",
            f"data.root={sst_dir}",
            "logger.wandb.group=pipeline-7",
            "logger.wandb.job_type=search",
        ],
        "alphagan_search_synthetic": [
            *(w for w in GAN_TINY if not w.startswith("logger")),
            f"data.root={gan}",
        ],
        "alphagan_train_synthetic": [
            *(w for w in RETRAIN_TINY if not w.startswith("logger")),
            f"data.root={gan}",
        ],
        "dualtalker_synthetic": [
            w
            for w in face_tiny(
                out, voca, "trainer.max_epochs=1", "render.every_n_val=1", "render.val_size=64"
            )
            if not w.startswith("logger")
        ],
    }
    try:
        done = {}
        for experiment, overrides in words.items():
            result = train(experiment, [*overrides, f"output_dir={out}"])
            done[experiment] = finished_run_records(result.run_dir)
            done[experiment, "overrides"] = overrides
        yield done
    finally:
        mp.undo()


def test_search_run_defines_its_summaries_and_logs_config_and_architecture(runs):
    records = runs["textnas_search_synthetic"]
    metrics = {m.name: m.summary for m in _kinds(records, "metric") if m.name}
    assert metrics["search/reward"].max and not metrics["search/reward"].min
    assert metrics["val/acc"].max
    artifacts = {a.type: a for a in _kinds(records, "artifact")}
    assert {"config", "architecture"} <= set(artifacts)
    assert {e.path for e in artifacts["architecture"].manifest.contents} == {"architecture.yaml"}
    run = _kinds(records, "run")[0]
    assert run.run_group == "pipeline-7" and run.job_type == "search"


@pytest.mark.parametrize(
    ("experiment", "key", "goal"),
    [
        ("textnas_train_sst2", "val/acc", "max"),
        ("alphagan_search_synthetic", "search/duality_gap", "min"),
        ("dualtalker_synthetic", "val/lve", "min"),
        ("alphagan_train_synthetic", "val/fid_holdout_standin_40", "min"),
    ],
)
def test_headline_metric_is_summarised_in_its_direction(runs, experiment, key, goal):
    metrics = {m.name: m.summary for m in _kinds(runs[experiment], "metric") if m.name}
    assert getattr(metrics[key], goal) and not getattr(
        metrics[key], {"max": "min"}.get(goal, "max")
    )
    assert "config" in {a.type for a in _kinds(runs[experiment], "artifact")}


@pytest.mark.parametrize(
    "experiment",
    [
        "textnas_train_sst2",
        "textnas_search_synthetic",
        "alphagan_search_synthetic",
        "alphagan_train_synthetic",
        "dualtalker_synthetic",
    ],
)
def test_every_dashboard_key_is_logged(runs, experiment):
    spec, cfg = compose_experiment(experiment, runs[experiment, "overrides"])
    shown = panel_keys(spec.dashboard(cfg))
    missing = shown - logged_keys(runs[experiment])
    assert not missing, f"{experiment}: panels show keys the run never logs: {sorted(missing)}"


def test_every_system_has_a_dashboard_and_dry_run_prints_it(capsys):
    for name in (
        "textnas_train",
        "textnas_search",
        "alphagan_search",
        "alphagan_train",
        "dualtalker",
    ):
        assert get_system(name).dashboard is not None, name
    assert cli(["dashboard", "dualtalker_voca", "dry_run=true", "logger.wandb.entity=lab"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["entity"] == "lab" and data["workspace"]["entity"] == "lab"
    assert experiment_system("dualtalker_voca") in data["name"]
    sections = [
        s["name"] for s in data["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]
    ]
    assert sections == [s["name"] for s in data["sections"]]


def test_dashboard_without_login_says_what_to_do(capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert cli(["dashboard", "textnas_train_sst2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: dashboard") and "dry_run=true" in err[-1]


def test_loss_monitor_is_summarised_by_its_minimum(tmp_path, sst_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = train(
        "textnas_train_sst2",
        [
            *TEXT,
            f"data.root={sst_dir}",
            f"output_dir={tmp_path}",
            "checkpoint.monitor=val/loss",
            "checkpoint.mode=min",
        ],
    )
    metrics = {
        m.name: m.summary for m in _kinds(finished_run_records(result.run_dir), "metric") if m.name
    }
    assert metrics["val/loss"].min and not metrics["val/loss"].max
    assert metrics["val/acc"].max  # the system's headline metric, whatever is monitored
    assert Path(result.run_dir, "config.yaml").is_file()
