"""TextNAS training-step benchmark (``make bench``).

The configuration is the one the reference implementation was timed on: 24 layers, 5 classes,
batch 32, length 64 with no padding, a trainable 20,000 x 300 embedding, fp32 on CPU; one step =
zero_grad, forward, cross-entropy, backward, global gradient clipping at 5, Adam (lr 5e-3,
eps 1e-3, weight decay 2e-6). Widths 32 and 256. Steps timed: the retrain step of the released
architecture, the supernet step (all 8 ops in each layer) with one random architecture fixed
and with a new one every step, and one ENAS controller step.

Every step is timed with the CPU-kernel switch on and off (``search_spaces/text/cpu_kernels.py``)
and, for the retrain and fixed-architecture supernet steps, with each CPU path off alone, the
variants alternating step by step on the same model; the JSON gives each path's saving as a
fraction of its step. ``--glibc-compare N`` (default 2) times N pairs of child processes with
glibc's allocator tuning off and on (``experiments/allocator.py``), alternating.

Reference figures (``benchmarks/textnas_reference.py``): ``--reference`` (or
``SUITE_BENCH_REFERENCE=1``) runs the reference implementation's step harness (``PEER_SCRIPT``,
kept outside this repository; ``PEER_SRC`` is a checkout of NNI's TextNAS example) in child
processes alternating with this suite's steps in the same run, on the same random architecture
(the harness writes it with ``TN_DUMP_ARCH``), and prints those same-run ratios. Without it
the bench prints the stored reference figures with the date and way they were measured, and
no ratio: these machines drift by up to 2x between days. The glibc A/B:
``benchmarks/textnas_glibc.py``.

    python -m benchmarks.textnas [--threads 2] [--steps 10] [--rounds 3] [--reference]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.machine import describe_machine, peak_memory_mb, reset_peak_memory, time_steps
from experiments.allocator import glibc_tuning_requested, keep_freed_memory
from search_spaces.text import (
    Architecture,
    TextNASClassifier,
    TextNASEncoder,
    TextNASOptions,
    cpu_kernels,
)
from search_spaces.text.network import count_parameters

# ------------------------------------------------------------------------- switch variants


@contextlib.contextmanager
def _variant(name: str) -> Iterator[None]:
    """``on``: every CPU path; ``off``: stock ops; ``without_<path>``: all but one path."""
    before = cpu_kernels._override
    cpu_kernels.set_enabled(name != "off")
    try:
        if name.startswith("without_"):
            with cpu_kernels.without(name[len("without_") :]):
                yield
        else:
            yield
    finally:
        cpu_kernels.set_enabled(before)


def ablation_variants() -> list[str]:
    return ["on", "off", *(f"without_{p}" for p in cpu_kernels.PATHS)]


# ------------------------------------------------------------------------------- timing


def make_step(
    model: torch.nn.Module,
    batch: int,
    length: int,
    vocab: int,
    num_classes: int,
    device: str,
    autocast_dtype: torch.dtype | None = None,
    architecture: Callable[[], object] | None = None,
) -> Callable[[], float]:
    """One training step of the reference recipe on a fixed random batch; returns the loss.

    ``architecture``: for a supernet, called every step for the architecture to train.
    """
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(2, vocab, (batch, length), generator=gen).to(device)
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    labels = torch.randint(0, num_classes, (batch,), generator=gen).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, eps=1e-3, weight_decay=2e-6, fused=True)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(
            device_type=device.split(":")[0],
            dtype=autocast_dtype,
            enabled=autocast_dtype is not None,
        ):
            logits = model(ids, mask) if architecture is None else model(ids, mask, architecture())
        loss = F.cross_entropy(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0, foreach=True)
        opt.step()
        return loss.item()

    return step


def time_variants(
    step: Callable[[], float],
    variants: list[str],
    warmup: int,
    steps: int,
    rounds: int,
    device: str = "cpu",
) -> dict[str, dict]:
    """``rounds`` rounds of ``steps`` cycles; a cycle times one step of each variant in turn
    (after ``warmup`` untimed cycles), so every variant sees the same load on a shared machine.
    Per variant: the median step time of each round, the fastest round's median (the headline:
    another process can slow a whole round down) and every step time; per variant but the first,
    ``paired_ratio``: the median over cycles of (first variant's step time / this variant's)."""
    for _ in range(warmup):
        for v in variants:
            with _variant(v):
                step()
    times: dict[str, list[list[float]]] = {v: [] for v in variants}
    for _ in range(rounds):
        for v in variants:
            times[v].append([])
        for _ in range(steps):
            for v in variants:
                with _variant(v):
                    times[v][-1].extend(time_steps(step, 0, 1, device))
    out = {}
    first = [t for r in times[variants[0]] for t in r]
    for v, rs in times.items():
        medians = [statistics.median(t) for t in rs]
        flat = [t for r in rs for t in r]
        out[v] = {
            "seconds_per_step_median": min(medians),
            "seconds_per_step_round_medians": medians,
            "seconds_per_step_all": flat,
        }
        if v != variants[0]:
            out[v]["paired_ratio"] = statistics.median(a / b for a, b in zip(first, flat))
    return out


def _summarise(entry: dict, timed: dict[str, dict], batch: int) -> dict:
    """The switch-on figure as the entry's headline, the others under ``cpu_kernels``, and what
    the switch and each path save as a fraction of the step without it: 1 - the median over
    cycles of (step time with it / step time without it)."""
    on = timed["on"]["seconds_per_step_median"]
    entry.update(timed["on"])
    entry["steps_per_s"] = 1.0 / on
    entry["samples_per_s"] = batch / on
    keys = ("seconds_per_step_median", "seconds_per_step_round_medians", "paired_ratio")
    entry["cpu_kernels"] = {v: {k: t[k] for k in keys if k in t} for v, t in timed.items()}
    if "off" in timed:
        entry["stock_ops_seconds_per_step"] = timed["off"]["seconds_per_step_median"]
        entry["cpu_kernels_saving"] = 1.0 - timed["off"]["paired_ratio"]
    savings = {}
    for v, t in timed.items():
        if v.startswith("without_"):
            savings[v[len("without_") :]] = 1.0 - t["paired_ratio"]
    if savings:
        entry["path_saving"] = savings
    return entry


# ------------------------------------------------------------------------------- benches


def retrain_model(width: int, vocab: int, num_classes: int, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    options = TextNASOptions(width=width)
    encoder = TextNASEncoder(Architecture.released(), vocab, options)
    return TextNASClassifier(encoder, num_classes).to(device).train()


def bench_retrain(
    width: int,
    batch: int = 32,
    length: int = 64,
    vocab: int = 20_000,
    num_classes: int = 5,
    device: str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    warmup: int = 2,
    steps: int = 10,
    rounds: int = 3,
    variants: list[str] | None = None,
) -> dict:
    """The released architecture's training step (see :func:`time_variants`)."""
    model = retrain_model(width, vocab, num_classes, device)
    step = make_step(model, batch, length, vocab, num_classes, device, autocast_dtype)
    reset_peak_memory(device)
    if device != "cpu" or variants is None:
        variants = ["on"] if device != "cpu" else ["on", "off"]
    timed = time_variants(step, variants, warmup, steps, rounds, device)
    precision = "fp32" if autocast_dtype is None else f"{str(autocast_dtype).split('.')[-1]}-mixed"
    entry = {
        "name": f"textnas_retrain_released_C{width}"
        + ("" if autocast_dtype is None else f"_{str(autocast_dtype).split('.')[-1]}"),
        "architecture": "released",
        "width": width,
        "batch_size": batch,
        "length": length,
        "vocab": vocab,
        "num_classes": num_classes,
        "device": device,
        "precision": precision,
        "params_total": count_parameters(model, exclude_embedding=False),
        "params_no_embedding": count_parameters(model),
    }
    entry = _summarise(entry, timed, batch)
    entry["peak_memory_mb"] = peak_memory_mb(device)
    return entry


