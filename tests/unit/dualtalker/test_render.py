"""The face renderer for real (open3d's offscreen renderer on Mesa's llvmpipe, in its worker
process) at tiny sizes: frames are not blank and show the jaw open, the mp4 holds the right
number of frames and the audio's duration, the side-by-side video shows both meshes; a missing
system library names the apt package, a hung render stops with a message. Skipped, with the
reason, where open3d or EGL is not available (CI installs system-packages.txt)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from datamodules.face.synthetic import animate, head_mesh
from lightning_modules.dualtalker.render import (
    Camera,
    MeshRenderer,
    RenderError,
    explain_start_failure,
    renderer_available,
)

MESH = head_mesh(np.random.default_rng(0))
SIZE = 96


@functools.cache
def _available() -> tuple[bool, str]:
    return renderer_available()


@pytest.fixture
def renderer_ready() -> None:
    ok, why = _available()
    if not ok:
        pytest.skip(f"no offscreen renderer here: {why}")


def jaw_frames(opening: list[float]) -> np.ndarray:
    """(len(opening), V, 3) frames of the synthetic head with its jaw opened that much."""
    sample_rate, fps = 16000, 30
    audio = np.concatenate(
        [o * np.sin(np.arange(sample_rate // fps) * 0.3) for o in opening]
    ).astype(np.float32)
    return animate(MESH, np.array([1.3, 1.0, 0.0]), audio, sample_rate, fps, len(opening), 0.1)


def test_frame_is_not_blank_and_the_open_mouth_differs(renderer_ready):
    closed, opened = jaw_frames([0.0, 1.0])
    assert np.abs(opened - closed).max() > 1e-3  # the mesh itself moved
    with MeshRenderer(MESH.faces, Camera.fit(closed), SIZE, SIZE) as renderer:
        a, b = renderer.render(closed), renderer.render(opened)
    assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    face = a.max(axis=2) > 10
    assert 0.2 < face.mean() < 0.95  # the head fills much of the frame, on black
    # the mouth: the lip vertices' projected rows (lower half of the face), centre columns
    mouth = (slice(SIZE // 2, SIZE * 7 // 8), slice(SIZE // 3, SIZE * 2 // 3))
    upper = (slice(SIZE // 8, SIZE // 3), slice(SIZE // 3, SIZE * 2 // 3))
    change = np.abs(a.astype(int) - b.astype(int))
    assert change[mouth].mean() > 3 * max(change[upper].mean(), 0.05)


def test_mp4_has_the_frames_and_the_audio(renderer_ready, tmp_path):
    av = pytest.importorskip("av")
    from lightning_modules.dualtalker.face_video import render_video

    frames, sample_rate = jaw_frames([0.0, 0.5, 1.0, 0.5, 0.0, 0.3]), 16000
    audio = np.sin(np.arange(int(0.2 * sample_rate)) * 0.05).astype(np.float32) * 0.3
    path = tmp_path / "face.mp4"
    written = render_video(
        path, MESH.faces, frames.reshape(6, -1), 30, audio, sample_rate, size=SIZE, progress=False
    )
    assert written == 6
    with av.open(str(path)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        decoded = list(container.decode(video=0))
        assert len(decoded) == 6 and (video.width, video.height) == (SIZE, SIZE)
        assert video.codec_context.name == "h264" and sound.codec_context.name == "aac"
        seconds = float(sound.duration * sound.time_base)
    assert seconds == pytest.approx(0.2, abs=0.03)
    assert decoded[2].to_ndarray(format="rgb24").mean() > 5  # not black


def test_side_by_side_shows_both_meshes(renderer_ready, tmp_path):
    av = pytest.importorskip("av")
    from lightning_modules.dualtalker.face_video import render_comparison

    truth = jaw_frames([0.0, 1.0, 0.0])
    prediction = truth + 0.002  # off by 2 mm everywhere
    path = tmp_path / "side.mp4"
    render_comparison(
        path,
        MESH.faces,
        prediction,
        truth,
        30,
        None,
        size=SIZE,
        corner="LVE 1.0",
        progress=False,
    )
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (SIZE, 2 * SIZE, 3)
    centre = slice(SIZE // 4, SIZE * 3 // 4)
    left, right = (
        frame[centre, SIZE // 4 : SIZE * 3 // 4],
        frame[centre, SIZE * 5 // 4 : -SIZE // 4],
    )
    assert (left.max(axis=2) > 10).mean() > 0.5 and (right.max(axis=2) > 10).mean() > 0.5
    # the prediction is coloured by its error, the ground truth is grey
    assert np.abs(left[..., 0].astype(int) - left[..., 2]).mean() > 10
    assert np.abs(right[..., 0].astype(int) - right[..., 2]).mean() < 10


def test_a_hung_render_stops_with_a_message(renderer_ready):
    frame = jaw_frames([0.0])[0]
    with MeshRenderer(MESH.faces, Camera.fit(frame), SIZE, SIZE, timeout=1e-4) as renderer:
        with pytest.raises(RenderError, match=r"rendering frame 0 took more than 0.0001 s"):
            renderer.render(frame)


def test_missing_system_library_names_the_apt_package(tmp_path, monkeypatch):
    fake = tmp_path / "fake" / "open3d"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('libEGL.so.1: cannot open shared object file: No such file or directory')"
    )
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    frame = jaw_frames([0.0])[0]
    with pytest.raises(RenderError) as info:
        with MeshRenderer(MESH.faces, Camera.fit(frame), SIZE, SIZE) as renderer:
            renderer.render(frame)
    message = str(info.value)
    assert "libEGL.so.1" in message and "apt-get install libegl1" in message


def test_start_failure_messages():
    text = explain_start_failure("OSError: libusb-1.0.so.0: cannot open shared object file")
    assert "libusb-1.0-0" in text
    assert "pip install open3d==0.19.0" in explain_start_failure(
        "ModuleNotFoundError: No module named 'open3d'"
    )


def test_camera_frames_any_scale():
    for scale in (0.1, 1.0, 100.0):
        camera = Camera.fit(MESH.vertices * scale)
        distance = np.linalg.norm(np.subtract(camera.eye, camera.center))
        assert camera.near < distance - scale and camera.far > distance + scale
        assert camera.near > 0


def test_renderer_worker_is_a_plain_script():
    """The worker must not import the package (transformers would take seconds)."""
    from lightning_modules.dualtalker import render

    text = Path(render.WORKER).read_text()
    assert "lightning_modules" not in text.split('"""', 2)[2]


def test_render_bench_reports_speed_and_both_processes_peak_memory(renderer_ready, tmp_path):
    """``make bench BENCH=dualtalker_render`` at a tiny size: frames/s, CPU per frame and the
    peak resident sets of the worker and the encoding process, written to the JSON."""
    import json

    from benchmarks import dualtalker_render

    out = tmp_path / "render.json"
    report = dualtalker_render.main(["--frames", "4", "--sizes", "48", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert [r["vertices"] for r in report["results"]] == list(
        dualtalker_render.VERTEX_COUNTS.values()
    )
    for case in report["results"]:
        assert case["size"] == "48x48" and case["frames"] == 4 and case["frames_per_s"] > 0
        assert case["seconds_with_start"] > case["worker_start_s"] > 0
        assert case["cpu_s_per_frame"] > 0
        # open3d + Mesa in the worker; torch and the sequence in the main process
        assert case["worker_peak_mb"] > 50
        assert case["main_peak_mb"] >= case["main_before_mb"] > 50
