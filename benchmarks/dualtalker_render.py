"""DualTalker rendering benchmark: frames per second of a face video, encoding included.

``python -m benchmarks.dualtalker --render`` (or ``python -m benchmarks.dualtalker_render``):
for VOCA's 5,023-vertex and BIWI's 23,370-vertex face sizes (sphere-like meshes of exactly those
vertex counts, deformed every frame like a speaking face: no real mesh ships with the suite),
the time of :func:`lightning_modules.dualtalker.face_video.render_video` from the first frame
request to the closed mp4 (H.264 + AAC), at 800x800 (the render command's size) and at the
validation videos' 256x256, after the worker has started (its start, about 2-10 s, is timed
apart). The target is at least 4 frames/s at 800x800 on 2 cores. ``cpu_s_per_frame`` (worker and
encoder together) is the figure a busy machine does not inflate: the worker renders while the
main process encodes, so an idle 2-core machine makes up to 2 / cpu_s_per_frame frames/s.
Peak memory is each process's peak resident set during the case (Linux's VmHWM): the render
worker's (open3d, Mesa and the frame buffers) and the main process's (the sequence, the encoder).

    python -m benchmarks.dualtalker --render [--frames 60] [--sizes 800 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import (
    describe_machine,
    process_cpu_seconds,
    reset_resident_peak,
    resident_peak_mb,
)

VERTEX_COUNTS = {"VOCA (FLAME)": 5023, "BIWI": 23370}


def sphere_mesh(num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid (head-sized, metres) of exactly ``num_vertices`` vertices and its
    triangles: a UV sphere of rings x segments + 2 poles, the few vertices left over placed at
    the north pole, unconnected."""
    rings = int(np.sqrt((num_vertices - 2) / 2))
    segments = (num_vertices - 2) // rings
    extra = num_vertices - 2 - rings * segments
    lat = np.linspace(-np.pi / 2, np.pi / 2, rings + 2)[1:-1]
    lon = np.linspace(-np.pi, np.pi, segments, endpoint=False)
    la, lo = (g.reshape(-1) for g in np.meshgrid(lat, lon, indexing="ij"))
    points = np.stack([np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], axis=1)
    poles = np.array([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0]])
    leftover = np.repeat(poles[1:], extra, axis=0)
    vertices = np.concatenate([points, poles, leftover]) * np.array([0.08, 0.1, 0.09])
    faces = []
    for r in range(rings - 1):
        a = r * segments + np.arange(segments)
        b = r * segments + (np.arange(segments) + 1) % segments
        faces += [np.stack([a, b + segments, b], 1), np.stack([a, a + segments, b + segments], 1)]
    south, north, top = rings * segments, rings * segments + 1, (rings - 1) * segments
    s = np.arange(segments)
    faces += [np.stack([np.full(segments, south), (s + 1) % segments, s], 1)]
    faces += [np.stack([np.full(segments, north), top + s, top + (s + 1) % segments], 1)]
    return vertices, np.concatenate(faces).astype(np.int64)


def speaking(vertices: np.ndarray, frames: int, fps: int = 30) -> np.ndarray:
    """(frames, V*3): the lower half moves down and back with a 4 Hz 'jaw'."""
    t = np.arange(frames) / fps
    jaw = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    lower = np.clip(-vertices[:, 1] / vertices[:, 1].max(), 0, 1)
    out = np.repeat(vertices[None], frames, axis=0)
    out[..., 1] -= 0.01 * jaw[:, None] * lower[None]
    return out.reshape(frames, -1).astype(np.float32)


def _cpu(worker: int) -> float:
    """CPU seconds of this process (the encoder) and of the running render worker."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + (process_cpu_seconds(worker) or 0.0)


def bench(num_vertices: int, size: int, frames: int) -> dict:
    from lightning_modules.dualtalker import render as render_module
    from lightning_modules.dualtalker.face_video import render_video

    vertices, faces = sphere_mesh(num_vertices)
    sequence = speaking(vertices, frames)
    audio = (0.2 * np.sin(np.arange(frames * 16000 // 30) * 0.07)).astype(np.float32)
    per_case = reset_resident_peak()  # else VmHWM holds earlier cases' peaks: not reported
    main_before = resident_peak_mb()
    started = time.perf_counter()
    camera = render_module.Camera.fit(vertices)
    with render_module.MeshRenderer(faces, camera, size, size) as renderer:
        start_s, cpu0 = time.perf_counter() - started, _cpu(renderer.pid)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.mp4"
            t0 = time.perf_counter()
            render_video(
                path,
                faces,
                sequence,
                30,
                audio,
                size=size,
                template=vertices,
                progress=False,
                renderer=renderer,
            )
            seconds = max(time.perf_counter() - t0, 1e-9)
            size_mb = path.stat().st_size / 1e6
        cpu = _cpu(renderer.pid) - cpu0  # both processes, the worker's start left out
        worker_peak = resident_peak_mb(renderer.pid)
    main_peak = resident_peak_mb() if per_case else None
    return {
        "vertices": num_vertices,
        "size": f"{size}x{size}",
        "frames": frames,
        "worker_start_s": round(start_s, 2),
        "seconds_with_start": round(start_s + seconds, 2),
        "frames_per_s": round(frames / seconds, 2),
        # CPU time of worker + encoder per frame: what the machine's load cannot inflate
        "cpu_s_per_frame": round(cpu / frames, 3),
        "mp4_mb": round(size_mb, 2),
        "worker_peak_mb": None if worker_peak is None else round(worker_peak),
        "main_peak_mb": None if main_peak is None else round(main_peak),
        # the main process's resident set when the case began (torch and the libraries)
        "main_before_mb": None if main_before is None else round(main_before),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 256])
    parser.add_argument("--out", default="benchmarks/results/dualtalker_render.json")
    args = parser.parse_args(argv)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": describe_machine(),
        "renderer": "open3d 0.19 OffscreenRenderer, EGL surfaceless, Mesa llvmpipe (CPU)",
        "what": "render_video: frames rendered in the worker + H.264/AAC encoding (PyAV), "
        "worker start excluded (timed apart)",
        "results": [],
    }
    for name, count in VERTEX_COUNTS.items():
        for size in args.sizes:
            entry = {"mesh": name, **bench(count, size, args.frames)}
            report["results"].append(entry)
            print(
                f"{name:<13} {count:>6} vertices {entry['size']:>9}: "
                f"{entry['frames_per_s']:6.2f} frames/s, {entry['cpu_s_per_frame']:.3f} CPU-s a "
                f"frame (worker start {entry['worker_start_s']} s), peak memory: worker "
                f"{entry['worker_peak_mb']} MB, main {entry['main_peak_mb']} MB (from "
                f"{entry['main_before_mb']} MB)",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
