"""Shaded face meshes as images, rendered on the CPU by a worker process that can be killed.

:class:`MeshRenderer` starts :mod:`~lightning_modules.dualtalker.render_worker` (open3d 0.19's
``OffscreenRenderer``, Filament through EGL on Mesa's llvmpipe; no display, no GPU needed) and
sends it one mesh per frame, a couple of frames ahead so that the caller encodes while the
worker draws. Each frame has ``timeout`` seconds; a worker that hangs is killed and the render
stops with a :class:`RenderError` saying so. A worker that cannot start because a system
library is missing names the apt package to install.

The camera is fitted once per video to a reference mesh (the template): it looks along -z at
the centre of its bounding box from the distance at which the mesh's bounding sphere fills
``fill`` of the frame height with a 20-degree vertical field of view, so any scale (VOCA's
metres, BIWI's unit-area meshes, the generated heads) is framed alike. Near and far clips hug
the mesh. The material and lights are in the worker (see ``docs/dualtalker.md``).
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from datamodules.errors import DataError

from .render_worker import CPU_ENV, decode_header, write_message

# run as a script: importing the package would load transformers first (seconds)
WORKER = Path(__file__).with_name("render_worker.py")
# shared library (as the loader names it) -> the Debian/Ubuntu package that ships it
SYSTEM_LIBRARIES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libEGL_mesa.so.0": "libegl-mesa0",
    "libusb-1.0.so.0": "libusb-1.0-0",
}
DRI_DRIVER = ("swrast_dri.so", "libgl1-mesa-dri")  # Mesa's software rasteriser (llvmpipe)
DEFAULT_TIMEOUT = 60.0  # seconds per frame (llvmpipe draws an 800x800 BIWI face in ~0.2 s)
START_TIMEOUT = 120.0  # seconds to import open3d and create the EGL context


class RenderError(DataError):
    """Rendering cannot go on: a missing system library, a worker that died or hung."""


def missing_system_packages() -> list[str]:
    """The apt packages of the renderer's system libraries that this machine lacks."""
    missing = []
    for library, package in SYSTEM_LIBRARIES.items():
        try:
            ctypes.CDLL(library)
        except OSError:
            missing.append(package)
    folders = ("/usr/lib/*/dri", "/usr/lib/dri", "/usr/lib64/dri", "/usr/local/lib/*/dri")
    if not any(glob.glob(f"{folder}/{DRI_DRIVER[0]}") for folder in folders):
        missing.append(DRI_DRIVER[1])
    return missing


def explain_start_failure(message: str) -> str:
    """A worker's start-up error, with the apt package to install when a library is missing."""
    named = [pkg for lib, pkg in SYSTEM_LIBRARIES.items() if lib.split(".so")[0] in message]
    missing = sorted(set(named) | set(missing_system_packages()))
    text = f"the renderer (open3d) cannot start: {message.strip().splitlines()[-1]}"
    if missing:
        text += (
            f"; install the system package(s) {' '.join(missing)} "
            f"(Debian/Ubuntu: sudo apt-get install {' '.join(missing)})"
        )
    elif "open3d" in message and "No module" in message:
        text += "; install it with: pip install open3d==0.19.0"
    return text


@dataclass
class Camera:
    """A perspective camera: vertical field of view (degrees), look-at and clip planes."""

    fov: float
    center: list[float]
    eye: list[float]
    up: list[float]
    near: float
    far: float

    @classmethod
    def fit(cls, vertices: np.ndarray, fov: float = 20.0, fill: float = 0.92) -> Camera:
        """Looking along -z at ``vertices`` ((V, 3) or (V*3,)), its bounding sphere filling
        ``fill`` of the frame height."""
        v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        center = (v.max(axis=0) + v.min(axis=0)) / 2
        radius = float(np.linalg.norm(v - center, axis=1).max()) or 1.0
        distance = radius / np.sin(np.radians(fov / 2)) / fill
        near = max(distance - 3 * radius, distance * 1e-3)
        return cls(
            fov=fov,
            center=center.tolist(),
            eye=(center + [0.0, 0.0, distance]).tolist(),
            up=[0.0, 1.0, 0.0],
            near=float(near),
            far=float(distance + 3 * radius),
        )


