"""The two public on-disk encodings of a TextNAS architecture, and :func:`load_any`.

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

Op ids are positions in :data:`~search_spaces.text.architecture.OP_NAMES` in both.
The project's own YAML format lives with the type in :mod:`search_spaces.text.architecture`;
:func:`load_any` picks among the three (and shipped names) by extension and content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .architecture import (
    OP_NAMES,
    STEM,
    Architecture,
    ArchitectureError,
    LayerSpec,
    _allowed_inputs,
    _is_int,
    _read_text,
    _resolve_name,
    _wrap,
    canonical_op,
)

__all__ = [
    "nni_key_layout",
    "official_string_length",
    "to_nni_json",
    "from_nni_json",
    "to_official_string",
    "from_official_string",
    "load_any",
]


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


# --------------------------------------------------------------------------------- NNI JSON


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


def to_nni_json(arch: Architecture, readable: bool = False, offset: int = 0) -> dict[str, Any]:
    """NNI ``FixedArchitecture`` dict (keys in creation order).  ``readable`` gives
    NNI's export form (op index, ``"layer_j"`` names) instead of boolean lists."""
    out: dict[str, Any] = {}
    for key, layer, kind in nni_key_layout(arch.num_layers, arch.k, offset):
        spec = arch.layers[layer]
        if kind == "op":
            if readable:
                out[key] = spec.op_index
            else:
                out[key] = [i == spec.op_index for i in range(len(OP_NAMES))]
        elif kind == "input":
            cands = _allowed_inputs(layer, arch.k)
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


def from_nni_json(
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
        return _from_nni_dict(obj, num_layers, k, offset, name=path.stem if path else "")
    except ArchitectureError as exc:
        if path is not None:
            raise _wrap(path, exc) from exc
        raise


def _from_nni_dict(
    obj: Any, num_layers: int | None, k: int, offset: int | None, name: str
) -> Architecture:
    if not isinstance(obj, Mapping):
        raise ArchitectureError(f"NNI architecture must be a JSON object, got {type(obj).__name__}")
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
            chosen = _nni_decode(value, len(OP_NAMES), [str(i) for i in range(len(OP_NAMES))], what)
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
    return Architecture(layers, k=k, name=name, source="NNI JSON")


# ---------------------------------------------------------------------- official string


def to_official_string(arch: Architecture, multi_path: bool | None = None) -> str:
    """Official ``fixed_arc`` string (canonical: relative input 0 = previous layer,
    layer 0's ignored input field written as 0).  ``multi_path`` defaults to
    ``k > 1``; without it every input must be the previous layer."""
    if multi_path is None:
        multi_path = arch.k > 1
    values: list[int] = []
    for i, spec in enumerate(arch.layers):
        if multi_path:
            values.append(0 if i == 0 else i - 1 - spec.input)
        elif i > 0 and spec.input != i - 1:
            raise ArchitectureError(
                f"layer {i}: input {spec.input} is not the previous layer; use multi_path=True"
            )
        values.append(spec.op_index)
        values.extend(1 if j in spec.skips else 0 for j in range(i))
    return " ".join(map(str, values))


def from_official_string(
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
    return Architecture(tuple(layers), k=k, source="official fixed_arc string")


# ------------------------------------------------------------------------------ any file


def load_any(path_or_name: str | Path, num_layers: int = 24, k: int = 5) -> Architecture:
    """Load by extension/content: ``.yaml``/``.yml`` (the project's format), ``.json`` (NNI,
    or the project's format as JSON), anything else: YAML mapping, NNI JSON or official string.
    A bare name (``"released"``, ``"textnas_released"``) resolves to a shipped file.
    ``num_layers``/``k`` apply to the NNI and official encodings."""
    path = Path(path_or_name)
    if not path.exists():
        path = _resolve_name(str(path_or_name))
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return Architecture.load(path)
    text = _read_text(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(f"{path}: invalid JSON ({exc})") from exc
        if isinstance(data, Mapping) and "layers" in data:
            try:
                arch = Architecture.from_dict(data)
            except ArchitectureError as exc:
                raise _wrap(path, exc) from exc
            return arch
        return from_nni_json(path, num_layers=num_layers, k=k)
    stripped = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ).strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, Mapping) and "layers" not in data:
            return from_nni_json(path, num_layers=num_layers, k=k)
    if re.fullmatch(r"[\d\s,\-]*", stripped):
        try:
            arch = from_official_string(text, num_layers=num_layers, k=k)
        except ArchitectureError as exc:
            raise _wrap(path, exc) from exc
        return _renamed(arch, path.stem)
    return Architecture.load(path)


def _renamed(arch: Architecture, name: str) -> Architecture:
    if arch.name:
        return arch
    return Architecture(arch.layers, k=arch.k, name=name, source=arch.source)
