"""The rendering topology: PLY files in ASCII and binary (both byte orders, the public tools'
types) read to the same triangles, polygons split into fans, and every bad file one DataError
naming it."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from datamodules.errors import DataError
from datamodules.face.synthetic import head_mesh, write_ply
from datamodules.face.topology import default_topology_path, load_topology, read_ply

MESH = head_mesh(np.random.default_rng(0))


def write_binary_ply(
    path: Path,
    vertices: np.ndarray,
    faces: list,
    order: str = "<",
    coord: str = "float",
    count: str = "uchar",
    index: str = "int",
    extra_vertex_property: bool = False,
) -> None:
    """A binary PLY as MeshLab / trimesh / open3d write them (any of their type choices)."""
    codes = {"float": "f", "double": "d", "uchar": "B", "ushort": "H", "int": "i", "uint": "I"}
    name = "binary_little_endian" if order == "<" else "binary_big_endian"
    header = ["ply", f"format {name} 1.0", "comment written by the test"]
    header += [f"element vertex {len(vertices)}"]
    header += [f"property {coord} {axis}" for axis in "xyz"]
    if extra_vertex_property:
        header.append("property uchar red")
    header += [f"element face {len(faces)}", f"property list {count} {index} vertex_indices"]
    header.append("end_header")
    body = b""
    for v in vertices:
        body += struct.pack(order + codes[coord] * 3, *v)
        if extra_vertex_property:
            body += struct.pack(order + "B", 200)
    for f in faces:
        body += struct.pack(order + codes[count] + codes[index] * len(f), len(f), *f)
    path.write_bytes(("\n".join(header) + "\n").encode() + body)


def test_ascii_ply_reads_as_written(tmp_path):
    write_ply(tmp_path / "a.ply", MESH.vertices, MESH.faces)
    topology = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(topology.faces, MESH.faces)
    np.testing.assert_allclose(topology.vertices, MESH.vertices, atol=1e-6)
    assert topology.num_vertices == len(MESH.vertices)


@pytest.mark.parametrize(
    "order,coord,count,index,extra",
    [
        ("<", "float", "uchar", "int", False),  # FLAME_sample.ply, MeshLab
        ("<", "double", "uchar", "uint", False),  # open3d
        (">", "float", "ushort", "int", True),  # big endian, a colour per vertex
        (">", "double", "int", "uint", False),
    ],
)
def test_binary_ply_reads_the_same_triangles(tmp_path, order, coord, count, index, extra):
    path = tmp_path / "b.ply"
    write_binary_ply(path, MESH.vertices, MESH.faces.tolist(), order, coord, count, index, extra)
    topology = read_ply(path)
    np.testing.assert_array_equal(topology.faces, MESH.faces)
    np.testing.assert_allclose(topology.vertices, MESH.vertices, atol=1e-6)


def test_open3d_written_binary_ply(tmp_path):
    o3d = pytest.importorskip("open3d")
    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(MESH.vertices), o3d.utility.Vector3iVector(MESH.faces)
    )
    o3d.io.write_triangle_mesh(str(tmp_path / "o.ply"), mesh, write_ascii=False)
    np.testing.assert_array_equal(read_ply(tmp_path / "o.ply").faces, MESH.faces)


def test_polygons_are_split_into_triangle_fans(tmp_path):
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    write_binary_ply(tmp_path / "q.ply", square, [[0, 1, 2, 3]])
    np.testing.assert_array_equal(read_ply(tmp_path / "q.ply").faces, [[0, 1, 2], [0, 2, 3]])
    text = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
    text += "property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
    text += "end_header\n" + "\n".join(" ".join(map(str, v)) for v in square) + "\n4 0 1 2 3\n"
    (tmp_path / "qa.ply").write_text(text)
    np.testing.assert_array_equal(read_ply(tmp_path / "qa.ply").faces, [[0, 1, 2], [0, 2, 3]])


def test_vertex_count_differs_from_the_template(tmp_path):
    write_ply(tmp_path / "a.ply", MESH.vertices, MESH.faces)
    with pytest.raises(DataError, match=r"a\.ply: the topology has 1442 vertices .* has 5023"):
        load_topology(tmp_path / "a.ply", 5023)
    assert load_topology(tmp_path / "a.ply", 1442).faces.shape == (2880, 3)


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "is not there"),
        (b"hello world", "not a PLY file"),
        (b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n", "needs 'vertex' and 'face'"),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
            b"property float y\nproperty float z\nelement face 1\n"
            b"property list uchar int vertex_indices\nend_header\n\x00\x00",
            "ends inside",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
            b"property float z\nelement face 0\nproperty list uchar int vertex_indices\n"
            b"end_header\n0 0 0\n",
            "ends after 1 of its 2 vertexs",
        ),
        (
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            b"property float z\nelement face 1\nproperty list uchar int vertex_indices\n"
            b"end_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
            "uses vertex 7, outside",
        ),
        (b"ply\nformat binary_middle_endian 1.0\nend_header\n", "unknown PLY format"),
    ],
)
def test_bad_files_are_one_data_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.ply"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_ply(path)
    assert "bad.ply" in str(info.value)


def test_default_topology_of_each_data_set(tmp_path):
    (tmp_path / "templates").mkdir()
    write_ply(tmp_path / "templates" / "FLAME_sample.ply", MESH.vertices, MESH.faces)
    assert default_topology_path(tmp_path, "vocaset").name == "FLAME_sample.ply"
    with pytest.raises(DataError, match=r"BIWI\.ply .* topology=PATH"):
        default_topology_path(tmp_path, "biwi")
