"""A TextNAS architecture: the type, its rules and the project's YAML format.

An architecture is a list of ``num_layers`` layers.  Layer ``i`` reads **one** input
(the stem for layer 0, otherwise one of the previous ``k`` layers), applies **one**
of the eight candidate ops and adds **any subset** of the earlier layers 0..i-1
as skip connections (docs/textnas.md, "The search space").  :class:`Architecture` checks
these rules on construction, so every instance is a valid member of the space.

The YAML format (written by search and by :meth:`Architecture.save`)::

    name: textnas_released
    source: "..."
    num_layers: 24
    k: 5
    layers:
      - {op: max_pool, input: stem, skips: []}
      - {op: attention, input: 0, skips: []}

``input`` and ``skips`` hold *absolute* layer indices.  NNI's JSON and the official
``fixed_arc`` string live in :mod:`search_spaces.text.encodings`, which also holds
:func:`~search_spaces.text.encodings.load_any`; the op names and their aliases live in
:mod:`search_spaces.text.op_names`.

Plain Python (PyYAML for the YAML format): no torch, no Lightning.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from search_spaces.text.op_names import (
    OP_ALIASES,
    OP_NAMES,
    ArchitectureError,
    canonical_op,
    canonical_op_set,
)

__all__ = [
    "OP_NAMES",
    "OP_ALIASES",
    "STEM",
    "ArchitectureError",
    "LayerSpec",
    "Architecture",
    "canonical_op",
    "canonical_op_set",
    "shipped_architectures",
    "ARCHITECTURES_DIR",
]

#: Input id of layer 0 (the 1x1 conv stem over the embeddings).
STEM = -1

#: Directory holding the architectures shipped with the package.
ARCHITECTURES_DIR = Path(__file__).resolve().parent / "architectures"

_RELEASED_NAME = "textnas_released"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# ----------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerSpec:
    """One layer: ``op`` applied to layer ``input`` (absolute index, :data:`STEM` for
    layer 0), plus the sum of the outputs of the layers in ``skips`` (absolute,
    sorted on construction)."""

    input: int
    op: str
    skips: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        op = self.op
        if isinstance(op, (str, int)) and not isinstance(op, bool):
            try:
                op = canonical_op(op)
            except ArchitectureError:
                pass  # left as is; Architecture.validate names the layer
        object.__setattr__(self, "op", op)
        skips = self.skips
        if isinstance(skips, Iterable) and not isinstance(skips, (str, bytes)):
            try:
                skips = tuple(sorted(skips))
            except TypeError:
                skips = tuple(skips)
        object.__setattr__(self, "skips", skips)

    @property
    def op_index(self) -> int:
        """Index of the op in :data:`OP_NAMES` (NNI one-hot position, official op id)."""
        return OP_NAMES.index(self.op)


def _allowed_inputs(layer: int, k: int) -> list[int]:
    if layer == 0:
        return [STEM]
    return list(range(max(0, layer - k), layer))


def shipped_architectures() -> list[str]:
    """Names of the architecture files shipped in :data:`ARCHITECTURES_DIR`."""
    if not ARCHITECTURES_DIR.is_dir():
        return []
    return sorted(
        p.stem
        for p in ARCHITECTURES_DIR.iterdir()
        if p.suffix in (".yaml", ".yml", ".json", ".txt")
    )


# ------------------------------------------------------------------------ YAML dumper


class _FlowMap(dict):
    pass


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)  # indent list items under their key


def _represent_flow_map(dumper: yaml.SafeDumper, data: _FlowMap) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


_Dumper.add_representer(_FlowMap, _represent_flow_map)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArchitectureError(f"{path}: cannot read architecture file ({exc})") from exc


def _wrap(path: Path, exc: ArchitectureError) -> ArchitectureError:
    return ArchitectureError(f"{path}: {exc}")


# ----------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class Architecture:
    """A fixed TextNAS architecture; validated on construction.

    Equality and hashing compare ``layers`` and ``k`` only (``name``/``source`` are
    labels)."""

    layers: tuple[LayerSpec, ...]
    k: int = 5
    name: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        layers = tuple(
            spec if isinstance(spec, LayerSpec) else LayerSpec(*spec) for spec in self.layers
        )
        object.__setattr__(self, "layers", layers)
        self.validate()

    # ------------------------------------------------------------------ basics
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def validate(self, num_layers: int | None = None, k: int | None = None) -> Architecture:
        """Check every rule; raise :class:`ArchitectureError` naming the layer.  Returns
        ``self``.  ``num_layers``/``k`` check against a network's configuration."""
        k = self.k if k is None else k
        if not _is_int(k) or k < 1:
            raise ArchitectureError(f"k must be a positive integer, got {k!r}")
        if num_layers is not None and num_layers != len(self.layers):
            raise ArchitectureError(
                f"architecture has {len(self.layers)} layers but {num_layers} were expected"
            )
        if not self.layers:
            raise ArchitectureError("architecture has no layers")
        for i, spec in enumerate(self.layers):
            if not isinstance(spec, LayerSpec):
                raise ArchitectureError(f"layer {i}: expected a LayerSpec, got {spec!r}")
            if spec.op not in OP_NAMES:
                raise ArchitectureError(
                    f"layer {i}: unknown op {spec.op!r} (valid: {', '.join(OP_NAMES)})"
                )
            if not _is_int(spec.input):
                raise ArchitectureError(f"layer {i}: input must be an integer, got {spec.input!r}")
            if i == 0:
                if spec.input != STEM:
                    raise ArchitectureError(
                        f"layer 0: input must be the stem ({STEM}), got {spec.input}"
                    )
            else:
                allowed = _allowed_inputs(i, k)
                if spec.input not in allowed:
                    shown = "stem" if spec.input == STEM else spec.input
                    raise ArchitectureError(
                        f"layer {i}: input {shown} is not one of the previous {len(allowed)} "
                        f"layers ({allowed[0]}..{allowed[-1]} allowed: "
                        f"{', '.join(map(str, allowed))})"
                    )
            if not isinstance(spec.skips, tuple):
                raise ArchitectureError(f"layer {i}: skips must be a sequence of layer indices")
            for s in spec.skips:
                if not _is_int(s):
                    raise ArchitectureError(f"layer {i}: skip {s!r} is not a layer index")
                if not 0 <= s < i:
                    allowed_txt = f"0..{i - 1} allowed" if i else "layer 0 has no skips"
                    raise ArchitectureError(
                        f"layer {i}: skip to layer {s} is not an earlier layer ({allowed_txt})"
                    )
            if len(set(spec.skips)) != len(spec.skips):
                raise ArchitectureError(f"layer {i}: duplicate skips {list(spec.skips)}")
        return self

    # --------------------------------------------------------------- statistics

    def num_skips(self) -> int:
        return sum(len(spec.skips) for spec in self.layers)

    def num_possible_skips(self) -> int:
        n = self.num_layers
        return n * (n - 1) // 2

    def skip_rate(self) -> float:
        """Fraction of the ``n(n-1)/2`` possible skips that are on (101/276 released)."""
        possible = self.num_possible_skips()
        return self.num_skips() / possible if possible else 0.0

    def describe(self, sep: str = "  ") -> str:
        """Compact text: ``L0 max_pool<-stem  L1 attention<-0  L3 rnn<-2 [1,2] ...``."""
        parts = []
        for i, spec in enumerate(self.layers):
            src = "stem" if spec.input == STEM else str(spec.input)
            text = f"L{i} {spec.op}<-{src}"
            if spec.skips:
                text += " [" + ",".join(map(str, spec.skips)) + "]"
            parts.append(text)
        return sep.join(parts)

    def __str__(self) -> str:
        label = self.name or "architecture"
        return (
            f"{label} ({self.num_layers} layers, k={self.k}, "
            f"skips {self.num_skips()}/{self.num_possible_skips()}): {self.describe()}"
        )

    # --------------------------------------------------------------------- dict
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "num_layers": self.num_layers,
            "k": self.k,
            "layers": [
                {
                    "op": spec.op,
                    "input": "stem" if spec.input == STEM else spec.input,
                    "skips": list(spec.skips),
                }
                for spec in self.layers
            ],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], num_layers: int | None = None, k: int | None = None
    ) -> Architecture:
        """Build from :meth:`to_dict` output (aliases accepted); validates.  Extra
        top-level keys are ignored; ``num_layers``/``k`` arguments check/override."""
        if not isinstance(data, Mapping):
            raise ArchitectureError(
                f"expected a mapping with a 'layers' list, got {type(data).__name__}"
            )
        if "layers" not in data:
            raise ArchitectureError("missing 'layers' list")
        raw_layers = data["layers"]
        if not isinstance(raw_layers, list):
            raise ArchitectureError(f"'layers' must be a list, got {type(raw_layers).__name__}")
        file_k = data.get("k", 5)
        if not _is_int(file_k) or file_k < 1:
            raise ArchitectureError(f"k must be a positive integer, got {file_k!r}")
        if k is None:
            k = file_k
        declared = data.get("num_layers")
        if declared is not None and declared != len(raw_layers):
            raise ArchitectureError(
                f"num_layers is {declared} but {len(raw_layers)} layers are listed"
            )
        layers = [_layer_from_dict(i, item) for i, item in enumerate(raw_layers)]
        name = data.get("name") or ""
        source = data.get("source") or ""
        arch = cls(tuple(layers), k=k, name=str(name), source=str(source))
        if num_layers is not None:
            arch.validate(num_layers=num_layers)
        return arch

    # --------------------------------------------------------------------- YAML
    def to_yaml(self) -> str:
        data = self.to_dict()
        data["layers"] = [_FlowMap(item) for item in data["layers"]]
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)

    def save(self, path: str | Path) -> Path:
        """Write to ``path``: YAML, or NNI JSON for ``.json``, or the official string for
        ``.txt`` (:mod:`~search_spaces.text.encodings`), so a search result can be handed to
        NNI or the official code as is.  Parent directories are created.  Returns the path."""
        from . import encodings  # encodings builds on this module

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(encodings.to_nni_json(self), indent=2) + "\n"
        elif suffix == ".txt":
            text = encodings.to_official_string(self) + "\n"
        else:
            text = self.to_yaml()
        path.write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        """Read a YAML architecture; any problem raises :class:`ArchitectureError`
        naming the file."""
        path = Path(path)
        text = _read_text(path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ArchitectureError(f"{path}: invalid YAML ({exc})") from exc
        if isinstance(data, Mapping) and "layers" not in data and _looks_nni(data):
            raise ArchitectureError(
                f"{path}: this is an NNI JSON architecture; use Architecture.load_any or "
                "search_spaces.text.encodings.from_nni_json"
            )
        try:
            return cls.from_dict(data)
        except ArchitectureError as exc:
            raise _wrap(path, exc) from exc

    @classmethod
    def load_any(cls, path_or_name: str | Path, num_layers: int = 24, k: int = 5) -> Architecture:
        """Any architecture file (YAML, NNI JSON, official string) or a shipped name; see
        :func:`search_spaces.text.encodings.load_any`."""
        from .encodings import load_any

        return load_any(path_or_name, num_layers=num_layers, k=k)

    # ----------------------------------------------------------------- shipped
    @classmethod
    def released(cls) -> Architecture:
        """The released TextNAS architecture (NNI ``arc/final_arc.json``; docs/textnas.md)."""
        return _load_released()


# ------------------------------------------------------------------------ helpers


def _looks_nni(data: Mapping[str, Any]) -> bool:
    return any(re.fullmatch(r"(LayerChoice|InputChoice)\d+", str(key)) for key in data)


def _layer_from_dict(i: int, item: Any) -> LayerSpec:
    if not isinstance(item, Mapping):
        raise ArchitectureError(f"layer {i}: expected a mapping with op/input/skips, got {item!r}")
    extra = set(item) - {"op", "input", "skips"}
    if extra:
        raise ArchitectureError(
            f"layer {i}: unknown fields {sorted(extra)} (expected op, input, skips)"
        )
    if "op" not in item:
        raise ArchitectureError(f"layer {i}: missing 'op'")
    op = item["op"]
    if _is_int(op) or isinstance(op, str):
        try:
            op = canonical_op(op)
        except ArchitectureError as exc:
            raise ArchitectureError(f"layer {i}: {exc}") from exc
    else:
        raise ArchitectureError(f"layer {i}: unknown op {op!r} (valid: {', '.join(OP_NAMES)})")
    raw_input = item.get("input", "stem" if i == 0 else None)
    if raw_input is None:
        raise ArchitectureError(f"layer {i}: missing 'input'")
    if isinstance(raw_input, str) and raw_input.strip().lower() == "stem":
        inp = STEM
    elif _is_int(raw_input):
        inp = raw_input
    else:
        raise ArchitectureError(
            f"layer {i}: input must be 'stem' or a layer index, got {raw_input!r}"
        )
    raw_skips = item.get("skips", [])
    if raw_skips is None:
        raw_skips = []
    if not isinstance(raw_skips, list) or not all(_is_int(s) for s in raw_skips):
        raise ArchitectureError(
            f"layer {i}: skips must be a list of layer indices, got {raw_skips!r}"
        )
    return LayerSpec(inp, op, tuple(raw_skips))


def _resolve_name(name: str) -> Path:
    base = name[:-5] if name.endswith(".yaml") else name
    candidates = []
    for stem in (base, f"textnas_{base}"):
        for suffix in (".yaml", ".yml", ".json", ".txt"):
            candidates.append(ARCHITECTURES_DIR / f"{stem}{suffix}")
    for cand in candidates:
        if cand.is_file():
            return cand
    raise ArchitectureError(
        f"no architecture file or shipped architecture named {name!r} "
        f"(shipped: {', '.join(shipped_architectures()) or 'none'})"
    )


@functools.lru_cache(maxsize=1)
def _load_released() -> Architecture:
    return Architecture.load(ARCHITECTURES_DIR / f"{_RELEASED_NAME}.yaml")
