"""Test-only TextNAS helpers: a seeded random architecture and the oracles the tests compare to.

Nothing in the package uses these; they live here so the package holds only what it runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lightning_modules.textnas.controller import ControllerSample
from search_spaces.text.architecture import OP_NAMES, Architecture
from search_spaces.text.strategies import RandomStrategy


def random_arch(
    num_layers: int,
    k: int = 5,
    seed: int = 0,
    skip_prob: float = 0.5,
    ops: Sequence[str] = OP_NAMES,
) -> Architecture:
    """:class:`RandomStrategy`'s sample from a CPU generator seeded with ``seed``.

    ``k`` is capped at ``num_layers`` (a space of ``n`` layers has at most ``n`` inputs to
    choose from), so ``random_arch(4)`` is a valid 4-layer architecture with ``k = 4``.
    """
    strategy = RandomStrategy(num_layers, min(k, num_layers), ops, skip_prob)
    return strategy.sample(torch.Generator().manual_seed(seed))


def op_counts(arch: Architecture) -> dict[str, int]:
    """Occurrences of every op of :data:`OP_NAMES` (in that order) in ``arch``."""
    counts = dict.fromkeys(OP_NAMES, 0)
    for spec in arch.layers:
        counts[spec.op] += 1
    return counts


def space_size_log10(num_layers: int = 24, k: int = 5, n_ops: int = len(OP_NAMES)) -> float:
    """log10 of the number of architectures: layer ``l`` has ``n_ops`` ops,
    ``max(1, min(l, k))`` inputs and ``2**l`` skip subsets (≈ 119.4 for 24 layers, k=5;
    ≈ 104.8 for k=1)."""
    if num_layers < 0 or k < 1 or n_ops < 1:
        raise ValueError("need num_layers >= 0, k >= 1, n_ops >= 1")
    total = 0.0
    for layer in range(num_layers):
        total += math.log10(n_ops) + math.log10(max(1, min(layer, k))) + layer * math.log10(2)
    return total


def op_probs(sample: ControllerSample, layer: int) -> torch.Tensor:
    """The controller's op distribution at ``layer`` (detached), from ``sample.decisions``."""
    for d in sample.decisions:
        if d.layer == layer and d.kind == "op":
            return d.probs
    raise KeyError(f"no op decision for layer {layer}")


def skip_rate_at_penalty_optimum(skip_target: float) -> float:
    """Sampling skip probability ``sigmoid(2 q)`` when the KL skip penalty is at its optimum
    ``sigmoid(q) = skip_target`` (~0.3077 for 0.4): skips are drawn from ``softmax([-q, q])``."""
    q = math.log(skip_target / (1.0 - skip_target))
    return 1.0 / (1.0 + math.exp(-2.0 * q))
