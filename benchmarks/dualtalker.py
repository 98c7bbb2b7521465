"""DualTalker training-step benchmark (``make bench``), side by side with FaceFormer's.

The configuration is the one the reference (EvelynFan/FaceFormer) was timed on with its step
harness (``PEER_SCRIPT`` below, kept outside this repository): wav2vec2-base's config shrunk
to hidden 64, 2 layers, 2 heads, intermediate 128, with the full 7 x 512 CNN, frozen
(``audio_encoder=faceformer-bench``); d = 64, one decoder layer, 4 heads, 8 training subjects,
VOCA's 5023 vertices; 2 s of 16 kHz audio and 60 frames per sequence; MSE; Adam 1e-4; fp32 on CPU
with 2 threads; the median of 20 steps after 3 warm-ups. One step = forward, loss, backward, Adam
step, zero_grad.

Timed here, per training mode (teacher-forced, autoregressive) and batch size (1 and
``--batch``): the FaceFormer configuration (the suite's network with the dual task and the
consistency loss off, exactly the reference's work) and the full DualTalker (lip reader and
consistency loss on). Figures are seconds per step and per sequence, sequences per second and
the process's peak memory. What makes it faster than the reference is the algorithm and the
library's fast paths: the key/value cache of the autoregressive decoder (one new token per step
instead of re-running the prefix), batching several sequences per step, SDPA attention,
the frozen CNN's features cached per sequence, fused Adam.

Reference figures: with ``PEER_SRC`` set (a checkout of FaceFormer's source) the reference
harness runs in a child process, alternating with this suite's steps, ``--rounds`` times; the
JSON holds both figures and the per-sequence ratio of each round. Without it the bench prints
the stored figures of other days, and no ratio.

    python -m benchmarks.dualtalker [--threads 2] [--steps 20] [--warmup 3] [--batch 8] [--rounds 2]

Inference (frames/s and peak memory against the audio's length, with and without the key/value
cache): ``python -m benchmarks.dualtalker --inference``, see ``benchmarks/dualtalker_inference.py``.

Rendering (frames/s of a face video at 800x800 and 256x256, encoding included): ``python -m
benchmarks.dualtalker --render``, see ``benchmarks/dualtalker_render.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.machine import describe_machine, peak_memory_mb, reset_peak_memory, time_steps
from lightning_modules.dualtalker import DualTalker, DualTalkerOptions, compute_losses

PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "faceformer_step.py"
NUM_VERTICES, NUM_SUBJECTS, FPS = 5023, 8, 30
SECONDS, FRAMES, SAMPLE_RATE = 2.0, 60, 16_000

#: Reference step times of other days, for orientation only (never divided by a figure of this
#: run): seconds per step of batch 1, base_conv, median of 20 after 3 warm-ups, 2 threads.
STORED_REFERENCE = [
    {
        "label": "measured on 2026-11-24 with the reference harness faceformer_step.py, "
        "2-core AMD EPYC VM",
        "autoregressive": 0.286,
        "teacher_forcing": 0.058,
    },
]

#: The two networks timed: the reference's work, and DualTalker's.
VARIANTS = {
    "faceformer": dict(dual_target="none", consistency="none"),
    "dualtalker": dict(dual_target="features", consistency="cosine"),
}


def build(variant: str, device: str = "cpu", audio_encoder: str = "faceformer-bench") -> DualTalker:
    """The network of the reference configuration (``variant``: see :data:`VARIANTS`)."""
    torch.manual_seed(0)
    options = DualTalkerOptions(
        audio_encoder=audio_encoder, feature_dim=64, num_layers=1, num_heads=4, **VARIANTS[variant]
    )
    return DualTalker(options, NUM_VERTICES, NUM_SUBJECTS, FPS).to(device).train()


def make_batch(batch: int, device: str = "cpu") -> dict:
    """``batch`` sequences as the reference's: Gaussian audio (x 0.1), a random template
    (x 0.01) and vertices 1 mm around it, subject 0; each sequence has its own audio."""
    g = torch.Generator().manual_seed(0)
    samples = int(SECONDS * SAMPLE_RATE)
    audio = torch.randn(batch, samples, generator=g) * 0.1
    template = torch.randn(batch, NUM_VERTICES * 3, generator=g) * 0.01
    noise = torch.randn(batch, FRAMES, NUM_VERTICES * 3, generator=g)
    out = {
        "audio": audio,
        "audio_mask": torch.ones(batch, samples, dtype=torch.bool),
        "vertices": template[:, None] + 0.001 * noise,
        "frame_mask": torch.ones(batch, FRAMES, dtype=torch.bool),
        "template": template,
        "style": torch.zeros(batch, dtype=torch.long),
    }
    out = {k: v.to(device) for k, v in out.items()}
    out["names"] = [f"bench_{i}" for i in range(batch)]
    return out


def make_step(net: DualTalker, batch: dict, teacher_forcing: bool):
    """One training step (forward, the loss, backward, fused Adam 1e-4, zero_grad)."""
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, fused=True)

    def step() -> float:
        out = net(
            batch["audio"],
            batch["audio_mask"],
            batch["vertices"],
            batch["frame_mask"],
            batch["template"],
            batch["style"],
            names=batch["names"],
            teacher_forcing=teacher_forcing,
        )
        loss = compute_losses(out, net.options)["loss"]
        loss.backward()
        value = loss.item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return value

    return step


def bench_entry(
    variant: str,
    mode: str,
    batch: int,
    warmup: int,
    steps: int,
    device: str = "cpu",
    audio_encoder: str = "faceformer-bench",
) -> dict:
    """One configuration's figures (median step time, per sequence, sequences/s, peak memory)."""
    net = build(variant, device, audio_encoder)
    data = make_batch(batch, device)
    reset_peak_memory(device)
    times = time_steps(make_step(net, data, mode == "teacher_forcing"), warmup, steps, device)
    median = statistics.median(times)
    return {
        "name": f"{variant}_{mode}_batch{batch}",
        "network": variant,
        "mode": mode,
        "batch_size": batch,
        "device": device,
        "precision": "fp32",
        "frames": FRAMES,
        "audio_seconds": SECONDS,
        "seconds_per_step_median": median,
        "seconds_per_sequence": median / batch,
        "sequences_per_s": batch / median,
        "seconds_per_step_all": times,
        "params_total": sum(p.numel() for p in net.parameters()),
        "params_trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "peak_memory_mb": peak_memory_mb(device),
    }


