"""alphaGAN search-step benchmark (``make bench``).

The configuration is the one the reference implementation (yuesongtian/AlphaGAN) was timed on
with its step harness (``PEER_SCRIPT`` below, kept outside this repository): the supernet G at
width 256 (and 64) with latent 128, bottom width 4 and the 6 normal + 3 up-sampling ops; the
AutoGAN D at width 128 with spectral norm; batch 16 of
32x32 images; hinge loss; Adam (2e-4, betas (0, 0.9)) for G and D, the reference's α optimizer
(Adam 3e-4, betas (0.5, 0.999), wd 1e-3); fp32, 2 threads, median of 5 after 1 warm-up.

Timed, with the search module's own networks and step functions
(:class:`~lightning_modules.alphagan.search.AlphaGANSearch`: ``d_loss``, ``g_loss``,
``alpha_step``; plain optimizers instead of Lightning's wrappers, whose overhead is well under
a millisecond a step):

* one **weight iteration**: 5 D steps + 1 G step (D and α frozen during the G step, as the
  module's toggling does);
* one **α step** on the duality gap against worst-case copies built as the module builds them
  (the worst-case phase itself is not timed, as in the reference harness);
* a D_w step and a G_w step alone, for the projection.

Also the peak memory (RSS on CPU, CUDA allocator peak on a GPU) and the projected wall time of
a full alphaGAN(s) and (l) search on this machine (99 epochs of the variants' step counts at
the paper's batch 64, from the batch-16 times scaled by 4; evaluation excluded).

``--reference`` (or ``SUITE_BENCH_REFERENCE=1``) runs the reference harness in a child process
first, in the same session, with ``AG_MODES=anomaly_off`` (needs ``PEER_SRC``, a checkout of
the reference code), and records the ratio reference / suite per width.

``--ablate`` also times each width with ``model.conv=direct`` (the stock 5x5 convolution
instead of the FFT path).

    python -m benchmarks.alphagan [--threads 2] [--reps 5] [--widths 256,64] [--reference]
                                  [--ablate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.machine import describe_machine, peak_memory_mb, reset_peak_memory
from experiments.allocator import glibc_tuning_requested, keep_freed_memory
from lightning_modules.alphagan.config import VARIANTS
from lightning_modules.alphagan.search import AlphaGANSearch

PEER_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "peers" / "alphagan_step.py"
RESULTS = Path(__file__).parent / "results" / "alphagan.json"
BATCH, PAPER_BATCH, EPOCHS = 16, 64, 99


def build(
    width: int, device: str, channels_last: bool = True, fused: bool = True, conv: str = "auto"
) -> AlphaGANSearch:
    model = {
        "width": width,
        "d_width": 128,
        "latent_dim": 128,
        "bottom_width": 4,
        "channels_last": channels_last,
        "conv": conv,
    }
    module = AlphaGANSearch(
        model=model, search={"eval_every": 0, "plots": False}, optim={"fused": fused}, seed=2
    )
    return module.to(device).train()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_it(
    fn: Callable[[], object], warmup: int, reps: int, device: str
) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of ``reps`` calls after ``warmup`` calls.

    CPU seconds (all threads) are the steadier figure on a shared machine: another process
    that takes the cores inflates the wall clock but not the work done."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def steps(module: AlphaGANSearch, device: str) -> dict[str, Callable[[], object]]:
    """The timed steps of ``module`` on fixed random images in [-1, 1]."""
    o = module.optim_cfg
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(BATCH, 3, 32, 32, generator=g).mul(2).sub(1).to(device) for _ in range(6)]
    images = [module._real(x) for x in images]
    G, D = module.generator, module.discriminator
    g_opt = torch.optim.Adam(list(G.weights()), lr=o.g_lr, betas=tuple(o.betas), fused=o.fused)
    d_opt = torch.optim.Adam(D.parameters(), lr=o.d_lr, betas=tuple(o.betas), fused=o.fused)
    a_opt = torch.optim.Adam(
        G.alphas(),
        lr=o.arch_lr,
        betas=tuple(o.arch_betas),
        weight_decay=o.arch_weight_decay,
        fused=o.fused,
    )
    module.worst.refresh(G, D, module.search_cfg.worst_lr, tuple(o.betas))
    frozen = [*D.parameters(), *G.alphas()]

    def d_step(real: torch.Tensor) -> None:
        d_opt.zero_grad(set_to_none=True)
        module.d_loss(real).backward()
        d_opt.step()

    def g_step() -> None:
        for p in frozen:
            p.requires_grad_(False)
        g_opt.zero_grad(set_to_none=True)
        module.g_loss(BATCH).backward()
        g_opt.step()
        for p in frozen:
            p.requires_grad_(True)

    def weight_iteration() -> None:
        for real in images[:5]:
            d_step(real)
        g_step()

    def worst_d() -> None:
        with torch.no_grad():
            fake = G(module.z(BATCH))
        module.worst.d_step(images[5], fake)

    return {
        "weight_iteration": weight_iteration,
        "alpha_step": lambda: module.alpha_step(images[5], a_opt),
        "d_step": lambda: d_step(images[0]),
        "g_step": g_step,
        "worst_d_step": worst_d,
        "worst_g_step": lambda: module.worst.g_step(module.z(BATCH), D),
    }


def projection(t: dict[str, float]) -> dict[str, float]:
    """Hours of a full search (99 epochs, batch 64 = 4x the timed batch, no evaluation)."""
    out = {}
    scale = PAPER_BATCH / BATCH
    for variant, (inner, worst, arch) in VARIANTS.items():
        d_steps = min(inner + 2, 391)  # the train half of CIFAR-10 has 391 batches of 64
        g_steps = d_steps / 5
        w = worst + 2
        per_epoch = (
            d_steps * t["d_step"]
            + g_steps * t["g_step"]
            + w * (t["worst_d_step"] + t["worst_g_step"])
            + arch * t["alpha_step"]
        )
        out[f"alphagan_{variant}_hours"] = round(EPOCHS * per_epoch * scale / 3600, 2)
    return out


def bench_width(width: int, device: str, warmup: int, reps: int, **kw) -> dict:
    torch.manual_seed(0)
    module = build(width, device, **kw)
    reset_peak_memory(device)
    entry: dict = {
        "width": width,
        "d_width": 128,
        "batch_size": BATCH,
        "device": device,
        "precision": "fp32",
        "options": kw,
        "g_supernet_params": sum(p.numel() for p in module.generator.weights()),
        "alpha_params": sum(a.numel() for a in module.generator.alphas()),
    }
    medians = {}
    for name, fn in steps(module, device).items():
        times, cpu = time_it(fn, warmup, reps, device)
        medians[name] = statistics.median(times)
        entry[name] = {
            "median_s": round(medians[name], 4),
            "times_s": [round(x, 4) for x in times],
            "cpu_median_s": round(statistics.median(cpu), 4),
            "cpu_s": [round(x, 4) for x in cpu],
        }
        print(
            f"  width {width} {kw or ''} {name}: {medians[name]:.3f} s", file=sys.stderr, flush=True
        )
    entry["peak_memory_mb"] = round(peak_memory_mb(device), 1)
    entry["projected_full_search"] = projection(medians)
    return entry


def run_reference(
    widths: list[int], threads: int, reps: int, warmup: int, clock: str = "wall"
) -> dict:
    """The reference harness in a child process; ``clock="cpu"`` runs it with its
    ``time.perf_counter`` replaced by ``time.process_time`` (CPU seconds, as this bench's
    ``cpu_median_s``), nothing else changed."""
    if not PEER_SCRIPT.is_file() or not os.environ.get("PEER_SRC"):
        raise SystemExit(
            f"--reference needs the harness {PEER_SCRIPT} and PEER_SRC "
            "(a checkout of yuesongtian/AlphaGAN)"
        )
    env = {
        **os.environ,
        "AG_MODES": "anomaly_off",
        "AG_WIDTHS": ",".join(map(str, widths)),
        "AG_REPS": str(reps),
        "AG_WARMUP": str(warmup),
        "OMP_NUM_THREADS": str(threads),
    }
    patch = "import time; time.perf_counter = time.process_time; " if clock == "cpu" else ""
    code = (
        f"{patch}import runpy, sys; sys.argv = [{str(PEER_SCRIPT)!r}]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    print(
        f"reference harness {PEER_SCRIPT.name} (widths {widths}, anomaly off, {clock} clock) ...",
        file=sys.stderr,
        flush=True,
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"reference harness failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ratios(reference: dict, suite: list[dict], key: str) -> dict:
    out = {}
    for entry in suite:
        ref = reference["results"].get(f"gf{entry['width']}_anomaly_off")
        if ref is None or entry["options"]:
            continue
        ours = {k: entry[k][key] for k in ("weight_iteration", "alpha_step")}
        out[f"width_{entry['width']}"] = {
            "weight_iteration": round(ref["weights_iter_median_s"] / ours["weight_iteration"], 2),
            "alpha_step": round(ref["arch_step_median_s"] / ours["alpha_step"], 2),
            "reference_s": {
                "weight_iteration": ref["weights_iter_median_s"],
                "alpha_step": ref["arch_step_median_s"],
            },
            "suite_s": ours,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--widths", default="256,64")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--reference", action="store_true", default=bool(os.environ.get("SUITE_BENCH_REFERENCE"))
    )
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also time each width with the direct 5x5 convolution (model.conv=direct)",
    )
    parser.add_argument(
        "--reference-clock",
        choices=("both", "wall", "cpu"),
        default="both",
        help="time the reference by wall clock, CPU seconds, or both (two runs)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="time only the retraining iteration (benchmarks/alphagan_retrain.py); merged into "
        "the results file under 'retrain'",
    )
    parser.add_argument(
        "--inception-weights",
        default=None,
        help="torch-fidelity's Inception weights for the feature-throughput figure (default: "
        "random weights of the same network: the same speed)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.retrain:
        from benchmarks.alphagan_retrain import retrain_report

        torch.set_num_threads(args.threads)
        report = json.loads(args.out.read_text()) if args.out.is_file() else {"system": "alphagan"}
        report["retrain"] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": describe_machine(args.threads),
            **retrain_report(
                args.device,
                args.threads,
                args.reps,
                args.warmup,
                args.reference,
                inception_weights=args.inception_weights,
            ),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["retrain"], indent=2))
        return 0
    torch.set_num_threads(args.threads)
    # SUITE_GLIBC_TUNING=1: keep freed memory in the process (experiments/allocator.py)
    glibc = glibc_tuning_requested() and args.device == "cpu" and keep_freed_memory(cuda=False)
    widths = [int(w) for w in args.widths.split(",")]
    report: dict = {
        "system": "alphagan",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": describe_machine(args.threads),
        "glibc_tuning": bool(glibc),
        "protocol": __doc__.split("\n\n")[1],
        "suite": [],
    }
    reference = args.reference and args.device == "cpu"
    clocks = {"both": ("wall", "cpu"), "wall": ("wall",), "cpu": ("cpu",)}[args.reference_clock]
    if reference and "wall" in clocks:  # reference (wall clock), suite, reference (CPU clock)
        report["reference"] = run_reference(widths, args.threads, args.reps, args.warmup)
    for width in widths:
        report["suite"].append(bench_width(width, args.device, args.warmup, args.reps))
        if args.ablate and args.device == "cpu":
            report["suite"].append(
                bench_width(width, args.device, args.warmup, args.reps, conv="direct")
            )
    if reference and "cpu" in clocks:
        report["reference_cpu_clock"] = run_reference(
            widths, args.threads, args.reps, args.warmup, "cpu"
        )
    if reference:
        ratios = {}
        if "reference" in report:
            ratios["wall_clock"] = _ratios(report["reference"], report["suite"], "median_s")
        if "reference_cpu_clock" in report:
            ratios["cpu_seconds"] = _ratios(
                report["reference_cpu_clock"], report["suite"], "cpu_median_s"
            )
        report["speedup_vs_reference_same_session"] = ratios
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {k: v for k, v in report.items() if k in ("speedup_vs_reference_same_session",)},
            indent=2,
        )
    )
    for entry in report["suite"]:
        print(
            f"width {entry['width']} {entry['options'] or ''}: weight iteration "
            f"{entry['weight_iteration']['median_s']:.3f} s, "
            f"α step {entry['alpha_step']['median_s']:.3f} s, "
            f"peak {entry['peak_memory_mb']} MB, projected {entry['projected_full_search']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
