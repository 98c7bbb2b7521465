"""The Inception Score as the papers' TF code computes it (OpenAI improved-GAN
``inception_score.py``, used by alphaGAN's and AutoGAN's ``utils/inception_score.py``).

``softmax`` of the 1008 bias-free logits, the samples cut into ``splits`` **contiguous** chunks
in the order they were generated, per chunk ``exp(mean_x KL(p(y|x) || p(y)))``, then the mean
and the **population** standard deviation (``np.std``, ddof 0) over the chunks.
torchmetrics' ``InceptionScore`` shuffles the samples first and reports the unbiased std, and
torch-fidelity shuffles with a fixed seed, so neither gives the papers' numbers; the chunks here
are torch-fidelity's ``isc_features_to_metric`` with its shuffle off, which is that formula.

Under DDP the logits of all ranks are gathered (``dist_reduce_fx="cat"``, rank after rank), so
the chunks hold rank 0's samples first; the mean is that of the same samples either way.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(mean, std) of the Inception Score of ``logits`` (N, classes) in ``splits`` contiguous
    chunks (see module doc)."""
    from torch_fidelity.metric_isc import (
        KEY_METRIC_ISC_MEAN,
        KEY_METRIC_ISC_STD,
        isc_features_to_metric,
    )

    if logits.dim() != 2 or logits.shape[0] < splits:
        raise ValueError(
            f"the Inception Score needs (N, classes) logits with N >= splits={splits}, got "
            f"{tuple(logits.shape)}"
        )
    out = isc_features_to_metric(logits.detach().cpu(), splits=splits, shuffle=False)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]


class InceptionScore(Metric):
    """``update(logits)`` with (N, 1008) bias-free logits (the extractor's second output);
    ``compute()`` returns ``(mean, std)`` as float64 tensors."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, splits: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.splits = int(splits)
        self.add_state("logits", [], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor) -> None:
        if logits is None:
            raise ValueError("the Inception Score needs logits: the stand-in extractor has none")
        self.logits.append(logits.detach().float())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = inception_score(dim_zero_cat(self.logits), self.splits)
        return torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