def supernet_model(width: int, vocab: int, num_classes: int):
    from search_spaces.text import TextNASSupernet

    torch.manual_seed(0)
    return TextNASSupernet(
        vocab, num_layers=24, k=5, options=TextNASOptions(width=width), num_classes=num_classes
    ).train()


def bench_search(
    width: int,
    batch: int = 32,
    length: int = 64,
    vocab: int = 20_000,
    num_classes: int = 5,
    warmup: int = 2,
    steps: int = 10,
    rounds: int = 3,
    controller_steps: int = 10,
    variants: list[str] | None = None,
    fixed: Architecture | None = None,
) -> list[dict]:
    """Supernet steps (all 8 ops per layer, 24 layers): one random architecture fixed while
    timing (the reference's configuration; ``fixed``, else one drawn by the suite's random
    strategy), a new random architecture every step, and one ENAS controller step (sample,
    score the sample on a batch in eval mode, REINFORCE, Adam). ``variants`` apply to the
    fixed-architecture step; the others are timed with the switch on and off."""
    from lightning_modules.textnas import controller as enas
    from search_spaces.text import RandomStrategy

    supernet = supernet_model(width, vocab, num_classes)
    strategy = RandomStrategy(24, k=5)
    gen = torch.Generator().manual_seed(0)
    fixed = fixed if fixed is not None else strategy.sample(gen)
    common = {
        "width": width,
        "batch_size": batch,
        "length": length,
        "vocab": vocab,
        "num_classes": num_classes,
        "device": "cpu",
        "precision": "fp32",
        "params_total": count_parameters(supernet, exclude_embedding=False),
        "params_no_embedding": count_parameters(supernet),
    }
    entries = []
    for name, arch_fn, names in (
        ("fixed_arch", lambda: fixed, variants or ["on", "off"]),
        ("new_arch_each_step", lambda: strategy.sample(gen), ["on", "off"]),
    ):
        step = make_step(supernet, batch, length, vocab, num_classes, "cpu", architecture=arch_fn)
        timed = time_variants(step, names, warmup, steps, rounds)
        entry = _summarise({"name": f"textnas_supernet_C{width}_{name}", **common}, timed, batch)
        if name == "fixed_arch":
            entry["architecture"] = fixed.name or "random"
        entry["peak_memory_mb"] = peak_memory_mb("cpu")
        entries.append(entry)

    controller = enas.EnasController(num_layers=24, k=5)
    reinforce = getattr(enas, "reinforce_step", None) or controller.reinforce_step
    opt = torch.optim.Adam(controller.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    labels = torch.randint(0, num_classes, (batch,), generator=g)
    baseline = [0.0]

    def controller_step() -> float:
        sample = controller.sample(g)
        supernet.eval()
        with torch.no_grad():
            reward = (supernet(ids, mask, sample.architecture).argmax(-1) == labels).float().mean()
        supernet.train()
        loss, baseline[0], _ = reinforce(sample, reward, baseline[0])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controller.parameters(), 5.0)
        opt.step()
        return float(loss.detach())

    timed = time_variants(controller_step, ["on", "off"], 2, controller_steps, rounds)
    entry = _summarise({"name": f"textnas_controller_step_C{width}", **common}, timed, batch)
    entry["peak_memory_mb"] = peak_memory_mb("cpu")
    entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    from benchmarks import textnas_glibc, textnas_reference  # they import this module

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (reference: 2)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of --steps steps per variant, alternating; the fastest "
        "round's median is reported",
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--out", default="benchmarks/results/textnas.json")
    parser.add_argument("--skip-search", action="store_true", help="only the retrain step")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="switch variants of the retrain and fixed-architecture supernet "
        "steps: on, off, without_<path> (default: all of them)",
    )
    parser.add_argument(
        "--reference",
        dest="reference",
        action="store_true",
        default=os.environ.get("SUITE_BENCH_REFERENCE", "0") == "1",
        help="time the reference harness alternating with this suite, in this "
        "run (needs PEER_SRC; also SUITE_BENCH_REFERENCE=1)",
    )
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument("--reference-rounds", type=int, default=3)
    parser.add_argument(
        "--glibc-compare",
        type=int,
        default=2,
        metavar="N",
        help="N pairs of child processes with glibc's allocator tuning off/on",
    )
    args = parser.parse_args(argv)

    tuned = keep_freed_memory(cuda=False) if glibc_tuning_requested() else False  # CPU steps
    torch.set_num_threads(args.threads)
    variants = args.variants or ablation_variants()
    results = []
    for width in args.widths:
        entry = bench_retrain(
            width, warmup=args.warmup, steps=args.steps, rounds=args.rounds, variants=variants
        )
        results.append(entry)
        print(_line(entry), flush=True)
    if not args.skip_search:
        for width in args.widths:
            for entry in bench_search(
                width, warmup=args.warmup, steps=args.steps, rounds=args.rounds, variants=variants
            ):
                results.append(entry)
                print(_line(entry), flush=True)
    if torch.cuda.is_available():
        entry = bench_retrain(
            256, batch=128, device="cuda", autocast_dtype=torch.bfloat16, warmup=5, steps=20
        )
        results.append(entry)
        print(_line(entry), flush=True)

    report: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {**describe_machine(args.threads), "glibc_tuning_applied": tuned},
        "results": results,
    }
    report["reference_stored"] = [
        {
            **r,
            "retrain_released": _keys(r["retrain_released"]),
            "supernet_random": _keys(r["supernet_random"]),
        }
        for r in textnas_reference.STORED_REFERENCE
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")  # again after each section below
    if args.reference:
        print("reference side by side (same run, alternating):", flush=True)
        report["reference_same_run"] = textnas_reference.bench_reference(
            [w for w in args.widths if w in (32, 256)],
            args.reference_rounds,
            args.steps,
            args.warmup,
        )
        out.write_text(json.dumps(report, indent=2) + "\n")
        for name, s in report["reference_same_run"]["pairs"].items():
            print(
                f"{name:<40} {s['speedup_of_medians']:.2f}x the reference in this run "
                f"(rounds: {s['speedup_min']:.2f}-{s['speedup_max']:.2f}x)"
            )
    else:
        print(
            "reference figures from other days (no ratio: the machine drifts up to 2x "
            "between days; --reference times it in this run):"
        )
        for r in textnas_reference.STORED_REFERENCE:
            print(f"  {r['label']}:")
            for w in (32, 256):
                print(
                    f"    C={w}: retrain released {r['retrain_released'][w] * 1000:.0f} ms, "
                    f"supernet random arch {r['supernet_random'][w] * 1000:.0f} ms"
                )
    if args.glibc_compare > 0:
        report["glibc_tuning"] = textnas_glibc.bench_glibc(args.glibc_compare, args)
        out.write_text(json.dumps(report, indent=2) + "\n")
        for name, s in report["glibc_tuning"]["steps"].items():
            print(f"glibc tuning {name:<40} saves {s['saving'] * 100:5.1f} % of the step")
    print(f"wrote {out}")
    return report


def _keys(d: dict) -> dict:
    return {f"C{k}": v for k, v in d.items()}


def _line(entry: dict) -> str:
    text = (
        f"{entry['name']:<40} {entry['device']:<5} batch {entry['batch_size']:<4} "
        f"{entry['seconds_per_step_median'] * 1000:8.1f} ms/step  "
        f"{entry['samples_per_s']:8.1f} samples/s  "
        f"peak {entry['peak_memory_mb']:.0f} MB"
    )
    if "stock_ops_seconds_per_step" in entry:
        text += (
            f"  stock ops {entry['stock_ops_seconds_per_step'] * 1000:.1f} ms "
            f"(CPU kernels save {entry['cpu_kernels_saving'] * 100:.1f} %)"
        )
    if "path_saving" in entry:
        text += "  paths: " + ", ".join(
            f"{p} {s * 100:+.1f} %" for p, s in entry["path_saving"].items()
        )
    return text


if __name__ == "__main__":
    main()
