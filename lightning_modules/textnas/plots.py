"""Figures of a TextNAS search: per-layer op frequencies and a drawing of one architecture.

Plain matplotlib on the Agg backend (no display needed); no Lightning import. Every function
returns a :class:`matplotlib.figure.Figure` built with the object-oriented API (no pyplot state),
which :func:`lightning_modules.figures.save_figure` writes as a PNG and releases.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from search_spaces.text.architecture import OP_NAMES, STEM, Architecture  # noqa: E402

__all__ = ["OP_COLORS", "op_frequency_figure", "architecture_figure"]

#: One colour per op (conv: blues, pools: greens, rnn: orange, attention: red).
OP_COLORS: dict[str, str] = {
    "conv1": "#c6dbef",
    "conv3": "#9ecae1",
    "conv5": "#6baed6",
    "conv7": "#3182bd",
    "avg_pool": "#a1d99b",
    "max_pool": "#41ab5d",
    "rnn": "#fdae6b",
    "attention": "#fb6a4a",
}


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def op_frequency_figure(
    counts: Sequence[Sequence[float]],
    ops: Sequence[str] = OP_NAMES,
    title: str = "op frequency per layer",
) -> Figure:
    """Heatmap of ``counts[layer][op]`` normalised per layer (rows: layers, columns: ops).

    ``counts`` is any (num_layers, len(ops)) nested sequence or array (e.g. how often each op
    was sampled at each layer during an epoch, or the controller's op probabilities).
    """
    rows = [[float(v) for v in row] for row in counts]
    if not rows or any(len(r) != len(ops) for r in rows):
        raise ValueError(f"counts must be (num_layers, {len(ops)}), got {len(rows)} rows")
    freqs = []
    for row in rows:
        total = sum(row)
        freqs.append([v / total if total > 0 else 0.0 for v in row])
    n_layers = len(freqs)
    fig = _new_figure(1.0 + 0.8 * len(ops), 1.2 + 0.28 * n_layers)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(freqs, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(ops)), labels=list(ops), rotation=45, ha="right")
    ax.set_yticks(range(n_layers), labels=[f"L{i}" for i in range(n_layers)])
    ax.set_xlabel("op")
    ax.set_ylabel("layer")
    ax.set_title(title)
    if n_layers <= 32 and len(ops) <= 8:
        for i, row in enumerate(freqs):
            for j, value in enumerate(row):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value < 0.6 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="fraction of samples")
    fig.tight_layout()
    return fig


def architecture_figure(architecture: Architecture, title: str | None = None) -> Figure:
    """The architecture as a left-to-right chain: the stem and one node per layer (op name,
    coloured by op); input edges solid arrows (arcs above when not from the previous node),
    skip edges dashed grey arcs below the nodes."""
    n = architecture.num_layers
    fig = _new_figure(max(6.0, 1.0 + 0.75 * (n + 1)), 2.0 + 0.25 * n)
    ax = fig.add_subplot(1, 1, 1)
    x_of = {STEM: 0.0, **{i: float(i + 1) for i in range(n)}}
    box = dict(boxstyle="round,pad=0.3", linewidth=0.8)
    ax.text(
        0.0,
        0.0,
        "stem",
        ha="center",
        va="center",
        fontsize=7,
        bbox={**box, "facecolor": "#eeeeee"},
        zorder=3,
    )
    for i, spec in enumerate(architecture.layers):
        ax.text(
            x_of[i],
            0.0,
            f"L{i}\n{spec.op}",
            ha="center",
            va="center",
            fontsize=6,
            bbox={**box, "facecolor": OP_COLORS.get(spec.op, "white")},
            zorder=3,
        )
    max_span, max_skip = 1.0, 0.0
    for i, spec in enumerate(architecture.layers):
        src, dst = x_of[spec.input], x_of[i]
        span = dst - src
        max_span = max(max_span, span)
        rad = 0.0 if span <= 1.0 else -0.35  # arcs above the chain
        ax.add_patch(
            FancyArrowPatch(
                (src, 0.0),
                (dst, 0.0),
                arrowstyle="-|>",
                mutation_scale=8,
                connectionstyle=f"arc3,rad={rad}",
                linewidth=1.0,
                color="black",
                zorder=2,
                shrinkA=17,
                shrinkB=17,
            )
        )
        for s in spec.skips:
            max_skip = max(max_skip, dst - x_of[s])
            ax.add_patch(
                FancyArrowPatch(
                    (x_of[s], -0.03),
                    (dst, -0.03),
                    arrowstyle="-|>",
                    mutation_scale=6,
                    connectionstyle="arc3,rad=0.35",
                    linestyle="--",
                    linewidth=0.6,
                    color="#777777",
                    zorder=1,
                    shrinkA=10,
                    shrinkB=10,
                )
            )
    ax.set_xlim(-0.8, n + 0.8)
    ax.set_ylim(-(0.25 + 0.18 * max_skip), 0.25 + 0.18 * max_span)
    ax.axis("off")
    label = title or architecture.name or "architecture"
    ax.set_title(
        f"{label}: {n} layers, k={architecture.k}, skips "
        f"{architecture.num_skips()}/{architecture.num_possible_skips()} "
        "(solid: input, dashed: skip)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
