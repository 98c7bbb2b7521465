"""TextNAS training-step benchmark (``make bench``).

The configuration is the one the reference implementation was timed on (issue: "Speed"):
the released 24-layer architecture, 5 classes, batch 32, length 64 with no padding, a trainable
20,000 x 300 embedding, fp32; one step = zero_grad, forward, cross-entropy, backward, global
gradient clipping at 5, Adam (lr 5e-3, eps 1e-3, weight decay 2e-6); the median of 10 steps after
2 warm-ups. Widths 32 and 256. On a CUDA machine it adds bf16 autocast at C=256, batch 128.

    python -m benchmarks.textnas [--threads 2] [--steps 10] [--out benchmarks/results/textnas.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.machine import describe_machine, peak_memory_mb, reset_peak_memory
from experiments.allocator import keep_freed_memory
from search_spaces.text import Architecture, TextNASClassifier, TextNASEncoder, TextNASOptions
from search_spaces.text.network import count_parameters

REFERENCE_SECONDS_PER_STEP = {32: 0.14, 256: 0.71}  # the 2-core CPU measurements
REFERENCE_SUPERNET_SECONDS_PER_STEP = {32: 0.125, 256: 0.60}  # supernet step, same machine


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


def time_steps(step: Callable[[], float], warmup: int, steps: int, device: str) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


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
) -> dict:
    """Median step time of ``rounds`` rounds of ``steps`` steps each (after ``warmup`` steps).

    The headline figure is the fastest round's median: on a shared 2-core machine another
    process can slow a whole round down; every round's median is kept in the JSON too.
    """
    torch.manual_seed(0)
    arch = Architecture.released()
    options = TextNASOptions(width=width)
    model = TextNASClassifier(TextNASEncoder(arch, vocab, options), num_classes).to(device).train()
    step = make_step(model, batch, length, vocab, num_classes, device, autocast_dtype)
    reset_peak_memory(device)
    round_times = [time_steps(step, warmup if i == 0 else 0, steps, device) for i in range(rounds)]
    round_medians = [statistics.median(t) for t in round_times]
    times = [t for r in round_times for t in r]
    median = min(round_medians)
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
        "precision": "fp32"
        if autocast_dtype is None
        else str(autocast_dtype).split(".")[-1] + "-mixed",
        "params_total": count_parameters(model, exclude_embedding=False),
        "params_no_embedding": count_parameters(model),
        "seconds_per_step_median": median,
        "seconds_per_step_round_medians": round_medians,
        "seconds_per_step_median_all_rounds": statistics.median(times),
        "seconds_per_step_all": times,
        "steps_per_s": 1.0 / median,
        "samples_per_s": batch / median,
        "peak_memory_mb": peak_memory_mb(device),
    }
    ref = REFERENCE_SECONDS_PER_STEP.get(width)
    if ref is not None and device == "cpu" and autocast_dtype is None and batch == 32:
        entry["reference_seconds_per_step"] = ref
        entry["speedup_vs_reference"] = ref / median
    return entry


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
) -> list[dict]:
    """Supernet steps (all 8 ops per layer, 24 layers): one random architecture fixed while
    timing (the reference's configuration), a new random architecture every step, and one
    ENAS controller step (sample, score the sample on a batch in eval mode, REINFORCE, Adam)."""
    from lightning_modules.textnas.controller import EnasController
    from search_spaces.text import RandomStrategy, TextNASSupernet

    torch.manual_seed(0)
    supernet = TextNASSupernet(vocab, num_layers=24, k=5, options=TextNASOptions(width=width),
                               num_classes=num_classes).train()  # fmt: skip
    strategy = RandomStrategy(24, k=5)
    gen = torch.Generator().manual_seed(0)
    fixed = strategy.sample(gen)
    common = {"width": width, "batch_size": batch, "length": length, "vocab": vocab,
              "num_classes": num_classes, "device": "cpu", "precision": "fp32",
              "params_total": count_parameters(supernet, exclude_embedding=False),
              "params_no_embedding": count_parameters(supernet)}  # fmt: skip
    entries = []
    for name, arch_fn in (
        ("fixed_arch", lambda: fixed),
        ("new_arch_each_step", lambda: strategy.sample(gen)),
    ):
        step = make_step(supernet, batch, length, vocab, num_classes, "cpu", architecture=arch_fn)
        rounds_t = [time_steps(step, warmup if i == 0 else 0, steps, "cpu") for i in range(rounds)]
        medians = [statistics.median(t) for t in rounds_t]
        median = min(medians)
        entry = {"name": f"textnas_supernet_C{width}_{name}", **common,
                 "seconds_per_step_median": median, "seconds_per_step_round_medians": medians,
                 "steps_per_s": 1 / median, "samples_per_s": batch / median,
                 "peak_memory_mb": peak_memory_mb("cpu")}  # fmt: skip
        ref = REFERENCE_SUPERNET_SECONDS_PER_STEP.get(width)
        if ref is not None and batch == 32:
            entry["reference_seconds_per_step"] = ref
            entry["speedup_vs_reference"] = ref / median
        entries.append(entry)

    controller = EnasController(num_layers=24, k=5, num_ops=8)
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
        loss, baseline[0], _ = controller.reinforce_step(sample, reward, baseline[0])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controller.parameters(), 5.0)
        opt.step()
        return float(loss.detach())

    times = time_steps(controller_step, 2, controller_steps, "cpu")
    median = statistics.median(times)
    entries.append({"name": f"textnas_controller_step_C{width}", **common,
                    "seconds_per_step_median": median, "steps_per_s": 1 / median,
                    "samples_per_s": batch / median, "peak_memory_mb": peak_memory_mb("cpu")})  # fmt: skip
    return entries


def main(argv: list[str] | None = None) -> dict:
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
        help="rounds of --steps steps; the fastest round's median is reported",
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--out", default="benchmarks/results/textnas.json")
    parser.add_argument("--skip-search", action="store_true", help="only the retrain step")
    parser.add_argument(
        "--no-allocator-tuning",
        action="store_true",
        help="leave glibc's allocator at its defaults (experiments/allocator.py)",
    )
    args = parser.parse_args(argv)

    tuned = False if args.no_allocator_tuning else keep_freed_memory()
    torch.set_num_threads(args.threads)
    results = []
    for width in args.widths:
        entry = bench_retrain(width, warmup=args.warmup, steps=args.steps, rounds=args.rounds)
        results.append(entry)
        print(_line(entry), flush=True)
    if not args.skip_search:
        for width in args.widths:
            for entry in bench_search(
                width, warmup=args.warmup, steps=args.steps, rounds=args.rounds
            ):
                results.append(entry)
                print(_line(entry), flush=True)
    if torch.cuda.is_available():
        entry = bench_retrain(
            256, batch=128, device="cuda", autocast_dtype=torch.bfloat16, warmup=5, steps=20
        )
        results.append(entry)
        print(_line(entry), flush=True)

    machine = {**describe_machine(args.threads), "glibc_keep_freed_memory": tuned}
    report = {"machine": machine, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


def _line(entry: dict) -> str:
    text = (
        f"{entry['name']:<40} {entry['device']:<5} batch {entry['batch_size']:<4} "
        f"{entry['seconds_per_step_median'] * 1000:8.1f} ms/step  {entry['samples_per_s']:8.1f} samples/s  "
        f"peak {entry['peak_memory_mb']:.0f} MB"
    )
    if "speedup_vs_reference" in entry:
        text += f"  ({entry['speedup_vs_reference']:.2f}x the reference's {entry['reference_seconds_per_step']} s)"
    return text


if __name__ == "__main__":
    main()
