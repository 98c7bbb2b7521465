"""Typed options of the TextNAS modules: each default is written here, once.

The entry point's config schemas (``experiments/systems/textnas*.py``) use these dataclasses as
their ``optim``, ``controller``, ``search`` and ``supernet`` sections, and the modules take them
(or a partial mapping of their fields, as stored in a checkpoint's hyper-parameters).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from search_spaces.text import OP_NAMES, TextNASOptions


@dataclass
class RetrainOptimConfig:
    """Adam + per-epoch cosine with warm restarts (NNI ``run_retrain.sh``)."""

    lr: float = 2e-3
    lr_min: float = 5e-6
    eps: float = 1e-3
    weight_decay: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine_restarts"  # cosine_restarts | cosine | constant
    t0: int = 10
    t_mult: int = 2
    fused: bool = True  # one fused Adam kernel (CPU and CUDA); False = per-tensor loop


@dataclass
class SupernetConfig(TextNASOptions):
    """The search space and the shared network (NNI search: 24 layers, k 5, C 256, keeps 0.5)."""

    embed_keep: float = 0.5
    cnn_keep: float = 0.5
    rnn_keep: float = 0.5
    attention_keep: float = 0.5
    num_layers: int = 24
    k: int = 5
    ops: list[str] = field(default_factory=lambda: list(OP_NAMES))
    init: str = "pytorch"  # shared weights: PyTorch's default init (NNI) or "xavier"

    def options(self) -> TextNASOptions:
        """The network options alone (what the supernet's layers are built from)."""
        names = [f.name for f in dataclasses.fields(TextNASOptions)]
        return TextNASOptions(**{n: getattr(self, n) for n in names})


@dataclass
class ControllerConfig:
    """NNI ``EnasMutator`` as TextNAS's ``search.py`` builds it; Adam as NNI's ``mutator_optim``.

    NNI ``nni/algorithms/nas/pytorch/enas/mutator.py``; docs/textnas.md, "The search".
    """

    hidden: int = 64
    skip_target: float = 0.4
    skip_weight: float = 0.8
    entropy_weight: float = 1e-4
    baseline_decay: float = 0.99
    lr: float = 2e-3
    eps: float = 1e-8  # official code: 1e-3
    weight_decay: float = 0.0  # official code: 1e-3
    grad_clip: float = 5.0
    tanh_constant: Optional[float] = None  # official code: 1.5
    temperature: Optional[float] = None


@dataclass
class SearchConfig:
    """The search loop. ``controller_every=0``: the controller phase follows the last child step
    of every epoch (NNI: 3,000 child steps, then 500 controller steps)."""

    strategy: str = "enas"  # enas | random
    controller_every: int = 0
    controller_steps: int = 500
    derive_samples: int = 20
    skip_prob: float = 0.5  # random strategy only
    grad_clip: float = 5.0  # child, global norm
    arch_seed: Optional[int] = None  # None = the run seed
    plots: bool = True


@dataclass
class SearchOptimConfig:
    """Child (shared weights) Adam + per-epoch CosineAnnealingLR(T_max=max_epochs) (NNI)."""

    lr: float = 5e-3
    eps: float = 1e-3
    weight_decay: float = 2e-6
    eta_min: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
