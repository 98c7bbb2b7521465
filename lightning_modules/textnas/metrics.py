"""Task metrics for the TextNAS modules, all torchmetrics (synchronised under DDP)."""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import Accuracy, F1Score, MatthewsCorrCoef
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

METRIC_NAMES = ("accuracy", "f1", "mcc", "pearson", "spearman")
SHORT_NAMES = {
    "accuracy": "acc",
    "f1": "f1",
    "mcc": "mcc",
    "pearson": "pearson",
    "spearman": "spearman",
}


def build_metric(name: str, num_classes: int) -> Metric:
    """One metric by the name a task spec uses. Classification metrics take class ids."""
    if name in ("pearson", "spearman"):
        return PearsonCorrCoef() if name == "pearson" else SpearmanCorrCoef()
    if num_classes < 2:
        raise ValueError(
            f"metric {name!r} needs a classification task, got num_classes={num_classes}"
        )
    task = "binary" if num_classes == 2 else "multiclass"
    kwargs = {} if task == "binary" else {"num_classes": num_classes}
    if name == "accuracy":
        return Accuracy(task=task, **kwargs)
    if name == "f1":
        # Binary F1 of the positive class (GLUE's MRPC/QQP F1); macro F1 for several classes.
        return (
            F1Score(task=task, **kwargs)
            if task == "binary"
            else F1Score(task=task, average="macro", **kwargs)
        )
    if name == "mcc":
        return MatthewsCorrCoef(task=task, **kwargs)
    raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(METRIC_NAMES)}")


def build_metrics(
    names: list[str] | tuple[str, ...], num_classes: int, prefix: str
) -> MetricCollection:
    """A MetricCollection whose keys are ``<prefix><short name>`` (``val/acc``, ``val/mcc``...)."""
    return MetricCollection(
        {SHORT_NAMES[n]: build_metric(n, num_classes) for n in names}, prefix=prefix
    )


def predictions(logits: torch.Tensor, regression: bool) -> torch.Tensor:
    """Class ids from logits, or the scalar score of a regression head."""
    return logits.squeeze(-1).float() if regression else logits.argmax(dim=-1)
