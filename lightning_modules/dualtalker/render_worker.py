"""The renderer's worker process: open3d 0.19's ``OffscreenRenderer`` (Filament through EGL;
Mesa's llvmpipe on a machine without a GPU), one frame per request.

Started by :class:`lightning_modules.dualtalker.render.MeshRenderer` as
``python .../render_worker.py`` (a plain script: it imports numpy and open3d only), so that a
renderer that hangs or crashes can be killed without taking the caller with it. Messages in both
directions are two 4-byte lengths (header, payload), a JSON header and raw bytes:

* ``setup`` (width, height, camera, faces as int32 bytes) -> ``{"ok": true}``
* ``camera`` (a new camera for the next frames) -> ``{"ok": true}``
* ``frame`` (vertices as float32 (V, 3) bytes, optional per-vertex float32 RGB colours)
  -> the image as (H, W, 3) uint8 bytes
* an error anywhere -> ``{"ok": false, "error": "..."}`` and the worker exits.

The look (camera, material, lights) is documented in ``docs/dualtalker.md`` ("Rendering").
"""

from __future__ import annotations

import json
import os
import queue
import struct
import sys
import tempfile
import threading
from typing import BinaryIO

import numpy as np

# Filament on the CPU through EGL without a display: set before open3d is imported.
CPU_ENV = {"OPEN3D_CPU_RENDERING": "true", "EGL_PLATFORM": "surfaceless"}

# The look. Shading is computed per vertex here (Gouraud: ambient + two Lambert lights + a
# Blinn highlight, in display space) and drawn with Filament's unlit shader, post-processing
# off: on llvmpipe its lit PBR shader and post-processing cost 3.7x as much CPU a frame.
BASE_COLOR = (0.72, 0.72, 0.72)  # matte light grey (per-vertex colours replace it)
AMBIENT = 0.22
# (strength, direction the light travels): the key from the upper left in front of the face,
# a softer fill from the right; the camera looks along -z
LIGHTS = ((0.68, (0.5, -0.5, -0.7)), (0.28, (-0.6, -0.2, -0.8)))
SPECULAR = (0.12, 24.0)  # strength and Blinn exponent of the key light's highlight


def configure_environment() -> None:
    """The EGL variables open3d needs headless, and an ``XDG_RUNTIME_DIR`` if none is set."""
    for key, value in CPU_ENV.items():
        os.environ.setdefault(key, value)
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="suite-render-")


def read_message(stream: BinaryIO) -> tuple[dict, bytes] | None:
    """One message from a blocking buffered stream; None at its end."""
    head = stream.read(8)
    if len(head) < 8:
        return None
    header_size, payload_size = struct.unpack("<II", head)
    header = json.loads(stream.read(header_size))
    return header, stream.read(payload_size)


def decode_header(head: bytes) -> tuple[int, int]:
    """(header size, payload size) of a message's first 8 bytes."""
    return struct.unpack("<II", head)


def write_message(stream: BinaryIO, header: dict, payload: bytes = b"") -> None:
    encoded = json.dumps(header).encode()
    stream.write(struct.pack("<II", len(encoded), len(payload)) + encoded + payload)
    stream.flush()


def shade(
    normals: np.ndarray, colors: np.ndarray | None, lights: list, half: np.ndarray
) -> np.ndarray:
    """(V, 3) RGB in [0, 1]: ``colors`` (default the base grey) lit by ambient, the Lambert
    terms of ``lights`` ((strength, unit vector towards the light)) and a white highlight."""
    # whichever way the faces wind, a visible point's outward normal faces the camera (+z)
    normals = normals * np.where(normals[:, 2:] < 0.0, -1.0, 1.0)
    light = np.full(len(normals), AMBIENT)
    for strength, towards in lights:
        light += strength * np.clip(normals @ towards, 0.0, None)
    base = np.broadcast_to(BASE_COLOR, normals.shape) if colors is None else colors
    highlight = SPECULAR[0] * np.clip(normals @ half, 0.0, None) ** SPECULAR[1]
    return np.clip(base * light[:, None] + highlight[:, None], 0.0, 1.0)


