"""Typed options of the DualTalker LightningModule: each default is written here, once.

The network and its loss weights are :class:`~lightning_modules.dualtalker.DualTalkerOptions`
(the ``model`` section); this file holds what the training loop adds: the optimiser
(``optim``) and what validation and test compute and write (``evaluation``). The entry
point's config schema (``experiments/systems/dualtalker.py``) uses these dataclasses as its
sections, and the module takes them (or a partial mapping of their fields, as stored in a
checkpoint's hyper-parameters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def as_config(cls: type[T], value: T | Mapping[str, Any] | None) -> T:
    """``value`` as a ``cls`` instance: an instance as it is, a mapping over the defaults, an
    instance of a subclass (a config section that adds keys) cut down to ``cls``'s fields."""
    if type(value) is cls:
        return value
    names = {f.name for f in dataclasses.fields(cls)}
    if isinstance(value, cls) or dataclasses.is_dataclass(value):
        value = {n: getattr(value, n) for n in names if hasattr(value, n)}
    unknown = sorted(set(value or {}) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown option(s) {', '.join(unknown)}")
    return cls(**dict(value or {}))


def plain(config: Any) -> dict[str, Any]:
    """A config dataclass as plain dicts and lists (what a weights-only checkpoint can hold)."""
    return dataclasses.asdict(config)


@dataclass
class OptimConfig:
    """Adam at a constant learning rate, no weight decay: FaceFormer, CodeTalker and SelfTalk
    all train this way (reference sheet section 7)."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    fused: bool = True  # one fused Adam kernel (CPU and CUDA); False = per-tensor loop


@dataclass
class EvalConfig:
    """What validation and test compute and write.

    Validation always gives the teacher-forced losses (FaceFormer's validation: for an unseen
    subject, the loss averaged over every training-subject condition). Every
    ``metrics_every_n_epochs``-th epoch (and the last) it also predicts autoregressively and
    logs LVE/FDD and the per-vertex error plot; 0 = only at test. Test always does.
    """

    metrics_every_n_epochs: int = 5
    write_predictions: bool = True  # test: predictions/<subject>_<sentence>_condition_<c>.npy
    plots: bool = True  # the per-vertex error plot (media logger: run folder and W&B)
