"""`make bench` runs and writes its JSON (tiny sizes here; the real figures come from make bench)."""

from __future__ import annotations

import json

import torch

from benchmarks import textnas


def test_bench_writes_json_with_machine_and_figures(tmp_path) -> None:
    out = tmp_path / "textnas.json"
    threads = torch.get_num_threads()
    try:
        report = textnas.main(["--widths", "8", "--steps", "2", "--warmup", "1", "--rounds", "1",
                               "--out", str(out)])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(report))
    assert {"cpu", "torch", "torch_threads", "glibc_keep_freed_memory"} <= set(data["machine"])
    entry = data["results"][0]
    assert entry["width"] == 8 and entry["batch_size"] == 32 and entry["length"] == 64
    assert entry["seconds_per_step_median"] > 0
    assert entry["samples_per_s"] == 32 / entry["seconds_per_step_median"]
    assert entry["params_total"] - entry["params_no_embedding"] == 20_000 * 300
    names = [e["name"] for e in data["results"]]
    assert names == ["textnas_retrain_released_C8", "textnas_supernet_C8_fixed_arch",
                     "textnas_supernet_C8_new_arch_each_step", "textnas_controller_step_C8"]  # fmt: skip
    supernet = data["results"][1]
    # All 8 ops in each of 24 layers: far more parameters than the released fixed network.
    assert supernet["params_no_embedding"] > 4 * entry["params_no_embedding"]
