"""Typed options of the DualTalker LightningModule: each default is written here, once.

The network and its loss weights are :class:`~lightning_modules.dualtalker.DualTalkerOptions`
(the ``model`` section); this file holds what the training loop adds: the optimiser
(``optim``) and what validation and test compute and write (``evaluation``). The entry
point's config schema (``experiments/systems/dualtalker/train.py``) uses these dataclasses as its
sections, and the module takes them (or a partial mapping of their fields, as stored in a
checkpoint's hyper-parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OptimConfig:
    """Adam at a constant learning rate, no weight decay: FaceFormer, CodeTalker and SelfTalk
    all train this way (docs/dualtalker.md, "The FaceFormer recipe")."""

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
