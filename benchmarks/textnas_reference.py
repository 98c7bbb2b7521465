"""The reference (NNI's TextNAS) beside this suite's TextNAS steps, for ``benchmarks.textnas``:
the stored figures of other days (printed with their date, never divided by a figure of
today's run) and ``--reference``, the reference harness and this suite's steps alternating in
one run, with ratios within a round only."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.textnas import make_step, retrain_model, supernet_model, time_variants
from search_spaces.text import Architecture

PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "textnas_step.py"

#: Reference (NNI TextNAS) step times measured on other days, for orientation only: never
#: divided by a figure of this run. Seconds per step, median of 10 after 2 warm-ups.
STORED_REFERENCE = [
    {
        "label": "measured on 2026-11-24 with the reference harness textnas_step.py "
        "(NNI TextNAS child step, median of 10 after 2 warm-ups, 2 threads), 2-core AMD EPYC VM",
        "retrain_released": {32: 0.138, 256: 0.713},  # w*_final_arc
        "supernet_random": {32: 0.125, 256: 0.596},  # w*_random (seed 0)
    },
    {
        "label": "measured on 2026-12-01 with the reference harness textnas_step.py "
        "(same protocol; median of the run medians: 2 runs final_arc, 4 runs random), "
        "2-core AMD EPYC VM, 1.6-2x slower than on 2026-11-24",
        "retrain_released": {32: 0.246, 256: 1.41},
        "supernet_random": {32: 0.190, 256: 1.07},
    },
]


def run_reference(widths: list[int], steps: int, warmup: int, arch_out: Path) -> dict:
    """One run of the reference harness in a child process (both widths, the random and the
    released architecture); its random architecture is written to ``arch_out``."""
    env = dict(os.environ)
    env.update(
        TN_WIDTHS=",".join(map(str, widths)),
        TN_ARCHS="final_arc,random",
        TN_STEPS=str(steps),
        TN_WARMUP=str(warmup),
        TN_DUMP_ARCH=str(arch_out),
    )
    proc = subprocess.run(
        [sys.executable, str(PEER_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reference harness failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_reference(widths: list[int], rounds: int, steps: int, warmup: int) -> dict:
    """Reference and suite alternating, ``rounds`` times: the reference harness (a child
    process), then this suite's retrain step (released = the reference's final_arc.json) and
    fixed-architecture supernet step on the reference's random architecture, switch on. Each
    ratio divides figures of the same round; the summary gives their range."""
    if not PEER_SCRIPT.is_file() or not os.environ.get("PEER_SRC"):
        raise RuntimeError(
            f"--reference needs the harness {PEER_SCRIPT} and PEER_SRC "
            "(a checkout of NNI's TextNAS example)"
        )
    pairs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        arch_file = Path(tmp) / "random_arch.json"
        for r in range(rounds):
            ref = run_reference(widths, steps, warmup, arch_file)["results"]
            arch = Architecture.load_any(arch_file)  # NNI JSON
            for width in widths:
                model = retrain_model(width, 20_000, 5, "cpu")
                step = make_step(model, 32, 64, 20_000, 5, "cpu")
                ours = time_variants(step, ["on"], warmup, steps, 1)["on"]
                _pair(pairs, f"retrain_released_C{width}", r, ref[f"w{width}_final_arc"], ours)
                net = supernet_model(width, 20_000, 5)
                step = make_step(net, 32, 64, 20_000, 5, "cpu", architecture=lambda a=arch: a)
                ours = time_variants(step, ["on"], warmup, steps, 1)["on"]
                _pair(
                    pairs,
                    f"supernet_reference_random_arch_C{width}",
                    r,
                    ref[f"w{width}_random"],
                    ours,
                )
                print(f"  round {r + 1}: {_pair_line(pairs, width)}", flush=True)
    summary = {}
    for name, rs in pairs.items():
        ratios = [p["speedup"] for p in rs]
        summary[name] = {
            "reference_seconds_per_step": [p["reference_seconds_per_step"] for p in rs],
            "suite_seconds_per_step": [p["suite_seconds_per_step"] for p in rs],
            "speedup_per_round": ratios,
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
            "speedup_of_medians": statistics.median(p["reference_seconds_per_step"] for p in rs)
            / statistics.median(p["suite_seconds_per_step"] for p in rs),
        }
    return {
        "protocol": f"{rounds} rounds, each: reference harness {PEER_SCRIPT.name} (child process, "
        f"median of {steps} after {warmup} warm-ups), then this suite's step (median of {steps} "
        f"after {warmup} warm-ups, CPU kernels on); ratios within a round only",
        "pairs": summary,
    }


def _pair(pairs: dict, name: str, r: int, ref: dict, ours: dict) -> None:
    suite = statistics.median(ours["seconds_per_step_all"])
    pairs.setdefault(name, []).append(
        {
            "round": r,
            "reference_seconds_per_step": ref["median_step_s"],
            "suite_seconds_per_step": suite,
            "speedup": ref["median_step_s"] / suite,
        }
    )


def _pair_line(pairs: dict, width: int) -> str:
    parts = []
    for name in (f"retrain_released_C{width}", f"supernet_reference_random_arch_C{width}"):
        p = pairs[name][-1]
        parts.append(
            f"{name}: reference {p['reference_seconds_per_step'] * 1000:.0f} ms, "
            f"suite {p['suite_seconds_per_step'] * 1000:.0f} ms, {p['speedup']:.2f}x"
        )
    return "; ".join(parts)
