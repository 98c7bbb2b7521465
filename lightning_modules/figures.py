"""Writing a matplotlib figure to a file: the suite's one ``save_figure`` (no Lightning import).

Figures are built with the object-oriented API (``matplotlib.figure.Figure``, no pyplot state),
so releasing one is ``fig.clear()``; the media logger and every plot writer use this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (parent folders created) and release it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    fig.clear()
    return path
