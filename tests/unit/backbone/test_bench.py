"""`make bench` runs and writes its JSON (tiny sizes here; the real figures come from make bench):
every step with the CPU kernels on and off, per-path savings, reference figures only with the
date they were measured, and ratios only against a reference timed in the same run."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import textnas, textnas_reference
from search_spaces.text import cpu_kernels, to_nni_json
from tests.helpers.textnas import random_arch


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _all_keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _all_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _all_keys(v)}
    return set()


def test_bench_writes_json_with_machine_and_figures(tmp_path, keep_threads, capsys) -> None:
    out = tmp_path / "textnas.json"
    report = textnas.main(
        [
            "--widths",
            "8",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--rounds",
            "1",
            "--threads",
            "1",
            "--variants",
            "on",
            "off",
            "--glibc-compare",
            "0",
            "--out",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(report))
    assert {"cpu", "torch", "torch_threads", "glibc_tuning_applied"} <= set(data["machine"])
    entry = data["results"][0]
    assert entry["width"] == 8 and entry["batch_size"] == 32 and entry["length"] == 64
    assert entry["seconds_per_step_median"] > 0
    assert entry["samples_per_s"] == 32 / entry["seconds_per_step_median"]
    assert entry["params_total"] - entry["params_no_embedding"] == 20_000 * 300
    names = [e["name"] for e in data["results"]]
    assert names == [
        "textnas_retrain_released_C8",
        "textnas_supernet_C8_fixed_arch",
        "textnas_supernet_C8_new_arch_each_step",
        "textnas_controller_step_C8",
    ]
    for e in data["results"]:  # every step with the switch on and off
        assert set(e["cpu_kernels"]) == {"on", "off"}, e["name"]
        assert e["stock_ops_seconds_per_step"] == e["cpu_kernels"]["off"]["seconds_per_step_median"]
        assert e["seconds_per_step_median"] == e["cpu_kernels"]["on"]["seconds_per_step_median"]
    supernet = data["results"][1]
    # All 8 ops in each of 24 layers: far more parameters than the released fixed network.
    assert supernet["params_no_embedding"] > 4 * entry["params_no_embedding"]
    # Reference figures from other days: labelled, never divided by this run's figures.
    assert all(r["label"].startswith("measured on 20") for r in data["reference_stored"])
    assert not any("speedup" in k for k in _all_keys(data))
    assert "x the reference" not in capsys.readouterr().out
    assert cpu_kernels._override is None  # the bench leaves the switch as it found it


def test_bench_measures_each_cpu_path_and_the_glibc_tuning(tmp_path, keep_threads) -> None:
    report = textnas.main(
        [
            "--widths",
            "8",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--threads",
            "1",
            "--skip-search",
            "--glibc-compare",
            "1",
            "--out",
            str(tmp_path / "t.json"),
        ]
    )
    entry = report["results"][0]
    assert set(entry["path_saving"]) == set(cpu_kernels.PATHS)
    assert set(entry["cpu_kernels"]) == {"on", "off", *(f"without_{p}" for p in cpu_kernels.PATHS)}
    # The glibc tuning in child processes, off and on (the children check it took effect).
    glibc = report["glibc_tuning"]["steps"]["textnas_retrain_released_C8"]
    assert (
        len(glibc["tuning_off_seconds_per_step"]) == len(glibc["tuning_on_seconds_per_step"]) == 1
    )


def test_reference_ratios_come_from_the_same_run(tmp_path, keep_threads, monkeypatch) -> None:
    """--reference: the harness (faked here) and this suite alternate; each ratio divides the
    figures of one round, and the supernet runs the harness's dumped random architecture."""
    calls = []
    arch = random_arch(24, seed=3)

    def fake_reference(widths, steps, warmup, arch_out):
        calls.append(widths)
        arch_out.write_text(json.dumps(to_nni_json(arch)))
        step = 0.5 * len(calls)  # the reference slows down between rounds
        return {
            "results": {
                f"w{w}_{a}": {"median_step_s": step}
                for w in widths
                for a in ("final_arc", "random")
            }
        }

    seen = []
    original = textnas_reference.make_step

    def spy(model, *args, architecture=None, **kwargs):
        if architecture is not None:
            seen.append(architecture())
        return original(model, *args, architecture=architecture, **kwargs)

    monkeypatch.setattr(textnas_reference, "run_reference", fake_reference)
    monkeypatch.setattr(textnas_reference, "make_step", spy)
    monkeypatch.setenv("PEER_SRC", str(tmp_path))
    harness = tmp_path / "textnas_step.py"  # the faked harness needs no reference checkout
    harness.write_text("")
    monkeypatch.setattr(textnas_reference, "PEER_SCRIPT", harness)
    result = textnas_reference.bench_reference([32], rounds=2, steps=1, warmup=0)
    assert calls == [[32], [32]]
    assert seen and all(a.layers == arch.layers for a in seen)
    pair = result["pairs"]["supernet_reference_random_arch_C32"]
    assert pair["reference_seconds_per_step"] == [0.5, 1.0]
    for ref, ours, ratio in zip(
        pair["reference_seconds_per_step"],
        pair["suite_seconds_per_step"],
        pair["speedup_per_round"],
    ):
        assert ratio == pytest.approx(ref / ours)
