"""Face videos people look at: a predicted sequence speaking, or a prediction beside its ground
truth with the per-vertex error as colours and the sequence's LVE in the corner.

Frames come from :class:`~lightning_modules.dualtalker.render.MeshRenderer` (one camera per
video, fitted to the template), the mp4 from :func:`~lightning_modules.dualtalker.video.write_video`
(H.264 + the speech as AAC, one pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .render import DEFAULT_TIMEOUT, Camera, MeshRenderer
from .video import colorbar, error_colors, label, side_by_side, write_video


def _renderer(
    renderer: MeshRenderer | None, faces, camera: Camera, size: int, timeout: float
) -> contextlib.AbstractContextManager[MeshRenderer]:
    """``renderer`` looking through ``camera`` (left running), else a new one for this video."""
    if renderer is None:
        return MeshRenderer(faces, camera, size, size, timeout=timeout)
    renderer.set_camera(camera)
    return contextlib.nullcontext(renderer)


def _progress(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="frame", disable=not enabled or None)


def render_video(
    path: str | Path,
    faces: np.ndarray,
    vertices: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    size: int = 800,
    template: np.ndarray | None = None,
    caption: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    renderer: MeshRenderer | None = None,
) -> int:
    """``vertices`` (T, V*3) as an mp4 with ``audio``; the camera fitted to ``template`` (else
    the first frame). ``renderer``: a running one of this topology and size to reuse. Returns
    the number of frames."""
    frames = np.asarray(vertices, dtype=np.float32).reshape(len(vertices), -1, 3)
    camera = Camera.fit(frames[0] if template is None else template)
    with (
        _renderer(renderer, faces, camera, size, timeout) as renderer,
        _progress(len(frames), f"rendering {Path(path).name}", progress) as bar,
    ):

        def images() -> Iterator[np.ndarray]:
            for image in renderer.render_all((v, None) for v in frames):
                bar.update(1)
                yield label(image, caption) if caption else image

        return write_video(path, images(), fps, audio, sample_rate)


def render_comparison(
    path: str | Path,
    faces: np.ndarray,
    prediction: np.ndarray,
    truth: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    size: int = 800,
    template: np.ndarray | None = None,
    corner: str = "",
    unit: str = "",
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
    renderer: MeshRenderer | None = None,
) -> int:
    """Prediction (left, coloured by its per-vertex distance to the ground truth, with a colour
    bar) beside the ground truth (right), ``corner`` (e.g. the sequence's LVE) written top
    left; both cut to the shorter length. Returns the number of frames."""
    length = min(len(prediction), len(truth))
    pred = np.asarray(prediction, dtype=np.float32).reshape(len(prediction), -1, 3)[:length]
    true = np.asarray(truth, dtype=np.float32).reshape(len(truth), -1, 3)[:length]
    errors = np.linalg.norm(pred - true, axis=2)  # (T, V)
    vmax = float(np.percentile(errors, 99)) or float(errors.max()) or 1.0
    camera = Camera.fit(true[0] if template is None else template)

    def meshes():
        for p, t, e in zip(pred, true, errors):
            yield p, error_colors(e, vmax)
            yield t, None

    with (
        _renderer(renderer, faces, camera, size, timeout) as renderer,
        _progress(length, f"rendering {Path(path).name}", progress) as bar,
    ):

        def images() -> Iterator[np.ndarray]:
            stream = renderer.render_all(meshes())
            for left in stream:
                right = next(stream)
                left = colorbar(label(left, "prediction"), vmax, unit)
                if corner:
                    left = label(left, corner, "bottom-left")
                bar.update(1)
                yield side_by_side(left, label(right, "ground truth"))

        return write_video(path, images(), fps, audio, sample_rate)
