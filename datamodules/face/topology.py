"""The rendering topology of a face data set: a PLY mesh's triangles (and its vertex count).

The data sets ship their mesh connectivity as a PLY file next to the vertices: VOCASET's
``FLAME_sample.ply`` (``make prepare-voca`` copies it to ``<root>/templates/``; CodeTalker and
SelfTalk keep it at ``<root>/FLAME_sample.ply``), BIWI's ``BIWI.ply`` (``<root>/`` or, as
FaceFormer has it, ``<root>/templates/``). :func:`read_ply` reads ASCII and binary PLY (little
and big endian) as the public tools write them: any numeric type for the coordinates, any
integer type for the face-list counts and indices; polygons are split into triangle fans.
:func:`load_topology` checks the vertex count against the data set's template. Every problem
is one :class:`~datamodules.errors.DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.errors import DataError

# PLY scalar types (both spellings of the spec) -> numpy type codes
PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
# where each data set keeps its PLY, relative to data.root, in the order looked at
DEFAULT_FILES = {
    "vocaset": ("templates/FLAME_sample.ply", "FLAME_sample.ply"),
    "biwi": ("BIWI.ply", "templates/BIWI.ply"),
}


@dataclass
class Topology:
    """A mesh's connectivity: ``faces`` (F, 3) int64 triangles over ``num_vertices`` vertices,
    and the PLY's own vertex positions (V, 3) (the file's mesh, e.g. a neutral face)."""

    vertices: np.ndarray
    faces: np.ndarray
    path: Path

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)


@dataclass
class _Element:
    name: str
    count: int
    properties: list[tuple[str, str, str | None]]  # (name, value type, list count type)


def _parse_header(path: Path, head: bytes) -> tuple[str, list[_Element], int]:
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    newline = head.find(b"\n", end)
    body_start = newline + 1 if newline >= 0 else len(head)
    lines = head[:end].decode("ascii", errors="replace").splitlines()[1:]
    fmt, elements = None, []
    for number, line in enumerate(lines, 2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
            if fmt not in FORMATS:
                raise DataError(f"{path}, line {number}: unknown PLY format {fmt!r}")
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append(_Element(words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list" and len(words) == 5:
                count, value = words[2], words[3]
                name = words[4]
            elif len(words) == 3:
                count, value, name = None, words[1], words[2]
            else:
                raise DataError(f"{path}, line {number}: cannot read the property {line!r}")
            for t in (count, value):
                if t is not None and t not in PLY_TYPES:
                    raise DataError(f"{path}, line {number}: unknown PLY type {t!r}")
            elements[-1].properties.append((name, value, count))
        else:
            raise DataError(f"{path}, line {number}: cannot read the header line {line!r}")
    if fmt is None:
        raise DataError(f"{path}: the PLY header has no 'format' line")
    return fmt, elements, body_start


def _read_ascii(path: Path, text: str, elements: list[_Element]) -> dict[str, list]:
    rows = iter(text.splitlines())
    out: dict[str, list] = {}
    for element in elements:
        values = []
        for i in range(element.count):
            line = next(rows, None)
            while line is not None and not line.strip():
                line = next(rows, None)
            if line is None:
                raise DataError(
                    f"{path}: the file ends after {i} of its {element.count} {element.name}s"
                )
            values.append(line.split())
        out[element.name] = values
    return out


def _ascii_columns(path: Path, element: _Element, rows: list) -> dict[str, np.ndarray]:
    if element.name == "face" or any(c is not None for _, _, c in element.properties):
        return {"face": _ascii_faces(path, element, rows)}
    width = len(element.properties)
    try:
        table = np.array([r[:width] for r in rows], dtype=np.float64).reshape(-1, width)
    except ValueError:
        raise DataError(f"{path}: a {element.name} line is not {width} numbers") from None
    return {name: table[:, i] for i, (name, _, _) in enumerate(element.properties)}


def _ascii_faces(path: Path, element: _Element, rows: list) -> list[np.ndarray]:
    faces = []
    for row in rows:
        try:
            n = int(row[0])
            faces.append(np.array(row[1 : 1 + n], dtype=np.int64))
        except (ValueError, IndexError):
            raise DataError(f"{path}: a face line is not a count and indices: {row}") from None
        if len(faces[-1]) != n:
            raise DataError(f"{path}: a face line has fewer indices than its count {n}")
    return faces


def _read_binary(
    path: Path, data: memoryview, elements: list[_Element], order: str
) -> dict[str, dict]:
    out, offset = {}, 0
    for element in elements:
        lists = [p for p in element.properties if p[2] is not None]
        if not lists:
            dtype = np.dtype([(n, order + PLY_TYPES[t]) for n, t, _ in element.properties])
            size = dtype.itemsize * element.count
            if offset + size > len(data):
                raise DataError(f"{path}: the file ends inside its {element.name} data")
            table = np.frombuffer(data, dtype=dtype, count=element.count, offset=offset)
            out[element.name] = {n: table[n].astype(np.float64) for n in table.dtype.names}
            offset += size
            continue
        faces, offset = _binary_lists(path, data, element, order, offset)
        out[element.name] = {"face": faces}
    return out


def _binary_lists(
    path: Path, data: memoryview, element: _Element, order: str, offset: int
) -> tuple[list[np.ndarray], int]:
    """A list element (faces) record by record; a fast path when every face has the same
    count (all triangles, as FLAME and BIWI)."""
    props = element.properties
    scalar = {n: np.dtype(order + PLY_TYPES[t]) for n, t, c in props if c is None}
    if len(props) == 1 and props[0][2] is not None:  # the usual: one index list, nothing else
        count_t = np.dtype(order + PLY_TYPES[props[0][2]])
        index_t = np.dtype(order + PLY_TYPES[props[0][1]])
        if element.count and offset + count_t.itemsize <= len(data):
            first = int(np.frombuffer(data, count_t, 1, offset)[0])
            record = np.dtype([("n", count_t), ("i", index_t, (first,))])
            if offset + record.itemsize * element.count <= len(data):
                table = np.frombuffer(data, record, element.count, offset)
                if (table["n"] == first).all():
                    ids = table["i"].astype(np.int64)
                    return list(ids), offset + record.itemsize * element.count
    faces = []
    for _ in range(element.count):
        for name, value_t, count_t in props:
            if count_t is None:
                offset += scalar[name].itemsize
                continue
            c_t, v_t = np.dtype(order + PLY_TYPES[count_t]), np.dtype(order + PLY_TYPES[value_t])
            if offset + c_t.itemsize > len(data):
                raise DataError(f"{path}: the file ends inside its {element.name} data")
            n = int(np.frombuffer(data, c_t, 1, offset)[0])
            offset += c_t.itemsize
            if offset + n * v_t.itemsize > len(data):
                raise DataError(f"{path}: the file ends inside its {element.name} data")
            values = np.frombuffer(data, v_t, n, offset).astype(np.int64)
            offset += n * v_t.itemsize
            if name in ("vertex_indices", "vertex_index"):
                faces.append(values)
    return faces, offset


def _triangulate(path: Path, faces: list[np.ndarray], num_vertices: int) -> np.ndarray:
    if faces and all(len(f) == 3 for f in faces):
        tris = np.stack(faces).astype(np.int64)
    else:
        tris_list = [
            np.array([f[0], f[i], f[i + 1]], dtype=np.int64)
            for f in faces
            for i in range(1, len(f) - 1)
        ]
        tris = np.stack(tris_list) if tris_list else np.zeros((0, 3), np.int64)
    if not len(tris):
        raise DataError(f"{path}: the PLY mesh has no faces (a point cloud cannot be rendered)")
    bad = tris[(tris < 0) | (tris >= num_vertices)]
    if bad.size:
        raise DataError(
            f"{path}: a face uses vertex {int(bad[0])}, outside the file's {num_vertices} vertices"
        )
    return tris


def read_ply(path: str | Path) -> Topology:
    """A PLY mesh (ASCII or binary, either byte order): vertex positions and triangles."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: the topology PLY file is not there")
    raw = path.read_bytes()
    fmt, elements, start = _parse_header(path, raw[:65536])
    names = [e.name for e in elements]
    if "vertex" not in names or "face" not in names:
        raise DataError(f"{path}: the PLY file needs 'vertex' and 'face' elements, has {names}")
    if fmt == "ascii":
        rows = _read_ascii(path, raw[start:].decode("ascii", errors="replace"), elements)
        columns = {e.name: _ascii_columns(path, e, rows[e.name]) for e in elements}
    else:
        columns = _read_binary(path, memoryview(raw)[start:], elements, FORMATS[fmt])
    vertex = columns["vertex"]
    if not all(k in vertex for k in "xyz"):
        raise DataError(f"{path}: the vertex element has no x, y, z properties")
    vertices = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float64)
    faces = columns["face"].get("face")
    if faces is None:
        raise DataError(f"{path}: the face element has no vertex index list")
    return Topology(vertices, _triangulate(path, faces, len(vertices)), path)


def default_topology_path(root: str | Path, dataset: str) -> Path:
    """The data set's own PLY under ``root``; DataError saying what to put where if none."""
    root = Path(root)
    candidates = DEFAULT_FILES.get(dataset, ())
    for name in candidates:
        if (root / name).is_file():
            return root / name
    where = " or ".join(str(root / n) for n in candidates) or f"{root}/<mesh>.ply"
    source = {
        "vocaset": "FLAME_sample.ply from VOCA's template/ folder (make prepare-voca copies it)",
        "biwi": "BIWI.ply (FaceFormer's BIWI/templates/BIWI.ply)",
    }.get(dataset, "the data set's mesh as a PLY file")
    raise DataError(
        f"no rendering topology: put {source} at {where}, or pass topology=PATH (data.topology)"
    )


def load_topology(path: str | Path, num_vertices: int) -> Topology:
    """:func:`read_ply`, checked to have the data set's ``num_vertices`` vertices."""
    topology = read_ply(path)
    if topology.num_vertices != num_vertices:
        raise DataError(
            f"{path}: the topology has {topology.num_vertices} vertices but the data set's "
            f"template has {num_vertices}: pass the PLY of this data set's mesh (topology=PATH)"
        )
    return topology