class _Scene:
    def __init__(self, o3d, setup: dict, faces: np.ndarray) -> None:
        rendering = o3d.visualization.rendering
        self.o3d, self.faces = o3d, o3d.utility.Vector3iVector(faces.reshape(-1, 3))
        self.renderer = rendering.OffscreenRenderer(int(setup["width"]), int(setup["height"]))
        scene = self.scene = self.renderer.scene
        scene.set_background(list(setup.get("background", (0.0, 0.0, 0.0, 1.0))))
        scene.view.set_post_processing(False)
        self.material = rendering.MaterialRecord()
        self.material.shader = "defaultUnlit"
        self.lights = [(w, -np.array(d) / np.linalg.norm(d)) for w, d in LIGHTS]
        key = self.lights[0][1]
        self.half = (key + [0.0, 0.0, 1.0]) / np.linalg.norm(key + [0.0, 0.0, 1.0])
        self.aspect = int(setup["width"]) / int(setup["height"])
        self.set_camera(setup["camera"])

    def set_camera(self, cam: dict) -> None:
        fov, center, eye = float(cam["fov"]), np.array(cam["center"]), np.array(cam["eye"])
        self.renderer.setup_camera(fov, center, eye, np.array(cam["up"]))
        self.scene.camera.set_projection(
            fov,
            self.aspect,
            float(cam["near"]),
            float(cam["far"]),
            self.o3d.visualization.rendering.Camera.FovType.Vertical,
        )

    def render(self, vertices: np.ndarray, colors: np.ndarray | None) -> np.ndarray:
        o3d = self.o3d
        # a new mesh every frame (open3d updates of a deformed mesh are not reliable)
        mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), self.faces)
        mesh.compute_vertex_normals()
        mesh.vertex_colors = o3d.utility.Vector3dVector(
            shade(np.asarray(mesh.vertex_normals), colors, self.lights, self.half)
        )
        if self.scene.has_geometry("face"):
            self.scene.remove_geometry("face")
        self.scene.add_geometry("face", mesh, self.material)
        return np.ascontiguousarray(np.asarray(self.renderer.render_to_image())[..., :3])


def serve(requests: BinaryIO, replies: BinaryIO) -> int:
    configure_environment()
    try:
        import open3d as o3d
    except (ImportError, OSError) as err:  # a missing system library shows up here
        write_message(replies, {"ok": False, "error": f"{type(err).__name__}: {err}"})
        return 1
    # requests are read by a thread of their own, so the parent's writes never wait on ours
    inbox: queue.Queue = queue.Queue()

    def read_all() -> None:
        while (message := read_message(requests)) is not None:
            inbox.put(message)
        inbox.put(None)

    threading.Thread(target=read_all, daemon=True).start()
    scene = None
    while (message := inbox.get()) is not None:
        header, payload = message
        try:
            if header["op"] == "setup":
                faces = np.frombuffer(payload, dtype=np.int32).copy()
                scene = _Scene(o3d, header, faces)
                write_message(replies, {"ok": True})
            elif header["op"] == "camera":
                scene.set_camera(header["camera"])
                write_message(replies, {"ok": True})
            elif header["op"] == "frame":
                n = int(header["vertices"])
                data = np.frombuffer(payload, dtype=np.float32)
                vertices = data[: 3 * n].reshape(n, 3).astype(np.float64)
                colors = (
                    data[3 * n :].reshape(n, 3).astype(np.float64) if header["colors"] else None
                )
                image = scene.render(vertices, colors)
                write_message(replies, {"ok": True, "shape": list(image.shape)}, image.tobytes())
            elif header["op"] == "quit":
                return 0
        except Exception as err:  # noqa: BLE001 - reported to the parent, which explains it
            write_message(replies, {"ok": False, "error": f"{type(err).__name__}: {err}"})
            return 1
    return 0


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # open3d and Filament print to stdout: keep the reply channel clean
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    sys.exit(main())
