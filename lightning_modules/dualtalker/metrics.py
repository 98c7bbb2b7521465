"""LVE and FDD exactly as CodeTalker's ``main/cal_metric.py`` computes them (docs/dualtalker.md,
"Metrics: LVE and FDD"), as torchmetrics Metrics whose states are sums (correct under DDP: every
rank adds its sequences).

- LVE: per frame, the largest squared L2 distance (no square root) over the lip vertices; the
  mean over all frames of all sequences.
- FDD: per sequence, with motion m = vertices - template, the mean over upper-face vertices of
  the (population) standard deviation over time of ||m||^2, ground truth minus prediction
  (signed: positive = the prediction is too static); the mean over sequences.

``compute()`` reports in the papers' units: the raw value divided by ``unit`` (BIWI-Test-A LVE
x 1e-4 mm, FDD x 1e-5 mm; VOCA-Test LVE x 1e-5 mm, so a raw 4.7914e-4 reads 4.7914). No paper
reports a VOCA FDD; ``PAPER_UNITS`` uses 1e-7 there (VOCA is in metres) and says so.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection

PAPER_UNITS = {
    "vocaset": {"lve": 1e-5, "fdd": 1e-7},  # FDD: no published figure, the suite's unit
    "biwi": {"lve": 1e-4, "fdd": 1e-5},
}
UNSEEN_POLICIES = ("all", "mean")


def _points(x: torch.Tensor) -> torch.Tensor:
    """(B, T, V*3) or (B, T, V, 3) -> (B, T, V, 3) float64."""
    return x.reshape(*x.shape[:2], -1, 3).double()


def _frames(pred: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    if frame_mask is None:
        return torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    return frame_mask.bool()


class LipVertexError(Metric):
    """Mean over frames of the max over lip vertices of the squared L2 error."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, lip_vertices, unit: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer(
            "lip_vertices", torch.as_tensor(lip_vertices, dtype=torch.long), persistent=False
        )
        self.unit = unit
        self.add_state("error_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> None:
        """pred, target (B, T, V*3) or (B, T, V, 3); frame_mask (B, T), True = real frame."""
        lips = self.lip_vertices.to(pred.device)
        error = (_points(pred)[:, :, lips] - _points(target)[:, :, lips]).square().sum(-1)
        per_frame = error.amax(-1)
        frames = _frames(pred, frame_mask)
        self.error_sum += per_frame[frames].sum()
        self.frames += frames.sum()

    def compute(self) -> torch.Tensor:
        return (self.error_sum / self.frames.clamp_min(1) / self.unit).float()


class UpperFaceDynamicsDeviation(Metric):
    """Mean over sequences of (GT - prediction) upper-face motion variability (signed)."""

    full_state_update = False
    higher_is_better = None  # signed: 0 is best

    def __init__(self, upper_face_vertices, unit: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer(
            "upper_face_vertices",
            torch.as_tensor(upper_face_vertices, dtype=torch.long),
            persistent=False,
        )
        self.unit = unit
        self.add_state(
            "deviation_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("sequences", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _variability(self, x, template, frames) -> torch.Tensor:
        """(B,) mean over U of the population std over real frames of ||x - template||^2."""
        upper = self.upper_face_vertices.to(x.device)
        motion = _points(x)[:, :, upper] - _points(template[:, None])[:, :, upper]
        energy = motion.square().sum(-1)  # (B, T, |U|)
        weight = frames[..., None].double()
        count = weight.sum(1).clamp_min(1)
        mean = (energy * weight).sum(1) / count
        variance = ((energy - mean[:, None]).square() * weight).sum(1) / count
        return variance.sqrt().mean(-1)

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        template: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
    ) -> None:
        """pred, target (B, T, V*3) or (B, T, V, 3); template (B, V*3) or (B, V, 3)."""
        frames = _frames(pred, frame_mask)
        deviation = self._variability(target, template, frames) - self._variability(
            pred, template, frames
        )
        present = frames.any(1)
        self.deviation_sum += deviation[present].sum()
        self.sequences += present.sum()

    def compute(self) -> torch.Tensor:
        return (self.deviation_sum / self.sequences.clamp_min(1) / self.unit).float()


def face_metrics(
    dataset: str, lip_vertices, upper_face_vertices=None, prefix: str = ""
) -> MetricCollection:
    """``lve`` (and ``fdd`` when an upper-face set is given) in ``dataset``'s paper units.
    Update with keywords: ``metrics.update(pred=..., target=..., template=..., frame_mask=...)``."""
    if dataset not in PAPER_UNITS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PAPER_UNITS)}")
    units = PAPER_UNITS[dataset]
    metrics = {"lve": LipVertexError(lip_vertices, units["lve"])}
    if upper_face_vertices is not None:
        metrics["fdd"] = UpperFaceDynamicsDeviation(upper_face_vertices, units["fdd"])
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


def check_unseen_condition(policy: str, train_subjects: list[str]) -> None:
    if policy not in UNSEEN_POLICIES and policy not in train_subjects:
        raise ValueError(
            f"model.unseen_condition={policy!r}: use all, mean or a training subject "
            f"({', '.join(train_subjects)})"
        )


def condition_indices(policy: str, style_index: int, train_subjects: list[str]) -> list[int]:
    """The training-subject conditions to predict a sequence with (the VOCA-Test protocol).

    A training subject (``style_index`` >= 0, BIWI Test-A) uses its own one-hot. An unseen
    subject (-1) uses: ``all`` every training condition, each prediction scored as a sequence
    of its own (the default: FaceFormer's test writes all 8, and the mean over them of LVE is
    the figure least sensitive to one lucky condition); ``mean`` every condition too, the caller
    averaging the predicted vertices before scoring; a subject name, that one condition only.
    """
    check_unseen_condition(policy, train_subjects)
    if style_index >= 0:
        return [style_index]
    if policy in UNSEEN_POLICIES:
        return list(range(len(train_subjects)))
    return [train_subjects.index(policy)]
