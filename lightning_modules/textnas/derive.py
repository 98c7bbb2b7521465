"""Deriving the final architecture from a finished search (docs/textnas.md, "The search").

NNI samples 20 architectures from the controller and exports them all, unranked; the official
code ranks sampled architectures on the *test* set (docs/textnas.md, "Quirks of the reference
code"). Here: ``num_samples``
architectures from the controller (or the random strategy) plus the controller's argmax, each
scored on the **full validation set** with the shared supernet weights in eval mode, sorted best
first. Nothing here touches a test split.

:func:`derive` returns the ranked list; :func:`write_derived` writes ``candidates.yaml`` (every
candidate and its score), ``architecture.yaml`` (the winner, :meth:`Architecture.save` format)
and ``architecture.png`` (its drawing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from lightning_modules.figures import save_figure
from lightning_modules.textnas.controller import EnasController
from lightning_modules.textnas.plots import architecture_figure
from search_spaces.text.architecture import Architecture
from search_spaces.text.strategies import RandomStrategy

__all__ = [
    "Candidate",
    "sample_architecture",
    "evaluate_architecture",
    "derive",
    "write_derived",
]

#: ``(architecture, validation accuracy)``; the architecture's ``source`` says where it came from.
Candidate = tuple[Architecture, float]


def sample_architecture(
    sampler: EnasController | RandomStrategy, generator: torch.Generator
) -> Architecture:
    """One architecture from the controller (no grad: only the architecture is needed) or the
    random strategy, drawn only from ``generator``. Both emit the space's op names."""
    if isinstance(sampler, EnasController):
        with torch.no_grad():
            return sampler.sample(generator).architecture
    return sampler.sample(generator)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def evaluate_architecture(
    supernet: nn.Module, architecture: Architecture, loader: Iterable[Mapping[str, Any]]
) -> float:
    """Accuracy of ``architecture`` with the shared weights over every batch of ``loader``
    (eval mode, no grad; the supernet's train/eval mode is restored)."""
    device = next(supernet.parameters()).device
    was_training = supernet.training
    supernet.eval()
    correct, total = 0, 0
    try:
        with torch.no_grad():
            for batch in loader:
                batch = _to_device(batch, device)
                logits = supernet(
                    batch["ids"],
                    batch["mask"],
                    architecture,
                    batch.get("ids_b"),
                    batch.get("mask_b"),
                )
                correct += int((logits.argmax(-1) == batch["label"]).sum())
                total += int(batch["label"].numel())
    finally:
        supernet.train(was_training)
    if total == 0:
        raise ValueError("the validation loader yielded no labelled examples")
    return correct / total


def derive(
    supernet: nn.Module,
    controller_or_strategy: EnasController | RandomStrategy,
    val_loader: Iterable[Mapping[str, Any]],
    num_samples: int = 20,
    generator: torch.Generator | None = None,
    include_argmax: bool = True,
) -> list[Candidate]:
    """Sample ``num_samples`` architectures (plus the controller's argmax when the sampler is an
    :class:`EnasController` and ``include_argmax``), score each on all of ``val_loader`` with
    the shared weights, and return ``[(architecture, accuracy), ...]`` best first.

    Duplicates are scored once (the first occurrence is kept). Ties keep sampling order, the
    argmax first. ``architecture.source`` is ``"argmax"`` or ``"sample <i>"``.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    candidates: list[Architecture] = []
    if include_argmax and isinstance(controller_or_strategy, EnasController):
        candidates.append(_labelled(controller_or_strategy.argmax(), "argmax"))
    for i in range(num_samples):
        arch = sample_architecture(controller_or_strategy, generator)
        candidates.append(_labelled(arch, f"sample {i}"))
    unique: list[Architecture] = []
    for arch in candidates:
        if arch not in unique:
            unique.append(arch)
    if not unique:
        raise ValueError("nothing to derive: num_samples=0 and no argmax")
    scored = [(arch, evaluate_architecture(supernet, arch, val_loader)) for arch in unique]
    return sorted(scored, key=lambda item: -item[1])  # stable: ties keep order


def _labelled(arch: Architecture, source: str) -> Architecture:
    return Architecture(arch.layers, k=arch.k, name="textnas_derived", source=source)


def write_derived(
    results: list[Candidate], out_dir: str | Path, meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``candidates.yaml``, ``architecture.yaml`` (the best) and ``architecture.png`` into
    ``out_dir``; returns the path of ``architecture.yaml``."""
    if not results:
        raise ValueError("no candidates to write")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    listing = {
        **dict(meta or {}),
        "metric": "val/acc (full validation set, shared weights, eval mode)",
        "candidates": [
            {
                "rank": rank,
                "val_acc": float(acc),
                "source": arch.source,
                "architecture": arch.to_dict(),
            }
            for rank, (arch, acc) in enumerate(results)
        ],
    }
    (out / "candidates.yaml").write_text(yaml.safe_dump(listing, sort_keys=False, width=100))
    best, acc = results[0]
    best = Architecture(
        best.layers, k=best.k, name="textnas_derived", source=f"{best.source}; val_acc={acc:.4f}"
    )
    path = best.save(out / "architecture.yaml")
    save_figure(
        architecture_figure(best, title=f"derived ({best.source})"), out / "architecture.png"
    )
    return path
