"""Figures of an alphaGAN search: softmax(α) per edge, a genotype drawing, sample grids.

Plain matplotlib (Agg, object-oriented API, no pyplot state) and torchvision's ``make_grid``;
no Lightning import. Every figure function returns a :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)

import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from search_spaces.gan import EDGE_NAMES, NORMAL_OPS, UP_OPS, Genotype, edge_ops  # noqa: E402

__all__ = ["alpha_heatmap", "alpha_history_rows", "genotype_figure", "sample_grid"]

OP_COLORS = {
    "conv_1x1": "#c6dbef",
    "conv_3x3": "#6baed6",
    "conv_5x5": "#2171b5",
    "sep_conv_3x3": "#c7e9c0",
    "sep_conv_5x5": "#74c476",
    "sep_conv_7x7": "#238b45",
    "deconv": "#fdae6b",
    "nearest": "#d9d9d9",
    "bilinear": "#bcbddc",
}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def sample_grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(3, H', W') grid in [0, 1] of images already in [0, 1] (e.g. ``dm.denormalize(G(z))``)."""
    return make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)


def alpha_history_rows(history: Sequence[Sequence[float]]) -> tuple[list[str], list[list]]:
    """``(columns, rows)`` of the α history: one row per epoch, one column per (edge, op) with
    softmax(α), edges in :data:`EDGE_NAMES` order."""
    columns = ["epoch", *[f"{e}:{op}" for e in EDGE_NAMES for op in edge_ops(e)]]
    return columns, [[i, *[round(float(v), 6) for v in row]] for i, row in enumerate(history)]


def alpha_heatmap(
    weights: Mapping[str, Sequence[float]], title: str = "softmax(α) per edge"
) -> Figure:
    """Heatmap of each edge's op probabilities: rows = edges, columns = the normal ops then the
    up-sampling ops (an edge has values only in its own op set's columns)."""
    ops = [*NORMAL_OPS, *UP_OPS]
    edges = list(weights)
    table = torch.full((len(edges), len(ops)), float("nan"))
    for i, edge in enumerate(edges):
        row = [float(v) for v in weights[edge]]
        start = 0 if len(row) == len(NORMAL_OPS) else len(NORMAL_OPS)
        table[i, start : start + len(row)] = torch.tensor(row)
    fig = _figure(1.0 + 0.75 * len(ops), 1.2 + 0.32 * len(edges))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(table.numpy(), cmap="viridis", vmin=0.0, aspect="auto")
    for i in range(len(edges)):
        for j in range(len(ops)):
            v = float(table[i, j])
            if v == v:  # not nan
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v < 0.6 * float(table.nan_to_num(0).max()) else "black",
                )
    ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(edges)), edges, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def genotype_figure(genotype: Genotype, title: str = "genotype") -> Figure:
    """The three cells as node graphs with each edge's op, plus the cross-cell skip edges."""
    fig = _figure(11, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    ax.set_xlim(-0.6, 12.6)
    ax.set_ylim(-1.6, 1.9)
    nodes = {
        "in": (0.0, 0.0),
        "n1": (1.3, 0.8),
        "n2": (2.6, 0.8),
        "n3": (1.95, -0.8),
        "n4": (3.6, 0.0),
    }
    edge_ends = {
        "up0": ("in", "n1"),
        "normal0": ("n1", "n2"),
        "up1": ("in", "n3"),
        "normal1": ("n2", "n4"),
        "normal2": ("n3", "n4"),
    }
    e = genotype.edges
    for c in range(3):
        dx = 4.2 * c
        pos = {k: (x + dx, y) for k, (x, y) in nodes.items()}
        for kind, (a, b) in edge_ends.items():
            op = e[f"cell{c + 1}.{kind}"]
            (x0, y0), (x1, y1) = pos[a], pos[b]
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 1.2},
            )
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                op,
                ha="center",
                va="center",
                fontsize=7,
                bbox={"boxstyle": "round,pad=0.2", "fc": OP_COLORS.get(op, "white"), "ec": "none"},
            )
        for name, (x, y) in pos.items():
            label = {"in": f"c{c}" if c else "z→fc", "n4": f"c{c + 1}"}.get(name, name)
            ax.text(
                x,
                y,
                label,
                ha="center",
                va="center",
                fontsize=7,
                bbox={"boxstyle": "circle,pad=0.25", "fc": "white", "ec": "black"},
            )
    skips = [("cell2.skip0", 0, 1, "×2"), ("cell3.skip0", 0, 2, "×4"), ("cell3.skip1", 1, 2, "×2")]
    for i, (name, src, dst, factor) in enumerate(skips):
        (x0, y0), (x1, y1) = (1.3 + 4.2 * src, 0.95), (3.6 + 4.2 * dst, 0.18)
        rad = -0.22 if dst - src == 1 else -0.16
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "->",
                "color": "#999999",
                "lw": 0.9,
                "ls": "--",
                "connectionstyle": f"arc3,rad={rad}",
            },
        )
        ax.text(
            (x0 + x1) / 2,
            1.35 + 0.22 * i,
            f"{name}: {e[name]} {factor}",
            ha="center",
            fontsize=7,
            bbox={"boxstyle": "round,pad=0.2", "fc": OP_COLORS.get(e[name], "white"), "ec": "none"},
        )
    ax.text(12.4, -1.4, f"bottom width {genotype.bottom_width}", ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig
