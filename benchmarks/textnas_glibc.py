"""glibc's allocator tuning (``experiments/allocator.py``) off and on, A/B, for
``benchmarks.textnas --glibc-compare N``: child processes of the bench alternate."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def bench_glibc(pairs: int, args: argparse.Namespace) -> dict:
    """Child processes of this bench, glibc tuning off and on alternately, ``pairs`` times;
    each times every step with the CPU kernels on (one round). Per step: the median step time
    of each child and the saving of the tuning (medians over the children)."""
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            for tuned in ("0", "1"):
                out = Path(tmp) / f"child_{i}_{tuned}.json"
                cmd = [
                    sys.executable,
                    "-m",
                    "benchmarks.textnas",
                    "--threads",
                    str(args.threads),
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--rounds",
                    "1",
                    "--widths",
                    *map(str, args.widths),
                    "--variants",
                    "on",
                    "--no-reference",
                    "--glibc-compare",
                    "0",
                    "--out",
                    str(out),
                ]
                cmd += ["--skip-search"] if args.skip_search else []
                env = {**os.environ, "SUITE_GLIBC_TUNING": tuned}
                subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                report = json.loads(out.read_text())
                assert report["machine"]["glibc_tuning_applied"] == (tuned == "1")
                for entry in report["results"]:
                    times = figures.setdefault(entry["name"], {"off": [], "on": []})
                    times["on" if tuned == "1" else "off"].append(entry["seconds_per_step_median"])
    summary = {}
    for name, t in figures.items():
        off, on = statistics.median(t["off"]), statistics.median(t["on"])
        summary[name] = {
            "tuning_off_seconds_per_step": t["off"],
            "tuning_on_seconds_per_step": t["on"],
            "saving": 1.0 - on / off,
        }
    return {
        "protocol": f"{pairs} pairs of child processes (tuning off, then on), one round of "
        f"{args.steps} steps each",
        "steps": summary,
    }
