"""TextNAS architectures: a plain data description plus the public encodings.

An architecture is a list of ``num_layers`` layers.  Layer ``i`` reads **one** input
(the stem for layer 0, otherwise one of the previous ``k`` layers), applies **one**
of the eight candidate ops and adds **any subset** of the earlier layers 0..i-1
as skip connections (TextNAS reference sheet §1.1).

Three on-disk encodings are supported:

* **YAML** (this project's own format, also written by search)::

      name: textnas_released
      source: "..."
      num_layers: 24
      k: 5
      layers:
        - {op: max_pool, input: stem, skips: []}
        - {op: attention, input: 0, skips: []}

  ``input`` and ``skips`` hold *absolute* layer indices.

* **NNI JSON** (legacy ``nni.nas.pytorch`` ``FixedArchitecture``, e.g. NNI's
  ``examples/nas/legacy/textnas/arc/final_arc.json``).  Keys come from NNI's global
  mutable counter in creation order: layer 0 creates only ``LayerChoice1``; every
  later layer creates its input ``InputChoice``, its op ``LayerChoice`` and its skip
  ``InputChoice`` in that order (``InputChoice2``, ``LayerChoice3``, ``InputChoice4``
  for layer 1, ...), i.e. ``3 * num_layers - 2`` keys (70 for 24 layers).
  Input candidates are the previous ``min(i, k)`` layers, skip candidates all
  previous layers, both oldest first.  Values are one-/multi-hot lists (booleans,
  or 0/1), or NNI's readable export (PR #2389): an op index (or a name) for a
  ``LayerChoice``, ``"layer_j"`` names (or candidate indices) for an ``InputChoice``.

* **Official string** (``--child_fixed_arc`` of ``microsoft/TextNAS``,
  ``eval_arc_sst2.sh``): whitespace-separated integers.  With ``multi_path`` (k > 1)
  every layer ``i`` contributes ``input op skip_0 .. skip_{i-1}`` (``i + 2`` numbers;
  layer 0 has an input field that is ignored), where ``input`` is *relative*:
  ``r`` means layer ``i - 1 - r`` (0 = previous layer) and any ``r >= min(i, k)``
  falls back to the previous layer.  Without ``multi_path`` a layer is
  ``op skip_0 .. skip_{i-1}`` and always reads the previous layer.

This module is plain Python (PyYAML for the YAML format); it imports neither torch
nor Lightning.
"""

from __future__ import annotations

import functools
import json
import math
import random as _random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "OP_NAMES",
    "OP_ALIASES",
    "STEM",
    "ArchitectureError",
    "LayerSpec",
    "Architecture",
    "canonical_op",
    "nni_key_layout",
    "official_string_length",
    "space_size_log10",
    "shipped_architectures",
    "ARCHITECTURES_DIR",
]

#: Candidate ops; the index is the NNI one-hot position and the official op id.
OP_NAMES: tuple[str, ...] = (
    "conv1",
    "conv3",
    "conv5",
    "conv7",
    "avg_pool",
    "max_pool",
    "rnn",
    "attention",
)

#: Input id of layer 0 (the 1x1 conv stem over the embeddings).
STEM = -1

#: Directory holding the architectures shipped with the package.
ARCHITECTURES_DIR = Path(__file__).resolve().parent / "architectures"

_RELEASED_NAME = "textnas_released"


def _norm_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _build_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for i, op in enumerate(OP_NAMES):
        aliases[_norm_key(op)] = op
        aliases[str(i)] = op  # NNI's LayerChoice names for an unnamed candidate list
    for size in (1, 3, 5, 7):
        op = f"conv{size}"
        for alias in (f"conv{size}x{size}", f"conv1d{size}", f"convk{size}", f"conv{size}x1"):
            aliases[alias] = op
    for alias in ("avgpool", "avgpool3", "averagepool", "averagepooling", "meanpool", "avgpooling"):
        aliases[alias] = "avg_pool"
    for alias in ("maxpool", "maxpool3", "maxpooling"):
        aliases[alias] = "max_pool"
    for alias in ("rnn", "gru", "bigru", "birnn", "recurrent", "bidirectionalgru"):
        aliases[alias] = "rnn"
    for alias in (
        "attention",
        "attn",
        "selfattention",
        "selfattn",
        "multiheadattention",
        "multiheadselfattention",
        "mha",
    ):
        aliases[alias] = "attention"
    return aliases


#: Normalised alias (lower case, no ``_``/``-``/spaces) -> canonical op name.
OP_ALIASES: dict[str, str] = _build_aliases()


