"""The random architecture sampler of the TextNAS space (the ENAS controller is the learned one).

:class:`RandomStrategy` is NNI's legacy ``RandomMutator`` (NNI <= 2.8) as applied to TextNAS
(docs/textnas.md, "The search"): per layer a uniform op, a uniform input among the allowed
previous ``k`` layers (the stem for layer 0) and an independent Bernoulli(``skip_prob``) per
possible skip. It is the project's only random sampler: the random-search baseline, the supernet
tests and the demo's random architecture all draw from it.

All randomness comes from the ``torch.Generator`` passed to :meth:`RandomStrategy.sample`, and
every sample consumes the same number of draws whatever it picks, so processes (DDP ranks) whose
generators are seeded alike draw the same architecture sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .architecture import OP_NAMES, STEM, Architecture, LayerSpec, canonical_op_set

# canonical_op_set (architecture.py) stays importable from here, next to check_space.
__all__ = ["RandomStrategy", "canonical_op_set", "check_space"]


def check_space(num_layers: int, k: int) -> None:
    """``num_layers >= 1`` and ``1 <= k <= num_layers``, else a ``ValueError`` naming both."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > num_layers:
        raise ValueError(
            f"k={k} (inputs chosen among the previous k layers) is larger than the "
            f"number of layers ({num_layers})"
        )


class RandomStrategy:
    """Uniform op, uniform input among the allowed ones, Bernoulli(``skip_prob``) skips."""

    def __init__(
        self,
        num_layers: int,
        k: int = 5,
        ops: Sequence[str] = OP_NAMES,
        skip_prob: float = 0.5,
    ):
        check_space(num_layers, k)
        if not 0.0 <= float(skip_prob) <= 1.0:
            raise ValueError(f"skip_prob must be in [0, 1], got {skip_prob}")
        self.num_layers = num_layers
        self.k = k
        self.ops = canonical_op_set(ops)
        self.skip_prob = float(skip_prob)

    def __repr__(self) -> str:
        return (
            f"RandomStrategy(num_layers={self.num_layers}, k={self.k}, "
            f"ops={self.ops}, skip_prob={self.skip_prob})"
        )

    def sample(self, generator: torch.Generator) -> Architecture:
        """One architecture, drawn only from ``generator`` (three draws of fixed size)."""
        n = self.num_layers
        device = generator.device
        op_idx = torch.randint(len(self.ops), (n,), generator=generator, device=device).tolist()
        u_input = torch.rand(n, generator=generator, dtype=torch.float64, device=device).tolist()
        u_skip = torch.rand(n * (n - 1) // 2, generator=generator, device=device).tolist()
        layers = []
        pos = 0
        for i in range(n):
            if i == 0:
                inp = STEM
            else:
                m = min(i, self.k)  # candidates i-m .. i-1
                inp = i - m + min(int(u_input[i] * m), m - 1)
            skips = tuple(j for j in range(i) if u_skip[pos + j] < self.skip_prob)
            pos += i
            layers.append(LayerSpec(inp, self.ops[op_idx[i]], skips))
        return Architecture(tuple(layers), k=self.k, name="random", source=repr(self))
