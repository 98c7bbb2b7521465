"""DualTalker inference benchmark: frames per second and peak memory against the audio's length,
with and without the key/value cache (``python -m benchmarks.dualtalker --inference``).

The network is the training bench's FaceFormer configuration (``benchmarks.dualtalker.build``:
``faceformer-bench`` wav2vec, d 64, one decoder layer, 4 heads, 8 subjects, VOCA's 5023
vertices, 30 fps), in eval mode, fp32, batch 1, on 2 s, 10 s, 60 s and 600 s of Gaussian audio.

- ``cached``: ``DualTalker.predict``, the suite's inference (key/value cache allocated once,
  one bias row per step, wav2vec 2.0 in 20 s windows with 5 s of context beyond 30 s);
- ``uncached``: the same audio tokens, then the decoder re-run on the whole prefix at every
  step (FaceFormer's loop, which also maps the whole prefix to V*3 at every step; here only the
  last frame is mapped, so this is the cache's own effect). Quadratic: by default it stops at
  60 s (``--uncached-max-seconds``);
- ``faceformer``: FaceFormer's own loop (``faceformer.py``, ``predict``): the whole prefix
  re-run and mapped to V*3 at every step, the last frame re-encoded. By default up to 10 s
  (``--faceformer-max-seconds``);
- ``conditions``: an unseen speaker's sequence under all 8 training conditions, as VOCA-Test
  is scored (``DualTalker.predict_conditions``: the audio encoded once, one batched loop),
  against ``per_condition``: 8 ``predict`` calls, FaceFormer's test loop, each re-encoding the
  audio. By default up to 10 s (``--conditions-max-seconds``).

Each case runs in a child process of its own (a warm-up on 1 s first; on the CPU glibc keeps
freed memory, as in the ``render`` command: ``--no-glibc-tuning`` not), which reports its wall
time (the fastest of ``--reps`` runs up to 10 s of audio) and its peak memory above what it
held before the case: on CPU the peak resident set
(``ru_maxrss``) minus the resident set before it, on CUDA ``max_memory_allocated`` minus the
allocated memory before it.

Targets (issue 19): the cache at least 5x faster than no cache at 10 s; 60 s at most about 7x
the 10 s cost; peak memory at most linear in the length. The frozen wav2vec 2.0 CNN is common
to both modes and, in this configuration, half the uncached time at 10 s, so the summary gives
the ratio of the whole prediction and of the decoder loop, the part the cache changes
(``decoder_cpu_seconds``: the case's time less its audio encoder's; docs/benchmarks.md).

    python -m benchmarks.dualtalker --inference [--seconds 2 10 60 600] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.machine import describe_machine

SAMPLE_RATE = 16_000
SECONDS = (2, 10, 60, 600)
MODES = ("cached", "uncached", "faceformer", "conditions", "per_condition")
CONDITIONS = 8  # the training subjects of the bench network


@torch.no_grad()
def uncached_predict(
    net, audio: torch.Tensor, style: torch.Tensor, faceformer: bool = False
) -> torch.Tensor:
    """The decoder re-run on the whole prefix at every step (no key/value cache); with
    ``faceformer`` also the head on the whole prefix at every step, as FaceFormer does."""
    tokens, frames = net.audio_encoder(audio, None, None)
    length = int(frames.max())
    s = net.style(F.one_hot(style, net.num_subjects).float())
    mask = torch.ones(audio.shape[0], length, dtype=torch.bool, device=audio.device)
    inputs, outputs = s[:, None], []
    for t in range(length):
        y = net.decoder(net.ppe(inputs), tokens, mask[:, : t + 1])
        if faceformer:
            vertices = net.head(y)
            last = vertices[:, -1:]
        else:
            outputs.append(y[:, -1:])
            last = net.head(y[:, -1:])
        inputs = torch.cat([inputs, net.motion_encoder(last) + s[:, None]], dim=1)
    return vertices if faceformer else net.head(torch.cat(outputs, dim=1))


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_case(seconds: float, mode: str, device: str, threads: int, reps: int = 1) -> dict:
    """One case in this process (the child's side): the peak memory of the first run, the
    fastest time of ``reps`` runs."""
    from benchmarks.dualtalker import build
    from experiments.allocator import keep_freed_memory

    # as the render command: glibc keeps freed memory on the CPU (SUITE_GLIBC_TUNING=0: not)
    tuned = keep_freed_memory(cuda=device.startswith("cuda"), default=True)
    torch.set_num_threads(threads)
    net = build("faceformer", device).eval()
    g = torch.Generator().manual_seed(0)
    style = torch.tensor([0], device=device)
    template = torch.zeros(1, net.head.out_features, device=device)

    def audio_of(length: float) -> torch.Tensor:
        return (torch.randn(1, int(length * SAMPLE_RATE), generator=g) * 0.1).to(device)

    every = torch.arange(CONDITIONS, device=device)[:, None]

    def run(audio: torch.Tensor) -> torch.Tensor:
        if mode == "cached":
            return net.predict(audio, template, style)[0]
        if mode == "conditions":
            return net.predict_conditions(audio, template, every)[0].flatten(0, 1)
        if mode == "per_condition":
            return torch.cat([net.predict(audio, template, c)[0] for c in every])
        return uncached_predict(net, audio, style, mode == "faceformer") + template[:, None]

    cuda = device.startswith("cuda")

    def timed(fn):
        """(wall seconds, process CPU seconds, result) of one call."""
        start, cpu_start = time.perf_counter(), time.process_time()
        with torch.no_grad():
            out = fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu_start, out

    run(audio_of(1.0))  # warm-up
    audio = audio_of(seconds)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = _resident_mb()
    elapsed, cpu, vertices = timed(lambda: run(audio))
    frames = int(vertices.shape[0] * vertices.shape[1])  # all conditions' frames
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20 - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    del vertices  # the shape is kept above
    for _ in range(reps - 1):  # the fastest of the repetitions: the least disturbed
        again, again_cpu, _ = timed(lambda: run(audio))
        elapsed, cpu = min(elapsed, again), min(cpu, again_cpu)
    # the audio encoder alone (common to every mode), after the peak: the rest is the decoder
    encoder, encoder_cpu = float("inf"), float("inf")
    for _ in range(reps):
        again, again_cpu, _ = timed(lambda: net.audio_encoder(audio, None, None))
        encoder, encoder_cpu = min(encoder, again), min(encoder_cpu, again_cpu)
    return {
        "audio_seconds": seconds,
        "mode": mode,
        "encoder_seconds": encoder,  # wav2vec 2.0 alone: the rest is the decoder loop
        "encoder_cpu_seconds": encoder_cpu,
        "frames": frames,
        "seconds": elapsed,
        "frames_per_s": frames / elapsed,
        "cpu_seconds": cpu,  # all threads of the process: steadier than wall on a busy machine
        "reps": reps,
        "glibc_tuning": tuned,
        "peak_memory_mb": peak,
        "device": device,
    }


def child(seconds: float, mode: str, device: str, threads: int, timeout: float, reps: int) -> dict:
    command = [
        sys.executable,
        "-m",
        "benchmarks.dualtalker_inference",
        "--case",
        str(seconds),
        "--mode",
        mode,
        "--device",
        device,
        "--threads",
        str(threads),
        "--reps",
        str(reps),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"audio_seconds": seconds, "mode": mode, "skipped": f"over {timeout:.0f} s"}
    if done.returncode:
        raise RuntimeError(f"case {seconds} s failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(results: list[dict]) -> dict:
    """The targets' ratios from the measured cases."""
    timed = {(r["mode"], r["audio_seconds"]): r for r in results if "seconds" in r}
    out = {}
    for r in timed.values():
        r["decoder_cpu_seconds"] = r["cpu_seconds"] - r["encoder_cpu_seconds"]
    for clock in ("seconds", "cpu_seconds", "decoder_cpu_seconds"):
        for base, other in (
            ("cached", "uncached"),
            ("cached", "faceformer"),
            ("conditions", "per_condition"),
        ):
            if (base, 10) in timed and (other, 10) in timed:
                out[f"{other}_over_{base}_10s_{clock}"] = (
                    timed[other, 10][clock] / timed[base, 10][clock]
                )
        for mode in ("cached", "uncached"):
            if (mode, 60) in timed and (mode, 10) in timed:
                out[f"{mode}_60s_over_10s_{clock}"] = (
                    timed[mode, 60][clock] / timed[mode, 10][clock]
                )
    for mode in MODES:
        lengths = sorted(s for m, s in timed if m == mode)
        out[f"{mode}_peak_mb_per_audio_s"] = {
            s: timed[mode, s]["peak_memory_mb"] / s for s in lengths
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, nargs="+", default=list(SECONDS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--uncached-max-seconds", type=float, default=60.0)
    parser.add_argument("--faceformer-max-seconds", type=float, default=10.0)
    parser.add_argument("--conditions-max-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per case, seconds")
    parser.add_argument(
        "--no-glibc-tuning",
        action="store_true",
        help="glibc returns freed memory as it does by default (render keeps it on the CPU)",
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="timed runs per case up to 10 s of audio (then 1)"
    )
    parser.add_argument("--out", default="benchmarks/results/dualtalker_inference.json")
    parser.add_argument("--case", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_glibc_tuning:
        os.environ["SUITE_GLIBC_TUNING"] = "0"  # the children inherit it
    if args.case is not None:  # the child
        print(json.dumps(run_case(args.case, args.mode, args.device, args.threads, args.reps)))
        return {}
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe_machine(args.threads),
        "config": "benchmarks.dualtalker.build('faceformer'), eval, fp32, batch 1, 30 fps",
        "results": [],
    }
    limits = {
        "uncached": args.uncached_max_seconds,
        "faceformer": args.faceformer_max_seconds,
        "conditions": args.conditions_max_seconds,
        "per_condition": args.conditions_max_seconds,
    }
    for seconds in args.seconds:
        for mode in args.modes:
            if seconds > limits.get(mode, float("inf")):
                skipped = f"quadratic cost (--{mode}-max-seconds)"
                report["results"].append(
                    {"audio_seconds": seconds, "mode": mode, "skipped": skipped}
                )
                continue
            reps = args.reps if seconds <= 10 else 1
            entry = child(seconds, mode, args.device, args.threads, args.timeout, reps)
            report["results"].append(entry)
            if "seconds" in entry:
                print(
                    f"{entry['mode']:<10} {seconds:6.0f} s audio {entry['frames']:6d} frames "
                    f"{entry['seconds']:8.2f} s (cpu {entry['cpu_seconds']:.2f} s, wav2vec "
                    f"{entry['encoder_cpu_seconds']:.2f} s) "
                    f"{entry['frames_per_s']:9.1f} frames/s "
                    f"peak +{entry['peak_memory_mb']:.0f} MB",
                    flush=True,
                )
            else:
                print(f"{entry['mode']:<10} {seconds:6.0f} s audio skipped: {entry['skipped']}")
    report["summary"] = summarise(report["results"])
    print(json.dumps(report["summary"], indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
