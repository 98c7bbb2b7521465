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
    assert {"cpu", "torch", "torch_threads"} <= set(data["machine"])
    entry = data["results"][0]
    assert entry["width"] == 8 and entry["batch_size"] == 32 and entry["length"] == 64
    assert entry["seconds_per_step_median"] > 0
    assert entry["samples_per_s"] == 32 / entry["seconds_per_step_median"]
    assert entry["params_total"] - entry["params_no_embedding"] == 20_000 * 300
