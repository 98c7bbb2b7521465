"""The alphaGAN genotype: one op per edge of the generator space, and its YAML format.

The space (docs/alphagan.md, "The search space") has three cells, each with two up-sampling
edges (``up0`` reads the cell input and makes node 1; ``up1`` is the in-cell shortcut, node 3)
and three normal edges (``normal0``: node 1 -> node 2, ``normal1``: node 2 -> node 4, ``normal2``:
node 3 -> node 4), plus three cross-cell skips from earlier cells' node 1 into node 4:
``cell2.skip0`` (cell 1, x2), ``cell3.skip0`` (cell 1, x4) and ``cell3.skip1`` (cell 2, x2).
:data:`EDGE_NAMES` lists the 18 edges in a fixed order; errors and logs use these names.

A genotype also records the **bottom width** it was searched at (4 for 32x32 images, 6 for
48x48): building a network for another size is an error unless the genotype is moved there
on purpose with :meth:`Genotype.retarget` (the paper's STL-10 results transfer the CIFAR-10
genotype that way).

The YAML format (written by :meth:`Genotype.save`)::

    bottom_width: 4
    cells:
      - {normal: [conv_5x5, conv_5x5, sep_conv_5x5], up: [deconv, bilinear]}
      - {normal: [conv_5x5, conv_1x1, conv_3x3], up: [deconv, bilinear]}
      - {normal: [conv_1x1, conv_5x5, sep_conv_3x3], up: [nearest, bilinear]}
    skips:
      cell2: [nearest]            # from cell 1 (x2)
      cell3: [bilinear, nearest]  # from cell 1 (x4), from cell 2 (x2)

Plain Python and PyYAML; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search_spaces.gan.ops import NORMAL_OPS, UP_OPS

__all__ = [
    "NUM_CELLS",
    "NUM_UP",
    "NUM_NORMAL",
    "SKIP_SOURCES",
    "EDGE_NAMES",
    "ALPHA_SHAPES",
    "ALPHA_ROWS",
    "GENOTYPES_DIR",
    "GenotypeError",
    "Genotype",
    "edge_ops",
    "load_genotype",
    "shipped_genotypes",
    "space_size",
]

NUM_CELLS = 3
NUM_UP, NUM_NORMAL = 2, 3
#: cell -> the earlier cells whose node 1 it receives as skips, in ``skip`` index order.
SKIP_SOURCES: dict[int, tuple[int, ...]] = {1: (), 2: (1,), 3: (1, 2)}

GENOTYPES_DIR = Path(__file__).resolve().parent / "genotypes"


def _build_edges() -> tuple[tuple[str, ...], dict[str, tuple[str, int]]]:
    names: list[str] = []
    rows: dict[str, tuple[str, int]] = {}  # edge -> (α key, row), as the reference lays them out
    for c in range(1, NUM_CELLS + 1):
        for kind, count in (("up", NUM_UP), ("normal", NUM_NORMAL), ("skip", len(SKIP_SOURCES[c]))):
            for j in range(count):
                name = f"cell{c}.{kind}{j}"
                names.append(name)
                rows[name] = (f"{kind}{c}", j)
    return tuple(names), rows


EDGE_NAMES, ALPHA_ROWS = _build_edges()
#: α tensors (reference ``alphas_normal_1`` ... ``alphas_skip_3``): rows = edges, columns = ops.
ALPHA_SHAPES: dict[str, tuple[int, int]] = {
    **{f"normal{c}": (NUM_NORMAL, len(NORMAL_OPS)) for c in range(1, NUM_CELLS + 1)},
    **{f"up{c}": (NUM_UP, len(UP_OPS)) for c in range(1, NUM_CELLS + 1)},
    **{f"skip{c}": (len(SKIP_SOURCES[c]), len(UP_OPS)) for c in range(2, NUM_CELLS + 1)},
}


def edge_ops(edge: str) -> tuple[str, ...]:
    """The candidate ops of one edge: :data:`NORMAL_OPS` or :data:`UP_OPS`."""
    return NORMAL_OPS if ".normal" in edge else UP_OPS


def space_size() -> int:
    """Number of genotypes in the space (about 1.98e11, the paper's "about 2x10^11")."""
    return math.prod(len(edge_ops(e)) for e in EDGE_NAMES)


class GenotypeError(ValueError):
    """A genotype outside the space, a file that cannot be read as one, or a size mismatch."""


@dataclass(frozen=True)
class Genotype:
    """One op per edge (``edges``: :data:`EDGE_NAMES` -> op name) and the bottom width."""

    edges: Mapping[str, str]
    bottom_width: int
    source: str = field(default="genotype", compare=False)  # for messages: a file or "supernet"

    def __post_init__(self) -> None:
        edges = dict(self.edges)
        for name in edges:
            if name not in ALPHA_ROWS:
                raise GenotypeError(
                    f"{self.source}: unknown edge {name!r} (edges: {', '.join(EDGE_NAMES)})"
                )
        for name in EDGE_NAMES:
            if name not in edges:
                raise GenotypeError(f"{self.source}: edge {name}: missing")
            op, ops = edges[name], edge_ops(name)
            if op not in ops:
                raise GenotypeError(
                    f"{self.source}: edge {name}: unknown op {op!r} (ops: {', '.join(ops)})"
                )
        if (
            isinstance(self.bottom_width, bool)
            or not isinstance(self.bottom_width, int)
            or self.bottom_width < 1
        ):
            raise GenotypeError(
                f"{self.source}: bottom_width must be a positive integer, got {self.bottom_width!r}"
            )
        object.__setattr__(self, "edges", {name: edges[name] for name in EDGE_NAMES})

    # -- structure ---------------------------------------------------------------------------
    def normal(self, cell: int) -> tuple[str, ...]:
        return tuple(self.edges[f"cell{cell}.normal{j}"] for j in range(NUM_NORMAL))

    def up(self, cell: int) -> tuple[str, ...]:
        return tuple(self.edges[f"cell{cell}.up{j}"] for j in range(NUM_UP))

    def skips(self, cell: int) -> tuple[str, ...]:
        return tuple(self.edges[f"cell{cell}.skip{j}"] for j in range(len(SKIP_SOURCES[cell])))

    def image_size(self) -> int:
        return self.bottom_width * 2**NUM_CELLS

    def check(self, bottom_width: int) -> None:
        """Raise :class:`GenotypeError` unless this genotype was made for ``bottom_width``."""
        if bottom_width != self.bottom_width:
            want = bottom_width * 2**NUM_CELLS
            raise GenotypeError(
                f"{self.source}: bottom_width {self.bottom_width} ({self.image_size()}x"
                f"{self.image_size()} images) but this network needs bottom_width {bottom_width} "
                f"({want}x{want}); to transfer the genotype on purpose, use "
                f"genotype.retarget({bottom_width})"
            )

    def retarget(self, bottom_width: int) -> Genotype:
        """The same ops for another bottom width (an explicit transfer, e.g. CIFAR-10 -> STL-10)."""
        return Genotype(self.edges, bottom_width, source=self.source)

    # -- YAML --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "bottom_width": self.bottom_width,
            "cells": [
                {"normal": list(self.normal(c)), "up": list(self.up(c))}
                for c in range(1, NUM_CELLS + 1)
            ],
            "skips": {f"cell{c}": list(self.skips(c)) for c in range(2, NUM_CELLS + 1)},
        }

    def to_yaml(self) -> str:
        d = self.to_dict()
        flow = lambda v: yaml.safe_dump(v, default_flow_style=True, width=1000).strip()  # noqa: E731
        lines = [f"bottom_width: {d['bottom_width']}", "cells:"]
        lines += [f"  - {flow(cell)}" for cell in d["cells"]]
        lines += ["skips:"]
        notes = {"cell2": "from cell 1 (x2)", "cell3": "from cell 1 (x4), from cell 2 (x2)"}
        lines += [
            f"  {k}: {flow(v)}  # {notes.get(k, '')}".rstrip(" #") for k, v in d["skips"].items()
        ]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path, comment: str | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
        path.write_text(header + self.to_yaml())
        return path

    @classmethod
    def from_dict(
        cls, data: Any, source: str = "genotype", lines: Mapping[str, int] | None = None
    ) -> Genotype:
        """Build from the YAML structure; errors name ``source``, the line and the edge."""
        lines = lines or {}

        def fail(where: str, msg: str) -> GenotypeError:
            line = lines.get(where)
            return GenotypeError(f"{source}{f' line {line}' if line else ''}: {msg}")

        if not isinstance(data, Mapping):
            raise fail("", "expected a mapping with keys bottom_width, cells, skips")
        unknown = sorted(set(data) - {"bottom_width", "cells", "skips"})
        if unknown:
            raise fail(
                str(unknown[0]), f"unknown key {unknown[0]!r} (keys: bottom_width, cells, skips)"
            )
        for key in ("bottom_width", "cells", "skips"):
            if key not in data:
                raise fail("", f"missing key {key!r}")
        cells = data["cells"]
        if not isinstance(cells, list) or len(cells) != NUM_CELLS:
            n = len(cells) if isinstance(cells, list) else "no list of"
            raise fail("cells", f"cells: {n} cells listed, the space has {NUM_CELLS}")
        edges: dict[str, str] = {}

        def take(prefix: str, ops: Any, count: int, where: str) -> None:
            if not isinstance(ops, list):
                raise fail(where, f"{where}: expected a list of {count} ops, got {ops!r}")
            if len(ops) != count:
                edge = f"{prefix}{min(len(ops), count)}"
                what = "missing" if len(ops) < count else "extra edge"
                raise fail(
                    where,
                    f"edge {edge}: {what} ({where} lists {len(ops)} ops, the space has {count})",
                )
            for j, op in enumerate(ops):
                name = f"{prefix}{j}"
                if op not in edge_ops(name):
                    raise fail(
                        name, f"edge {name}: unknown op {op!r} (ops: {', '.join(edge_ops(name))})"
                    )
                edges[name] = op

        for c, cell in enumerate(cells, start=1):
            where = f"cells[{c - 1}]"
            if not isinstance(cell, Mapping) or set(cell) != {"normal", "up"}:
                raise fail(where, f"{where} (cell{c}): expected keys normal and up, got {cell!r}")
            take(f"cell{c}.normal", cell["normal"], NUM_NORMAL, f"cell{c}.normal")
            take(f"cell{c}.up", cell["up"], NUM_UP, f"cell{c}.up")
        skips = data["skips"]
        want = {f"cell{c}" for c in range(2, NUM_CELLS + 1)}
        if not isinstance(skips, Mapping) or set(skips) != want:
            got = sorted(skips) if isinstance(skips, Mapping) else skips
            raise fail("skips", f"skips: expected keys {', '.join(sorted(want))}, got {got!r}")
        for c in range(2, NUM_CELLS + 1):
            take(f"cell{c}.skip", skips[f"cell{c}"], len(SKIP_SOURCES[c]), f"cell{c}.skip")
        bw = data["bottom_width"]
        if isinstance(bw, bool) or not isinstance(bw, int) or bw < 1:
            raise fail("bottom_width", f"bottom_width must be a positive integer, got {bw!r}")
        return cls(edges, bw, source=source)

    @classmethod
    def load(cls, path: str | Path, bottom_width: int | None = None) -> Genotype:
        """Read a genotype YAML; with ``bottom_width``, also :meth:`check` it."""
        path = Path(path)
        source = f"genotype {path}"
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise GenotypeError(f"{source}: cannot read ({e.strerror or e})") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            bad = raw[e.start : min(e.end, e.start + 4)]
            raise GenotypeError(
                f"{source} line {line}: not UTF-8 text (byte {bad!r}); a genotype is a YAML "
                "file: re-save it as UTF-8"
            ) from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise GenotypeError(
                f"{source}{where}: not valid YAML ({getattr(e, 'problem', e)})"
            ) from None
        genotype = cls.from_dict(data, source=source, lines=_edge_lines(node))
        if bottom_width is not None:
            genotype.check(bottom_width)
        return genotype