class MeshRenderer:
    """Render meshes of one topology (``faces`` (F, 3)) at ``width`` x ``height``.

    Use as a context manager (the worker is stopped on exit). :meth:`render` draws one mesh;
    :meth:`render_all` a sequence of them, pipelined.
    """

    def __init__(
        self,
        faces: np.ndarray,
        camera: Camera,
        width: int = 800,
        height: int = 800,
        timeout: float = DEFAULT_TIMEOUT,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise RenderError(f"render.timeout must be positive, got {timeout}")
        self.faces = np.ascontiguousarray(np.asarray(faces).reshape(-1, 3), dtype=np.int32)
        self.camera, self.width, self.height = camera, int(width), int(height)
        self.timeout, self.start_timeout = float(timeout), float(start_timeout)
        self.frames_done = 0
        self._proc: subprocess.Popen | None = None
        self._log = None

    # ---------------------------------------------------------------- worker
    @property
    def pid(self) -> int | None:
        """The running worker's process id (None before start and after close)."""
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> MeshRenderer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        env = {**os.environ, **{k: os.environ.get(k, v) for k, v in CPU_ENV.items()}}
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            bufsize=0,
        )
        header = {
            "op": "setup",
            "width": self.width,
            "height": self.height,
            "camera": asdict(self.camera),
        }
        self._send(header, self.faces.tobytes())
        reply, _ = self._receive(self.start_timeout, "starting the renderer", starting=True)
        if not reply.get("ok"):
            self._fail(explain_start_failure(reply.get("error", "")))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.poll() is None:
                    write_message(proc.stdin, {"op": "quit"})
                    proc.stdin.close()
                    proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _send(self, header: dict, payload: bytes) -> None:
        try:
            write_message(self._proc.stdin, header, payload)
        except (BrokenPipeError, OSError):  # the worker has stopped: its last word says why
            reply, _ = self._receive(self.start_timeout, "sending a frame", starting=True)
            self._fail(explain_start_failure(str(reply.get("error") or "the worker stopped")))

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln]
        return lines[-1] if lines else ""

    def _fail(self, message: str) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        self.close()
        raise RenderError(message)

    def _receive(self, timeout: float, what: str, starting: bool = False) -> tuple[dict, bytes]:
        """The worker's next reply, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        head = self._read_exact(8, deadline, timeout, what, starting)
        header_size, payload_size = decode_header(head)
        header = json.loads(self._read_exact(header_size, deadline, timeout, what, starting))
        return header, self._read_exact(payload_size, deadline, timeout, what, starting)

    def _read_exact(
        self, size: int, deadline: float, timeout: float, what: str, starting: bool
    ) -> bytes:
        fd, chunks, left = self._proc.stdout.fileno(), [], size
        while left:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self._fail(
                    f"{what} took more than {timeout:g} s (render.timeout); the worker was "
                    "stopped. A software renderer that hangs is usually a broken Mesa/EGL "
                    "setup: check that open3d==0.19.0 is installed (0.20 renders through Vulkan)"
                )
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                code = self._proc.wait()
                tail = self._log_tail()
                text = f"the renderer stopped (exit code {code}) while {what}" + (
                    f": {tail}" if tail else ""
                )
                self._fail(explain_start_failure(tail or text) if starting else text)
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def set_camera(self, camera: Camera) -> None:
        """Look through ``camera`` from the next frame on (the worker keeps running)."""
        self.camera = camera
        if self._proc is None:
            return
        self._send({"op": "camera", "camera": asdict(camera)}, b"")
        reply, _ = self._receive(self.timeout, "moving the camera")
        if not reply.get("ok"):
            self._fail(f"the renderer failed moving the camera: {reply.get('error')}")

    # ---------------------------------------------------------------- frames
    def _request(self, vertices: np.ndarray, colors: np.ndarray | None) -> None:
        v = np.ascontiguousarray(np.asarray(vertices, dtype=np.float32).reshape(-1, 3))
        payload = v.tobytes()
        if colors is not None:
            c = np.asarray(colors, dtype=np.float32).reshape(-1, 3)
            payload += np.ascontiguousarray(c).tobytes()
        self._send({"op": "frame", "vertices": len(v), "colors": colors is not None}, payload)

    def _image(self) -> np.ndarray:
        what = f"rendering frame {self.frames_done}"
        reply, payload = self._receive(self.timeout, what)
        if not reply.get("ok"):
            self._fail(f"the renderer failed {what}: {reply.get('error')}")
        self.frames_done += 1
        return np.frombuffer(payload, dtype=np.uint8).reshape(reply["shape"])

    def render(self, vertices: np.ndarray, colors: np.ndarray | None = None) -> np.ndarray:
        """One (H, W, 3) uint8 image of ``vertices`` ((V, 3) or (V*3,)), optionally coloured
        per vertex (``colors`` (V, 3) RGB in [0, 1])."""
        if self._proc is None:
            self.start()
        self._request(vertices, colors)
        return self._image()

    def render_all(
        self, meshes: Iterable[tuple[np.ndarray, np.ndarray | None]], ahead: int = 2
    ) -> Iterator[np.ndarray]:
        """Images of ``(vertices, colors)`` pairs in order, ``ahead`` frames in flight."""
        if self._proc is None:
            self.start()
        pending: deque[None] = deque()
        for vertices, colors in meshes:
            self._request(vertices, colors)
            pending.append(None)
            if len(pending) > ahead:
                pending.popleft()
                yield self._image()
        while pending:
            pending.popleft()
            yield self._image()


def renderer_available() -> tuple[bool, str]:
    """Whether a 16x16 frame renders here, and why not (for tests and the training callback)."""
    try:
        tri = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        with MeshRenderer(np.array([[0, 1, 2]]), Camera.fit(tri), 16, 16) as renderer:
            renderer.render(tri)
    except RenderError as err:
        return False, str(err)
    return True, ""