def run_reference(steps: int, warmup: int) -> dict:
    """The reference harness once (base_conv: the full 7 x 512 CNN), in a child process."""
    env = {
        **os.environ,
        "FF_VARIANTS": "base_conv",
        "FF_STEPS": str(steps),
        "FF_WARMUP": str(warmup),
    }
    proc = subprocess.run(
        [sys.executable, str(PEER_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"reference harness failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["results"]["base_conv"]


def bench_reference(rounds: int, steps: int, warmup: int, batch: int) -> dict:
    """Reference and suite alternating: per round the reference harness (both modes, batch 1),
    then this suite's FaceFormer-configuration steps (both modes, batch 1 and ``batch``). Each
    ratio divides the reference's seconds per sequence by the suite's, within one round."""
    if not PEER_SCRIPT.is_file() or not os.environ.get("PEER_SRC"):
        raise RuntimeError(
            f"the reference needs the harness {PEER_SCRIPT} and PEER_SRC (a checkout of FaceFormer)"
        )
    reference_key = {
        "autoregressive": "autoregressive_as_trained",
        "teacher_forcing": "teacher_forcing",
    }
    pairs: dict[str, list[dict]] = {}
    for r in range(rounds):
        ref = run_reference(steps, warmup)
        for mode, key in reference_key.items():
            ref_s, ref_min = ref[key]["median_step_s"], ref[key]["min_step_s"]
            for b in (1, batch):
                ours = bench_entry("faceformer", mode, b, warmup, steps)
                ours_min = min(ours["seconds_per_step_all"]) / b
                pairs.setdefault(f"{mode}_batch{b}", []).append(
                    {
                        "round": r,
                        "reference_seconds_per_sequence": ref_s,
                        "suite_seconds_per_sequence": ours["seconds_per_sequence"],
                        "speedup": ref_s / ours["seconds_per_sequence"],
                        # the fastest step of each side: least disturbed by other processes
                        "reference_min_seconds_per_sequence": ref_min,
                        "suite_min_seconds_per_sequence": ours_min,
                        "speedup_of_fastest_steps": ref_min / ours_min,
                    }
                )
                p = pairs[f"{mode}_batch{b}"][-1]
                print(
                    f"  round {r + 1}: {mode:<15} batch {b:<2} reference "
                    f"{ref_s * 1000:7.1f} ms/seq, "
                    f"suite {p['suite_seconds_per_sequence'] * 1000:7.1f} "
                    f"ms/seq: {p['speedup']:.2f}x (fastest steps: "
                    f"{p['speedup_of_fastest_steps']:.2f}x)",
                    flush=True,
                )
    summary = {}
    for name, rs in pairs.items():
        ratios = [p["speedup"] for p in rs]
        ref_med = statistics.median(p["reference_seconds_per_sequence"] for p in rs)
        ours_med = statistics.median(p["suite_seconds_per_sequence"] for p in rs)
        summary[name] = {
            "reference_seconds_per_sequence": [p["reference_seconds_per_sequence"] for p in rs],
            "suite_seconds_per_sequence": [p["suite_seconds_per_sequence"] for p in rs],
            "speedup_per_round": ratios,
            "speedup_min": min(ratios),
            "speedup_max": max(ratios),
            "speedup_of_medians": ref_med / ours_med,
            "speedup_of_fastest_steps": [p["speedup_of_fastest_steps"] for p in rs],
        }
    return {
        "protocol": f"{rounds} rounds, each: the reference harness {PEER_SCRIPT.name} (child "
        f"process, base_conv, batch 1, median of {steps} after {warmup} warm-ups), then this "
        f"suite's FaceFormer-configuration steps (same protocol); ratios of seconds per sequence "
        "within a round",
        "pairs": summary,
    }


def _line(e: dict) -> str:
    return (
        f"{e['name']:<38} {e['device']:<5} {e['seconds_per_step_median'] * 1000:8.1f} ms/step "
        f"{e['seconds_per_sequence'] * 1000:8.1f} ms/seq {e['sequences_per_s']:7.2f} seq/s  "
        f"peak {e['peak_memory_mb']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--inference" in argv:  # the inference bench: benchmarks/dualtalker_inference.py
        from benchmarks import dualtalker_inference

        return dualtalker_inference.main([a for a in argv if a != "--inference"])
    if "--render" in argv:  # the video bench: benchmarks/dualtalker_render.py
        from benchmarks import dualtalker_render

        return dualtalker_render.main([a for a in argv if a != "--render"])
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (reference: 2)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="the batched configuration's size")
    parser.add_argument("--rounds", type=int, default=2, help="reference/suite alternations")
    parser.add_argument(
        "--reference",
        dest="reference",
        action="store_true",
        default=None,
        help="time the reference in this run (default: when PEER_SRC is set)",
    )
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument(
        "--networks",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="the networks of the standalone section",
    )
    parser.add_argument(
        "--reference-only",
        action="store_true",
        help="only the side-by-side section (its suite steps are the FaceFormer configuration's)",
    )
    parser.add_argument("--out", default="benchmarks/results/dualtalker.json")
    parser.add_argument(
        "--inference", action="store_true", help="the inference bench instead (its own options)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reference = bool(os.environ.get("PEER_SRC")) if args.reference is None else args.reference

    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe_machine(args.threads),
        "config": {
            "audio_encoder": "faceformer-bench (wav2vec2-base config: hidden 64, 2 layers, "
            "2 heads, FFN 128, 7 x 512 CNN frozen)",
            "feature_dim": 64,
            "decoder_layers": 1,
            "heads": 4,
            "subjects": NUM_SUBJECTS,
            "vertices": NUM_VERTICES,
            "frames": FRAMES,
            "audio_seconds": SECONDS,
            "loss": "MSE (+ the dual and consistency terms for dualtalker)",
            "optimizer": "Adam lr 1e-4 (fused)",
            "steps": args.steps,
            "warmup": args.warmup,
            "statistic": "median",
        },
        "results": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for variant in [] if args.reference_only else args.networks:
        for mode in ("teacher_forcing", "autoregressive"):
            for batch in (1, args.batch):
                entry = bench_entry(variant, mode, batch, args.warmup, args.steps)
                report["results"].append(entry)
                print(_line(entry), flush=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if reference:
        print("reference side by side (same run, alternating):", flush=True)
        report["reference_same_run"] = bench_reference(
            args.rounds, args.steps, args.warmup, args.batch
        )
        for name, s in report["reference_same_run"]["pairs"].items():
            print(
                f"{name:<28} {s['speedup_of_medians']:.2f}x the reference per sequence in this "
                f"run (rounds: {s['speedup_min']:.2f}-{s['speedup_max']:.2f}x)"
            )
    else:
        report["reference_stored"] = STORED_REFERENCE
        print(
            "reference figures of other days (no ratio: the machine drifts up to 2x between "
            "days; set PEER_SRC to time the reference in this run):"
        )
        for r in STORED_REFERENCE:
            print(
                f"  {r['label']}: autoregressive {r['autoregressive'] * 1000:.0f} ms, "
                f"teacher-forced {r['teacher_forcing'] * 1000:.0f} ms per sequence"
            )
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