class ArchitectureError(ValueError):
    """An architecture that breaks the TextNAS rules, or a file that cannot be decoded."""


def canonical_op(op: str | int) -> str:
    """Map an op name, alias (``"maxpool"``, ``"biGRU"``, ``"attn"``...) or index to its
    canonical name in :data:`OP_NAMES`.  Raises :class:`ArchitectureError` if unknown."""
    if isinstance(op, bool):
        raise ArchitectureError(f"unknown op {op!r} (valid: {', '.join(OP_NAMES)})")
    if isinstance(op, int):
        if 0 <= op < len(OP_NAMES):
            return OP_NAMES[op]
        raise ArchitectureError(
            f"unknown op id {op} (valid: 0..{len(OP_NAMES) - 1} = {', '.join(OP_NAMES)})"
        )
    if isinstance(op, str):
        found = OP_ALIASES.get(_norm_key(op))
        if found is not None:
            return found
    raise ArchitectureError(f"unknown op {op!r} (valid: {', '.join(OP_NAMES)})")


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


def nni_key_layout(num_layers: int = 24, k: int = 5, offset: int = 0) -> list[tuple[str, int, str]]:
    """NNI mutable keys in creation order as ``(key, layer, kind)`` with ``kind`` in
    ``{"input", "op", "skip"}``.  ``offset`` shifts NNI's global counter (keys start at
    ``offset + 1``; non-zero when NNI built another model earlier in the process)."""
    layout: list[tuple[str, int, str]] = []
    counter = offset
    for layer in range(num_layers):
        if layer > 0:
            counter += 1
            layout.append((f"InputChoice{counter}", layer, "input"))
        counter += 1
        layout.append((f"LayerChoice{counter}", layer, "op"))
        if layer > 0:
            counter += 1
            layout.append((f"InputChoice{counter}", layer, "skip"))
    return layout


def official_string_length(num_layers: int = 24, multi_path: bool = True) -> int:
    """Number of integers in an official ``fixed_arc`` string."""
    n = num_layers
    return n * (n + 3) // 2 if multi_path else n * (n + 1) // 2


def space_size_log10(num_layers: int = 24, k: int = 5, n_ops: int = len(OP_NAMES)) -> float:
    """log10 of the number of architectures: layer ``l`` has ``n_ops`` ops,
    ``max(1, min(l, k))`` inputs and ``2**l`` skip subsets (≈ 119.4 for 24 layers, k=5;
    ≈ 104.8 for k=1)."""
    if num_layers < 0 or k < 1 or n_ops < 1:
        raise ValueError("need num_layers >= 0, k >= 1, n_ops >= 1")
    total = 0.0
    for layer in range(num_layers):
        total += math.log10(n_ops) + math.log10(max(1, min(layer, k))) + layer * math.log10(2)
    return total


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


# ------------------------------------------------------------------------ NNI helpers


def _to_plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays, torch tensors
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    return value


