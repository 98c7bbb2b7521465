"""The per-vertex error of a split and its picture: where on the face the prediction misses.

:class:`PerVertexError` accumulates, for every vertex, the squared distance between predicted
and true positions summed over all real frames (a ``torchmetrics.Metric``, summed over DDP
ranks); :func:`vertex_error_figure` draws it on the template, seen from the front and from the
side, with the lip set (the vertices LVE looks at) outlined. Plain matplotlib on the Agg
backend, object-oriented API; no Lightning import.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchmetrics import Metric  # noqa: E402

__all__ = ["PerVertexError", "vertex_error_figure"]


class PerVertexError(Metric):
    """Mean over real frames of ``||pred[t, v] - target[t, v]||^2`` for every vertex ``v``.

    ``update(pred, target, frame_mask)``: ``pred``/``target`` (B, T, V*3) or (B, T, V, 3),
    ``frame_mask`` (B, T) bool. ``compute()`` -> (V,) float64, in squared data units.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, num_vertices: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_vertices = int(num_vertices)
        self.add_state(
            "sum_sq", torch.zeros(self.num_vertices, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("frames", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor) -> None:
        b, t = frame_mask.shape
        diff = pred.reshape(b, t, -1, 3).double() - target.reshape(b, t, -1, 3).double()
        sq = diff.square().sum(-1) * frame_mask[..., None]
        self.sum_sq += sq.sum(dim=(0, 1))
        self.frames += frame_mask.sum()

    def compute(self) -> torch.Tensor:
        return self.sum_sq / self.frames.clamp_min(1)


def vertex_error_figure(
    template: np.ndarray | torch.Tensor,
    errors: np.ndarray | torch.Tensor,
    lip_vertices: np.ndarray | torch.Tensor | None = None,
    title: str = "per-vertex error",
    unit: str = "",
) -> Figure:
    """``errors`` (V,) on the template's vertices (V, 3) or (V*3,): front (x, y) and side
    (z, y) views coloured on a log scale over four decades below the largest error (brightest),
    lip set outlined."""
    verts = np.asarray(template, dtype=np.float64).reshape(-1, 3)
    err = np.asarray(errors, dtype=np.float64).reshape(-1)
    if len(err) != len(verts):
        raise ValueError(f"{len(err)} errors for a template of {len(verts)} vertices")
    top = err.max() if err.size and err.max() > 0 else 1e-12
    floor = top * 1e-4  # four decades: vertices that barely move do not stretch the scale
    shown = np.clip(err, floor, None)
    norm = LogNorm(vmin=floor, vmax=top)
    order = np.argsort(shown)  # largest errors drawn last, on top
    fig = Figure(figsize=(9.0, 4.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    size = max(0.5, min(12.0, 6000.0 / len(verts)))
    for ax, (i, j, name) in zip(axes, ((0, 1, "front (x, y)"), (2, 1, "side (z, y)"))):
        points = ax.scatter(
            verts[order, i],
            verts[order, j],
            c=shown[order],
            s=size,
            cmap="inferno",
            norm=norm,
            linewidths=0,
        )
        if lip_vertices is not None and len(lip_vertices):
            lips = np.asarray(lip_vertices, dtype=np.int64)
            ax.scatter(
                verts[lips, i],
                verts[lips, j],
                s=size * 3,
                facecolors="none",
                edgecolors="#4fc3f7",
                linewidths=0.3,
            )
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("#202020")
    label = "mean squared error per frame" + (f" ({unit})" if unit else "")
    fig.colorbar(points, ax=list(axes), fraction=0.04, pad=0.02, label=label)
    lips_note = ", lip set outlined" if lip_vertices is not None and len(lip_vertices) else ""
    fig.suptitle(f"{title}: max {err.max():.3g}, mean {err.mean():.3g}{lips_note}", fontsize=10)
    return fig
