"""``make gpu-check``'s bench: it runs a system's synthetic experiment through the Trainer and
writes steps/s, samples/s and peak memory; on CPU here (``--device cpu``), on CUDA where there
is one; without CUDA the default says so and measures nothing."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_writes_figures_for_a_system(tmp_path, sst_dir, monkeypatch):
    experiment, extra = gpu.EXPERIMENTS["textnas"]
    monkeypatch.setitem(
        gpu.EXPERIMENTS,
        "textnas",
        (experiment, [*extra, f"data.root={sst_dir}", "model.width=8", "model.embed_dim=16"]),
    )
    assert (
        gpu.main(
            [
                "--device",
                "cpu",
                "--steps",
                "3",
                "--warmup",
                "1",
                "--systems",
                "textnas",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "gpu-textnas.json").read_text())
    assert result["timed_steps"] == 3 and result["steps_per_s"] > 0
    assert result["samples_per_s"] == pytest.approx(result["steps_per_s"] * 64, rel=0.01)
    assert result["experiment"] == "textnas_train_synthetic" and result["machine"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_without_cuda_it_measures_nothing(tmp_path, capsys):
    assert gpu.main(["--out", str(tmp_path)]) == 0
    assert "no CUDA device" in capsys.readouterr().out and not any(tmp_path.iterdir())
