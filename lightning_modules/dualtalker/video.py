"""Frames to an mp4 with its speech (PyAV: H.264 + AAC, muxed in one pass), and the panels
of a face video: a label, the per-vertex error as colours with its colour bar, a corner figure.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

AUDIO_FRAME = 1024  # samples per AAC frame
ERROR_CMAP = "YlOrRd"  # light yellow (no error) to dark red: small errors stay visible on black


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> int:
    """Encode (H, W, 3) uint8 ``frames`` at ``fps`` into ``path`` (H.264, yuv420p) with
    ``audio`` (mono float samples in [-1, 1] at ``sample_rate``, AAC) when given; returns the
    number of frames. Odd sizes are padded by one black row/column (yuv420p needs even ones)."""
    import av

    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("a video needs at least one frame")
    height, width = first.shape[0] + first.shape[0] % 2, first.shape[1] + first.shape[1] % 2
    count = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(int(fps), 1))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        sound = None
        if audio is not None and len(audio):
            sound = container.add_stream("aac", rate=int(sample_rate))
            sound.layout = "mono"
            _encode_audio(container, sound, np.asarray(audio, dtype=np.float32), sample_rate)
        for image in _chain(first, frames):
            image = _even(np.ascontiguousarray(image[..., :3], dtype=np.uint8), height, width)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(video.encode(frame))
            count += 1
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
    return count


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest


def _even(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    out = np.zeros((height, width, 3), dtype=np.uint8)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    import av

    audio = np.clip(audio.reshape(-1), -1.0, 1.0)
    for start in range(0, len(audio), AUDIO_FRAME):
        chunk = audio[start : start + AUDIO_FRAME]
        frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = int(sample_rate), start
        frame.time_base = Fraction(1, int(sample_rate))
        container.mux(stream.encode(frame))


# -------------------------------------------------------------------------- panels


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=max(8, size))


def label(image: np.ndarray, text: str, corner: str = "top-left") -> np.ndarray:
    """``image`` with ``text`` written in white (on a dark box) in a corner."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    size = max(10, canvas.height // 28)
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = size // 3
    x = pad if "left" in corner else canvas.width - (right - left) - 3 * pad
    y = pad if "top" in corner else canvas.height - (bottom - top) - 3 * pad
    draw.rectangle(
        (x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad), fill=(20, 20, 20)
    )
    draw.text((x + pad - left, y + pad - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def error_colors(errors: np.ndarray, vmax: float, cmap: str = ERROR_CMAP) -> np.ndarray:
    """(V, 3) RGB in [0, 1] of per-vertex ``errors`` on ``cmap``, 0 .. ``vmax``."""
    from matplotlib import colormaps

    scaled = np.clip(np.asarray(errors, dtype=np.float64) / max(vmax, 1e-30), 0.0, 1.0)
    return colormaps[cmap](scaled)[:, :3]


def colorbar(image: np.ndarray, vmax: float, unit: str, cmap: str = ERROR_CMAP) -> np.ndarray:
    """``image`` with a vertical colour bar (0 .. ``vmax`` ``unit``) at its right edge."""
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image))
    height, width = canvas.height, canvas.width
    bar_h, bar_w = height // 2, max(4, width // 40)
    x0, y0 = width - bar_w - width // 30, height // 4
    ramp = colormaps[cmap](np.linspace(1.0, 0.0, bar_h))[:, :3]
    bar = (np.repeat(ramp[:, None], bar_w, axis=1) * 255).astype(np.uint8)
    canvas.paste(Image.fromarray(bar), (x0, y0))
    draw = ImageDraw.Draw(canvas)
    font = _font(max(9, height // 40))
    top_text = f"{vmax:.3g} {unit}".strip()
    width_text = draw.textbbox((0, 0), top_text, font=font)[2]
    draw.text((x0 + bar_w - width_text, y0 - height // 30), top_text, fill="white", font=font)
    draw.text((x0, y0 + bar_h + 4), "0", fill="white", font=font)
    return np.asarray(canvas)


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Images of the same height next to each other."""
    return np.concatenate(images, axis=1)