def _edge_lines(node: Any) -> dict[str, int]:
    """Line numbers (1-based) of the keys, edge lists and single edges in a composed YAML node."""
    lines: dict[str, int] = {}
    if not isinstance(node, yaml.MappingNode):
        return lines

    def items(n: Any) -> dict[str, Any]:
        return {k.value: (k, v) for k, v in n.value} if isinstance(n, yaml.MappingNode) else {}

    def edge_list(prefix: str, seq: Any, where: str) -> None:
        lines[where] = seq.start_mark.line + 1
        if isinstance(seq, yaml.SequenceNode):
            for j, item in enumerate(seq.value):
                lines[f"{prefix}{j}"] = item.start_mark.line + 1

    top = items(node)
    for key, (k, _) in top.items():
        lines[str(key)] = k.start_mark.line + 1
    if "cells" in top and isinstance(top["cells"][1], yaml.SequenceNode):
        for c, cell in enumerate(top["cells"][1].value, start=1):
            lines[f"cells[{c - 1}]"] = cell.start_mark.line + 1
            for kind, (_, v) in items(cell).items():
                edge_list(f"cell{c}.{kind}", v, f"cell{c}.{kind}")
    if "skips" in top:
        for key, (_, v) in items(top["skips"][1]).items():
            edge_list(f"{key}.skip", v, f"{key}.skip")
    return lines


def shipped_genotypes() -> dict[str, Path]:
    """The genotypes shipped with the package (``alphagan_l``, ``alphagan_s``)."""
    return {p.stem: p for p in sorted(GENOTYPES_DIR.glob("*.yaml"))}


def load_genotype(name_or_path: str | Path, bottom_width: int | None = None) -> Genotype:
    """A shipped genotype by name (``alphagan_l``, ``alphagan_s``) or a YAML file by path."""
    shipped = shipped_genotypes()
    if str(name_or_path) in shipped:
        return Genotype.load(shipped[str(name_or_path)], bottom_width)
    path = Path(name_or_path)
    if not path.exists():
        raise GenotypeError(
            f"genotype {name_or_path}: no such file and not a shipped genotype "
            f"(shipped: {', '.join(shipped)})"
        )
    return Genotype.load(path, bottom_width)
