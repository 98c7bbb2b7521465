"""The DualTalker inference bench's cases, in this process on 1 s of audio (the figures come
from ``make bench BENCH=dualtalker ARGS=--inference``): every mode predicts the frames of its
audio (all conditions' frames for the two condition modes) and reports its time, its encoder's
time and its peak memory; the summary's ratios divide the right cases."""

from __future__ import annotations

import pytest
import torch

from benchmarks import dualtalker_inference as bench


@pytest.fixture
def keep_threads(monkeypatch):
    """The test process keeps its threads and glibc's defaults (the bench's children tune it)."""
    monkeypatch.setenv("SUITE_GLIBC_TUNING", "0")
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", bench.MODES)
def test_each_mode_predicts_its_frames(mode: str, keep_threads) -> None:
    case = bench.run_case(1.0, mode, "cpu", threads=1, reps=2)
    per_run = bench.CONDITIONS if mode in ("conditions", "per_condition") else 1
    assert case["frames"] == 30 * per_run  # 1 s at 30 fps
    assert case["mode"] == mode and case["reps"] == 2 and case["glibc_tuning"] is False
    assert 0 < case["encoder_seconds"] < case["seconds"] * 1.5
    assert case["peak_memory_mb"] >= 0 and case["frames_per_s"] > 0


def test_summary_ratios_divide_the_right_cases() -> None:
    def case(mode, seconds, total, encoder):
        return {
            "mode": mode,
            "audio_seconds": seconds,
            "seconds": total,
            "cpu_seconds": total,
            "encoder_cpu_seconds": encoder,
            "peak_memory_mb": 10.0 * seconds,
        }

    results = [
        case("cached", 10, 1.2, 1.0),
        case("uncached", 10, 2.0, 1.0),
        case("faceformer", 10, 4.8, 1.0),
        case("conditions", 10, 1.6, 1.0),
        case("per_condition", 10, 9.6, 1.0),
        case("cached", 60, 7.2, 6.0),
        {"mode": "uncached", "audio_seconds": 600, "skipped": "quadratic"},
    ]
    out = bench.summarise(results)
    assert out["uncached_over_cached_10s_seconds"] == pytest.approx(2.0 / 1.2)
    assert out["uncached_over_cached_10s_decoder_cpu_seconds"] == pytest.approx(1.0 / 0.2)
    assert out["faceformer_over_cached_10s_cpu_seconds"] == pytest.approx(4.0)
    assert out["per_condition_over_conditions_10s_seconds"] == pytest.approx(6.0)
    assert out["cached_60s_over_10s_seconds"] == pytest.approx(6.0)
    assert out["cached_peak_mb_per_audio_s"] == {10: 10.0, 60: 10.0}