def _nni_decode(value: Any, n: int, names: Sequence[str], what: str) -> list[int]:
    """Chosen candidate indices of one NNI decision over ``n`` candidates.

    Multi-hot: a list of booleans (or of 0/1 numbers) of length ``n``.  Anything else is
    read as NNI's readable form: an index, a candidate name, or a list of them.
    Note: a 0/1 integer list of length ``n`` is read as multi-hot (NNI itself would read
    integer lists as indices; the two only clash for n <= 2)."""
    value = _to_plain(value)
    if isinstance(value, list) and value:
        if all(isinstance(v, bool) for v in value):
            if len(value) != n:
                raise ArchitectureError(f"{what}: expected {n} values, got {len(value)}")
            return [i for i, v in enumerate(value) if v]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if numeric and len(value) == n:
            if any(v not in (0, 1) for v in value):
                raise ArchitectureError(
                    f"{what}: multi-hot values must be booleans or 0/1, got {value}"
                )
            return [i for i, v in enumerate(value) if v == 1]
        if numeric and any(isinstance(v, float) for v in value):
            raise ArchitectureError(f"{what}: expected {n} values, got {len(value)}")
    items = value if isinstance(value, list) else [value]
    chosen: list[int] = []
    for item in items:
        if _is_int(item):
            idx = item
        elif isinstance(item, str) and item in names:
            idx = list(names).index(item)
        elif isinstance(item, str) and item.strip().isdigit():
            idx = int(item)
        else:
            raise ArchitectureError(
                f"{what}: cannot read {item!r} (expected a one-/multi-hot list of {n} values, "
                f"an index or one of {list(names)})"
            )
        if not 0 <= idx < n:
            raise ArchitectureError(f"{what}: index {idx} out of range (0..{n - 1})")
        if idx in chosen:
            raise ArchitectureError(f"{what}: index {idx} chosen twice")
        chosen.append(idx)
    return sorted(chosen)


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
    def op_counts(self) -> dict[str, int]:
        """Occurrences of every op (all of :data:`OP_NAMES`, in that order)."""
        counts = dict.fromkeys(OP_NAMES, 0)
        for spec in self.layers:
            counts[spec.op] += 1
        return counts

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
        ``.txt``.  Parent directories are created.  Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.to_nni_json(), indent=2) + "\n"
        elif suffix == ".txt":
            text = self.to_official_string() + "\n"
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
                "Architecture.from_nni_json"
            )
        try:
            return cls.from_dict(data)
        except ArchitectureError as exc:
            raise _wrap(path, exc) from exc

    # ---------------------------------------------------------------------- NNI
    def to_nni_json(self, readable: bool = False, offset: int = 0) -> dict[str, Any]:
        """NNI ``FixedArchitecture`` dict (keys in creation order).  ``readable`` gives
        NNI's export form (op index, ``"layer_j"`` names) instead of boolean lists."""
        out: dict[str, Any] = {}
        for key, layer, kind in nni_key_layout(self.num_layers, self.k, offset):
            spec = self.layers[layer]
            if kind == "op":
                if readable:
                    out[key] = spec.op_index
                else:
                    out[key] = [i == spec.op_index for i in range(len(OP_NAMES))]
            elif kind == "input":
                cands = _allowed_inputs(layer, self.k)
                if readable:
                    out[key] = f"layer_{spec.input}"
                else:
                    out[key] = [c == spec.input for c in cands]
            else:
                if readable:
                    names = [f"layer_{s}" for s in spec.skips]
                    out[key] = names[0] if len(names) == 1 else names
                else:
                    out[key] = [j in spec.skips for j in range(layer)]
        return out

    @classmethod
    def from_nni_json(
        cls,
        obj_or_path: Mapping[str, Any] | str | Path,
        num_layers: int | None = 24,
        k: int = 5,
        offset: int | None = None,
    ) -> Architecture:
        """Decode an NNI JSON architecture (dict, JSON text or file path).

        ``num_layers=None`` infers it from the number of ``LayerChoice`` keys.
        ``offset=None`` detects a shifted global counter (smallest key a
        ``LayerChoice``), else keys must start at ``offset + 1``."""
        path: Path | None = None
        obj: Any = obj_or_path
        if isinstance(obj_or_path, (str, Path)) and not (
            isinstance(obj_or_path, str) and obj_or_path.lstrip().startswith("{")
        ):
            path = Path(obj_or_path)
            obj = _read_text(path)
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                where = f"{path}: " if path else ""
                raise ArchitectureError(f"{where}invalid JSON ({exc})") from exc
        try:
            return cls._from_nni_dict(obj, num_layers, k, offset, name=path.stem if path else "")
        except ArchitectureError as exc:
            if path is not None:
                raise _wrap(path, exc) from exc
            raise

    @classmethod
    def _from_nni_dict(
        cls, obj: Any, num_layers: int | None, k: int, offset: int | None, name: str
    ) -> Architecture:
        if not isinstance(obj, Mapping):
            raise ArchitectureError(
                f"NNI architecture must be a JSON object, got {type(obj).__name__}"
            )
        numbered: dict[int, str] = {}
        for key in obj:
            m = re.fullmatch(r"(LayerChoice|InputChoice)(\d+)", str(key))
            if m:
                numbered[int(m.group(2))] = str(key)
        if num_layers is None:
            num_layers = sum(1 for key in numbered.values() if key.startswith("LayerChoice"))
            if num_layers == 0:
                raise ArchitectureError("no LayerChoice keys found")
        if offset is None:
            offset = 0
            if numbered:
                first = min(numbered)
                if numbered[first].startswith("LayerChoice"):
                    offset = first - 1
        layout = nni_key_layout(num_layers, k, offset)
        expected = [key for key, _, _ in layout]
        unexpected = [key for key in obj if key not in set(expected)]
        if unexpected:
            raise ArchitectureError(
                f"unexpected keys {unexpected[:6]}{' ...' if len(unexpected) > 6 else ''}; "
                f"{num_layers} layers with k={k} have {len(expected)} keys "
                f"({expected[0]}..{expected[-1]}), the file has {len(obj)}"
            )
        inputs: dict[int, int] = {0: STEM}
        ops: dict[int, str] = {}
        skips: dict[int, tuple[int, ...]] = {0: ()}
        for key, layer, kind in layout:
            what = f"{key} (layer {layer} {kind})"
            if key not in obj:
                raise ArchitectureError(
                    f"missing key {key} (layer {layer} {kind}); {num_layers} layers with k={k} "
                    f"need {len(expected)} keys, the file has {len(obj)}"
                )
            value = obj[key]
            if kind == "op":
                alt = _to_plain(value)
                alt = alt[0] if isinstance(alt, list) and len(alt) == 1 else alt
                if isinstance(alt, str) and not alt.strip().isdigit():
                    try:  # readable op name or alias
                        ops[layer] = canonical_op(alt)
                    except ArchitectureError as exc:
                        raise ArchitectureError(f"{what}: {exc}") from exc
                    continue
                chosen = _nni_decode(value, len(OP_NAMES), [str(i) for i in range(8)], what)
                if len(chosen) != 1:
                    raise ArchitectureError(
                        f"{what}: exactly one op must be chosen, got {len(chosen)} {chosen}"
                    )
                ops[layer] = OP_NAMES[chosen[0]]
            elif kind == "input":
                cands = _allowed_inputs(layer, k)
                try:
                    chosen = _nni_decode(value, len(cands), [f"layer_{c}" for c in cands], what)
                except ArchitectureError as exc:
                    raise ArchitectureError(
                        f"{exc} (input candidates are the previous min(i, k={k}) layers; "
                        "was it searched with another k?)"
                    ) from exc
                if len(chosen) != 1:
                    raise ArchitectureError(
                        f"{what}: exactly one input must be chosen among layers "
                        f"{cands}, got {len(chosen)}"
                    )
                inputs[layer] = cands[chosen[0]]
            else:
                chosen = _nni_decode(value, layer, [f"layer_{j}" for j in range(layer)], what)
                skips[layer] = tuple(chosen)
        layers = tuple(LayerSpec(inputs[i], ops[i], skips[i]) for i in range(num_layers))
        return cls(layers, k=k, name=name, source="NNI JSON")

    # ----------------------------------------------------------------- official
    def to_official_string(self, multi_path: bool | None = None) -> str:
        """Official ``fixed_arc`` string (canonical: relative input 0 = previous layer,
        layer 0's ignored input field written as 0).  ``multi_path`` defaults to
        ``k > 1``; without it every input must be the previous layer."""
        if multi_path is None:
            multi_path = self.k > 1
        values: list[int] = []
        for i, spec in enumerate(self.layers):
            if multi_path:
                values.append(0 if i == 0 else i - 1 - spec.input)
            elif i > 0 and spec.input != i - 1:
                raise ArchitectureError(
                    f"layer {i}: input {spec.input} is not the previous layer; use multi_path=True"
                )
            values.append(spec.op_index)
            values.extend(1 if j in spec.skips else 0 for j in range(i))
        return " ".join(map(str, values))

    @classmethod
    def from_official_string(
        cls,
        s: str | Sequence[int],
        num_layers: int = 24,
        k: int = 5,
        multi_path: bool | None = None,
    ) -> Architecture:
        """Decode an official ``fixed_arc`` string (or a sequence of ints).

        ``multi_path=None`` picks the layout from the length (``n(n+3)/2`` numbers with
        input ids, ``n(n+1)/2`` without).  Relative input ``r`` of layer ``i`` means
        layer ``i-1-r``; ``r >= min(i, k)`` falls back to the previous layer, as in the
        official child model.  Lines starting with ``#`` are ignored."""
        if isinstance(s, str):
            tokens = []
            for line in s.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                tokens.extend(line.replace(",", " ").split())
            try:
                values = [int(t) for t in tokens]
            except ValueError as exc:
                raise ArchitectureError(f"official string: not an integer ({exc})") from exc
        else:
            values = [int(v) for v in s]
        n_multi = official_string_length(num_layers, True)
        n_single = official_string_length(num_layers, False)
        if multi_path is None:
            if len(values) == n_multi:
                multi_path = True
            elif len(values) == n_single:
                multi_path = False
            else:
                raise ArchitectureError(
                    f"official string has {len(values)} numbers; {num_layers} layers need "
                    f"{n_multi} (multi_path) or {n_single} (single path)"
                )
        expected = n_multi if multi_path else n_single
        if len(values) != expected:
            raise ArchitectureError(
                f"official string has {len(values)} numbers; {num_layers} layers "
                f"{'with' if multi_path else 'without'} multi_path need {expected}"
            )
        layers = []
        pos = 0
        for i in range(num_layers):
            if multi_path:
                rel = values[pos]
                pos += 1
                if rel < 0:
                    raise ArchitectureError(f"layer {i}: negative relative input id {rel}")
                if i == 0:
                    inp = STEM  # the field exists but the child model ignores it
                elif rel >= min(i, k):
                    inp = i - 1  # official fallback to the previous layer
                else:
                    inp = i - 1 - rel
            else:
                inp = STEM if i == 0 else i - 1
            op_id = values[pos]
            pos += 1
            try:
                op = canonical_op(op_id)
            except ArchitectureError as exc:
                raise ArchitectureError(f"layer {i}: {exc}") from exc
            bits = values[pos : pos + i]
            pos += i
            bad = [b for b in bits if b not in (0, 1)]
            if bad:
                raise ArchitectureError(f"layer {i}: skip flags must be 0/1, got {bits}")
            layers.append(LayerSpec(inp, op, tuple(j for j, b in enumerate(bits) if b == 1)))
        return cls(tuple(layers), k=k, source="official fixed_arc string")

    # --------------------------------------------------------------- discovery
    @classmethod
    def load_any(cls, path_or_name: str | Path, num_layers: int = 24, k: int = 5) -> Architecture:
        """Load by extension/content: ``.yaml``/``.yml`` (this format), ``.json`` (NNI, or
        this format as JSON), anything else: YAML mapping, NNI JSON or official string.
        A bare name (``"released"``, ``"textnas_released"``) resolves to a shipped file.
        ``num_layers``/``k`` apply to the NNI and official encodings."""
        path = Path(path_or_name)
        if not path.exists():
            path = _resolve_name(str(path_or_name))
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return cls.load(path)
        text = _read_text(path)
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ArchitectureError(f"{path}: invalid JSON ({exc})") from exc
            if isinstance(data, Mapping) and "layers" in data:
                try:
                    arch = cls.from_dict(data)
                except ArchitectureError as exc:
                    raise _wrap(path, exc) from exc
                return arch
            return cls.from_nni_json(path, num_layers=num_layers, k=k)
        stripped = "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("#")
        ).strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except json.JSONDecodeError:
                data = None
            if isinstance(data, Mapping) and "layers" not in data:
                return cls.from_nni_json(path, num_layers=num_layers, k=k)
        if re.fullmatch(r"[\d\s,\-]*", stripped):
            try:
                arch = cls.from_official_string(text, num_layers=num_layers, k=k)
            except ArchitectureError as exc:
                raise _wrap(path, exc) from exc
            return _renamed(arch, path.stem)
        return cls.load(path)

    @classmethod
    def released(cls) -> Architecture:
        """The released TextNAS architecture (reference sheet §1.5)."""
        return _load_released()

    @classmethod
    def random(
        cls,
        num_layers: int,
        k: int = 5,
        seed: int = 0,
        skip_prob: float = 0.5,
        ops: Sequence[str] = OP_NAMES,
    ) -> Architecture:
        """Uniform op, uniform input among the allowed ones, Bernoulli(``skip_prob``) per
        possible skip; deterministic per ``seed`` (own ``random.Random``)."""
        if num_layers < 1:
            raise ArchitectureError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= skip_prob <= 1.0:
            raise ArchitectureError(f"skip_prob must be in [0, 1], got {skip_prob}")
        op_list = [canonical_op(op) for op in ops]
        if not op_list:
            raise ArchitectureError("ops must not be empty")
        rng = _random.Random(seed)
        layers = []
        for i in range(num_layers):
            op = op_list[rng.randrange(len(op_list))]
            allowed = _allowed_inputs(i, k)
            inp = allowed[rng.randrange(len(allowed))]
            skips = tuple(j for j in range(i) if rng.random() < skip_prob)
            layers.append(LayerSpec(inp, op, skips))
        return cls(
            tuple(layers),
            k=k,
            name=f"random_seed{seed}",
            source=f"Architecture.random(seed={seed})",
        )


# ------------------------------------------------------------------------ helpers


def _looks_nni(data: Mapping[str, Any]) -> bool:
    return any(re.fullmatch(r"(LayerChoice|InputChoice)\d+", str(key)) for key in data)


def _renamed(arch: Architecture, name: str) -> Architecture:
    if arch.name:
        return arch
    return Architecture(arch.layers, k=arch.k, name=name, source=arch.source)


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
