"""``make demo``: each registered system's demo part on embedded, generated data, on CPU.

    python -m experiments demo [SYSTEM ...] [key=value ...]

runs the named systems' parts (all of them without a name; ``make demo SYSTEMS=textnas``), in
registry order, with the overrides passed to every run they make (e.g. ``output_dir=...``),
then prints one closing table: what each system trained, its figures, and where to look.
A part is a function ``demo(overrides) -> DemoResult`` registered in
``experiments.registry.DEMOS``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from experiments import registry
from experiments.registry import DemoResult, get_demo


def run_demos(systems: Sequence[str], overrides: Sequence[str]) -> list[DemoResult]:
    """Run the demo parts of ``systems`` (all registered ones if empty), in that order."""
    names = list(systems) or list(registry.DEMOS)
    fns = [get_demo(name) for name in names]  # unknown names fail before anything runs
    results = []
    for fn in fns:
        start = time.perf_counter()
        result = fn(list(overrides))
        result.seconds = result.seconds or time.perf_counter() - start
        results.append(result)
    return results


def closing_table(results: Sequence[DemoResult]) -> str:
    """One table across systems: ``system | what | figures``, then where to look."""
    rows = [(r.system, what, figures) for r in results for what, figures in r.rows]
    w0 = max([len("system"), *(len(a) for a, _, _ in rows)])
    w1 = max([len("trained"), *(len(b) for _, b, _ in rows)])
    lines = [
        "",
        f"{'system':<{w0}}  {'trained':<{w1}}  figures",
        f"{'-' * w0}  {'-' * w1}  -------",
    ]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    lines.append("")
    for r in results:
        lines.append(f"{r.system} ({r.seconds:.0f} s): where to look")
        width = max([0, *(len(label) for label, _ in r.outputs)])
        lines += [f"  {label:<{width}}  {path}" for label, path in r.outputs]
    return "\n".join(lines)


def main(systems: Sequence[str], overrides: Sequence[str]) -> int:
    results = run_demos(systems, overrides)
    print(closing_table(results))
    return 0
