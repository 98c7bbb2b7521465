"""The renderer's worker process: open3d 0.19's ``OffscreenRenderer`` (Filament through EGL;
Mesa's llvmpipe on a machine without a GPU), one frame per request.

Started by :class:`lightning_modules.dualtalker.render.MeshRenderer` as
``python .../render_worker.py`` (a plain script: it imports numpy and open3d only), so that a
renderer that hangs or crashes can be killed without taking the caller with it. Messages in both
directions are a 4-byte length, a JSON header and raw bytes:

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

MATERIAL = {"base_color": (0.7, 0.7, 0.7, 1.0), "base_roughness": 0.7, "base_metallic": 0.0}
# Filament's post-processing (tone mapping, anti-aliasing) is off: it cost 60 % of a frame on
# llvmpipe; the lights are brighter to make up for the missing tone curve.
INDIRECT_LIGHT = 40000.0  # the image-based (ambient) light, lux
KEY_LIGHT = (110000.0, (0.5, -0.5, -0.7))  # the sun: from the upper left, in front of the face
FILL_LIGHT = (50000.0, (-0.6, -0.2, -0.8))  # from the right, softer


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


class _Scene:
    def __init__(self, o3d, setup: dict, faces: np.ndarray) -> None:
        rendering = o3d.visualization.rendering
        self.o3d, self.faces = o3d, o3d.utility.Vector3iVector(faces.reshape(-1, 3))
        self.renderer = rendering.OffscreenRenderer(int(setup["width"]), int(setup["height"]))
        scene = self.scene = self.renderer.scene
        scene.set_background(list(setup.get("background", (0.0, 0.0, 0.0, 1.0))))
        scene.view.set_post_processing(False)
        self.material = rendering.MaterialRecord()
        self.material.shader = "defaultLit"
        self.material.base_color = MATERIAL["base_color"]
        self.material.base_roughness = MATERIAL["base_roughness"]
        self.material.base_metallic = MATERIAL["base_metallic"]
        scene.set_lighting(rendering.Open3DScene.LightingProfile.NO_SHADOWS, np.ones(3))
        scene.scene.set_indirect_light_intensity(INDIRECT_LIGHT)
        scene.scene.set_sun_light(np.array(KEY_LIGHT[1]), np.ones(3), KEY_LIGHT[0])
        scene.scene.enable_sun_light(True)
        scene.scene.add_directional_light(
            "fill", np.ones(3), np.array(FILL_LIGHT[1]), FILL_LIGHT[0], False
        )
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
        if colors is not None:
            mesh.vertex_colors = o3d.utility.Vector3dVector(colors)
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
