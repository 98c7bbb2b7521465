"""An offline wandb run, read back from its own files: the headline metric summarised in its
direction (``define_metric``), the resolved config and the derived architecture as artifacts,
the group and job type."""

from __future__ import annotations

import pytest

from experiments.run import train
from tests.e2e.conftest import TINY
from tests.helpers.wandb_records import finished_run_records


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")


def _kinds(records, kind):
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def test_search_run_defines_its_summaries_and_logs_config_and_architecture(
    tmp_path, sst_dir, offline_wandb
):
    words = [w for w in TINY if not w.startswith(("model.", "logger.wandb.mode"))]
    result = train(
        "textnas_search_synthetic",
        [
            *words,
            "supernet.width=8",
            "search.derive_samples=2",
            f"data.root={sst_dir}",
            f"output_dir={tmp_path}",
            "logger.wandb.group=pipeline-7",
            "logger.wandb.job_type=search",
        ],
    )
    records = finished_run_records(result.run_dir)
    metrics = {m.name: m.summary for m in _kinds(records, "metric") if m.name}
    assert metrics["search/reward"].max and not metrics["search/reward"].min
    assert metrics["val/acc"].max
    artifacts = {a.type: a for a in _kinds(records, "artifact")}
    assert {"config", "architecture"} <= set(artifacts)
    paths = {e.path for e in artifacts["architecture"].manifest.contents}
    assert paths == {"architecture.yaml"}
    run = _kinds(records, "run")[0]
    assert run.run_group == "pipeline-7" and run.job_type == "search"


def test_loss_monitor_is_summarised_by_its_minimum(tmp_path, sst_dir, offline_wandb):
    words = [w for w in TINY if not w.startswith("logger.wandb.mode")]
    result = train(
        "textnas_train_sst2",
        [
            *words,
            f"data.root={sst_dir}",
            f"output_dir={tmp_path}",
            "checkpoint.monitor=val/loss",
            "checkpoint.mode=min",
        ],
    )
    records = finished_run_records(result.run_dir)
    metrics = {m.name: m.summary for m in _kinds(records, "metric") if m.name}
    assert metrics["val/loss"].min and not metrics["val/loss"].max
    assert metrics["val/acc"].max  # the system's headline metric, whatever is monitored
    assert "config" in {a.type for a in _kinds(records, "artifact")}
